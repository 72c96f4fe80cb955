package profile

import (
	"fmt"
	"io"

	"github.com/google/pprof/profile"
)

// pprof label keys of every sample.
const (
	LabelPID     = "pid"     // numeric
	LabelProcess = "process" // the process's name
	LabelTID     = "tid"     // numeric
	LabelThread  = "thread"  // the thread's name
)

// Pprof converts the profile to pprof's data model:
//
//   - two sample types, samples/count and cpu/nanoseconds (count × period,
//     period = 1e9/Hz ns), like Go's own CPU profiles; the period type is
//     cpu/nanoseconds;
//   - one Location per distinct frame, holding one Line with one Function,
//     whose name is the frame's DisplayName and whose file name is the Wasm
//     module's name ("" when the module has none, and for markers);
//   - one Sample per distinct sample (threads are not merged), leaf first,
//     labelled pid and tid (numeric), process and thread (their names).
//
// IDs are given in the order of Samples, so the result is deterministic.
// One mapping stands for the recorded process (its file is the process's
// name, "" when the profile holds several) and says it has functions, so
// pprof neither looks for the binary nor tries to symbolize: every frame
// already is.
func (p *Profile) Pprof() *profile.Profile {
	period := p.Period()
	out := &profile.Profile{
		SampleType: []*profile.ValueType{
			{Type: "samples", Unit: "count"},
			{Type: "cpu", Unit: "nanoseconds"},
		},
		PeriodType:    &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:        period,
		DurationNanos: p.Duration.Nanoseconds(),
		Comments: []string{
			fmt.Sprintf("wasmtrace: %s, %d Hz, %d samples, %d lost", p.subject(), p.Hz, p.total, p.Lost),
		},
	}
	if t := p.foldedText(); t != "" {
		out.Comments = append(out.Comments, "wasmtrace: "+t)
	}
	mapping := &profile.Mapping{ID: 1, File: DisplayName(p.Comm), HasFunctions: true}
	out.Mapping = []*profile.Mapping{mapping}
	type funcKey struct{ name, file string }
	funcs := map[funcKey]*profile.Function{}
	locs := map[Frame]*profile.Location{}
	location := func(f Frame) *profile.Location {
		if l := locs[f]; l != nil {
			return l
		}
		k := funcKey{DisplayName(f.Name), DisplayName(f.Module)}
		fn := funcs[k]
		if fn == nil {
			fn = &profile.Function{ID: uint64(len(out.Function) + 1), Name: k.name, SystemName: k.name, Filename: k.file}
			funcs[k] = fn
			out.Function = append(out.Function, fn)
		}
		l := &profile.Location{ID: uint64(len(out.Location) + 1), Mapping: mapping, Line: []profile.Line{{Function: fn}}}
		locs[f] = l
		out.Location = append(out.Location, l)
		return l
	}
	for _, c := range p.Samples() {
		s := &profile.Sample{
			Value:    []int64{int64(c.N), int64(c.N) * period},
			Label:    map[string][]string{LabelProcess: {DisplayName(c.Process)}, LabelThread: {DisplayName(c.Thread)}},
			NumLabel: map[string][]int64{LabelPID: {int64(c.PID)}, LabelTID: {int64(c.TID)}},
		}
		for i := len(c.Frames) - 1; i >= 0; i-- {
			s.Location = append(s.Location, location(c.Frames[i]))
		}
		out.Sample = append(out.Sample, s)
	}
	return out
}

// WritePprof writes the profile as gzipped profile.proto (see Pprof).
func (p *Profile) WritePprof(w io.Writer) error {
	pp := p.Pprof()
	if err := pp.CheckValid(); err != nil {
		return fmt.Errorf("pprof profile: %w", err)
	}
	return pp.Write(w)
}
