package profile

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// SpeedscopeSchema is the $schema of speedscope's file format.
const SpeedscopeSchema = "https://www.speedscope.app/file-format-schema.json"

// The file format, as defined by speedscope's src/lib/file-format-spec.ts
// (published as dist/release/file-format-schema.json in the npm package).
type speedscopeFile struct {
	Schema             string             `json:"$schema"`
	Name               string             `json:"name"`
	Exporter           string             `json:"exporter"`
	ActiveProfileIndex int                `json:"activeProfileIndex"`
	Shared             speedscopeShared   `json:"shared"`
	Profiles           []speedscopeSample `json:"profiles"`
}

type speedscopeShared struct {
	Frames []speedscopeFrame `json:"frames"`
}

type speedscopeFrame struct {
	Name string `json:"name"`
	File string `json:"file,omitempty"` // the Wasm module
}

type speedscopeSample struct {
	Type       string  `json:"type"` // "sampled"
	Name       string  `json:"name"`
	Unit       string  `json:"unit"`
	StartValue int64   `json:"startValue"`
	EndValue   int64   `json:"endValue"`
	Samples    [][]int `json:"samples"` // indices into Shared.Frames, root first
	Weights    []int64 `json:"weights"`
}

// WriteSpeedscope writes the profile in speedscope's file format: the
// frames, shared by every profile, once each (name by DisplayName, module
// as the file), then "sampled" profiles whose samples are the distinct
// stacks, root first, weighted by CPU time in nanoseconds (count × 1e9/Hz;
// by count, unit "none", when Hz is unknown). There is one profile for all
// samples, or one per process (ByProcess), per thread (ByThread) or both,
// busiest first. Aggregated
// samples have no time order, so speedscope's "Time Order" view shows the
// stacks sorted, like its "Left Heavy" view.
func (p *Profile) WriteSpeedscope(w io.Writer) error {
	unit, period := "nanoseconds", p.Period()
	if period == 0 {
		unit, period = "none", 1
	}
	f := speedscopeFile{
		Schema:   SpeedscopeSchema,
		Name:     "wasmtrace: " + p.subject(),
		Exporter: "wasmtrace",
	}

	samples := p.samples()
	// Frames sorted by name, so the file does not depend on map order.
	index := map[Frame]int{}
	var frames []Frame
	for _, c := range samples {
		for _, fr := range c.Frames {
			if _, ok := index[fr]; !ok {
				index[fr] = 0
				frames = append(frames, fr)
			}
		}
	}
	slices.SortFunc(frames, compareFrames)
	f.Shared.Frames = make([]speedscopeFrame, len(frames))
	for i, fr := range frames {
		index[fr] = i
		f.Shared.Frames[i] = speedscopeFrame{Name: DisplayName(fr.Name), File: DisplayName(fr.Module)}
	}

	type group struct {
		name     string
		pid, tid int
		total    int
		stacks   map[StackID]*Stack
	}
	type groupKey struct{ pid, tid int }
	groups := map[groupKey]*group{} // one, {0, 0}, unless split
	for _, c := range samples {
		var k groupKey
		var names []string
		if p.ByProcess {
			k.pid = c.PID
			names = append(names, fmt.Sprintf("pid %d (%s)", c.PID, DisplayName(c.Process)))
		}
		if p.ByThread {
			k.tid = c.TID
			names = append(names, fmt.Sprintf("tid %d (%s)", c.TID, DisplayName(c.Thread)))
		}
		g := groups[k]
		if g == nil {
			name := strings.Join(names, " ")
			if name == "" {
				name = "all samples"
			}
			g = &group{name: name, pid: k.pid, tid: k.tid, stacks: map[StackID]*Stack{}}
			groups[k] = g
		}
		s := g.stacks[c.stack]
		if s == nil {
			s = &Stack{Frames: c.Frames}
			g.stacks[c.stack] = s
		}
		s.Count += c.N
		g.total += c.N
	}
	ordered := make([]*group, 0, len(groups))
	for _, g := range groups {
		ordered = append(ordered, g)
	}
	slices.SortFunc(ordered, func(a, b *group) int {
		return cmp.Or(cmp.Compare(b.total, a.total), cmp.Compare(a.pid, b.pid), cmp.Compare(a.tid, b.tid))
	})
	if len(ordered) == 0 {
		// speedscope needs a profile to show, even an empty one.
		ordered = append(ordered, &group{name: "all samples"})
	}
	for _, g := range ordered {
		stacks := make([]Stack, 0, len(g.stacks))
		for _, s := range g.stacks {
			stacks = append(stacks, *s)
		}
		slices.SortFunc(stacks, func(a, b Stack) int { return slices.CompareFunc(a.Frames, b.Frames, compareFrames) })
		prof := speedscopeSample{
			Type: "sampled", Name: g.name, Unit: unit,
			Samples: make([][]int, len(stacks)), Weights: make([]int64, len(stacks)),
		}
		for i, s := range stacks {
			ids := make([]int, len(s.Frames))
			for j, fr := range s.Frames {
				ids[j] = index[fr]
			}
			prof.Samples[i] = ids
			prof.Weights[i] = int64(s.Count) * period
			prof.EndValue += prof.Weights[i]
		}
		f.Profiles = append(f.Profiles, prof)
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // names read as they are; nothing embeds this in HTML
	return enc.Encode(f)
}
