// Package export turns wasmtrace profiles into OpenTelemetry profiles
// (OTLP, the go.opentelemetry.io/collector/pdata/pprofile data model) and
// sends them to an OTLP endpoint over gRPC or HTTP.
//
// The layout of one exported window:
//
//   - one ResourceProfiles per traced process, with the process's
//     attributes in the semantic conventions' names (process.pid,
//     process.executable.name, container.id, host.name,
//     process.runtime.name "wasmtime" and process.runtime.version), plus
//     wasm.module.names, the Wasm modules its window's stacks ran in;
//   - one ScopeProfiles (scope "wasmtrace") holding one Profile: sample
//     type samples/count, period type cpu/nanoseconds at 1e9/Hz, the
//     window's start time and duration;
//   - one Sample per distinct stack and thread, attributed thread.id and
//     thread.name, valued by how often it was seen;
//   - one Function per distinct frame name and module (the module is the
//     function's file name, as in wasmtrace's pprof output); Wasm frames'
//     locations carry profile.frame.type "wasm".
//
// Every table of the shared dictionary starts with its zero entry, as the
// OTLP profiles protocol requires (index 0 means "none").
package export

import (
	"crypto/rand"
	"slices"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pprofile"

	"github.com/wasmtrace/wasmtrace/profile"
)

// Attribute keys. The first group is from the OpenTelemetry semantic
// conventions; wasm.module.names is wasmtrace's own (the conventions have
// none for Wasm modules).
const (
	AttrPID            = "process.pid"
	AttrExecutable     = "process.executable.name"
	AttrContainerID    = "container.id"
	AttrHostName       = "host.name"
	AttrRuntimeName    = "process.runtime.name"
	AttrRuntimeVersion = "process.runtime.version"
	AttrThreadID       = "thread.id"
	AttrThreadName     = "thread.name"
	AttrFrameType      = "profile.frame.type"
	AttrModules        = "wasm.module.names"

	// ScopeName is the instrumentation scope of every exported profile.
	ScopeName = "wasmtrace"
)

// Process is what is known of a traced process beyond its samples.
type Process struct {
	PID int
	// Executable is the base name of /proc/PID/exe ("" to use the
	// samples' process name, the comm).
	Executable  string
	ContainerID string // "" when not in a container
	Wasmtime    string // Wasmtime's version, "" if unknown
}

// Window is the profile of every traced process over one interval.
type Window struct {
	// Samples are the window's distinct samples (profile.Samples), kept
	// apart from their Profile so that the profile can be written
	// elsewhere at the same time.
	Samples   []profile.Count
	Period    int64 // nanoseconds per sample (profile.Period)
	Start     time.Time
	Duration  time.Duration
	Processes map[int]Process // by pid; processes missing here get their pid and comm only
	Host      string
	// Resource is added to every process's resource attributes
	// (OTEL_RESOURCE_ATTRIBUTES); the process's own attributes win.
	Resource map[string]string
}

// WindowOf is the window of p, which began at start; the caller fills in
// what is known of the processes and the host.
func WindowOf(p *profile.Profile, start time.Time) Window {
	return Window{Samples: p.Samples(), Period: p.Period(), Start: start, Duration: p.Duration}
}

// Profiles converts w to OTLP profiles. scopeVersion is wasmtrace's
// version, recorded as the scope's version.
func Profiles(w Window, scopeVersion string) pprofile.Profiles {
	out := pprofile.NewProfiles()
	d := newDict(out.Dictionary())
	byPID := map[int][]profile.Count{}
	var pids []int
	for _, c := range w.Samples {
		if _, ok := byPID[c.PID]; !ok {
			pids = append(pids, c.PID)
		}
		byPID[c.PID] = append(byPID[c.PID], c)
	}
	slices.Sort(pids)
	period := w.Period
	for _, pid := range pids {
		counts := byPID[pid]
		rp := out.ResourceProfiles().AppendEmpty()
		attrs := rp.Resource().Attributes()
		for k, v := range w.Resource {
			attrs.PutStr(k, v)
		}
		info := w.Processes[pid]
		exe := info.Executable
		if exe == "" {
			exe = counts[0].Process
		}
		attrs.PutInt(AttrPID, int64(pid))
		attrs.PutStr(AttrExecutable, exe)
		if w.Host != "" {
			attrs.PutStr(AttrHostName, w.Host)
		}
		if info.ContainerID != "" {
			attrs.PutStr(AttrContainerID, info.ContainerID)
		}
		attrs.PutStr(AttrRuntimeName, "wasmtime")
		if info.Wasmtime != "" {
			attrs.PutStr(AttrRuntimeVersion, info.Wasmtime)
		}
		mods := modules(counts)
		ms := attrs.PutEmptySlice(AttrModules)
		for _, m := range mods {
			ms.AppendEmpty().SetStr(m)
		}

		sp := rp.ScopeProfiles().AppendEmpty()
		sp.Scope().SetName(ScopeName)
		sp.Scope().SetVersion(scopeVersion)
		pr := sp.Profiles().AppendEmpty()
		var id [16]byte
		_, _ = rand.Read(id[:]) // never fails (crypto/rand)
		pr.SetProfileID(pprofile.ProfileID(id))
		pr.SampleType().SetTypeStrindex(d.str("samples"))
		pr.SampleType().SetUnitStrindex(d.str("count"))
		pr.PeriodType().SetTypeStrindex(d.str("cpu"))
		pr.PeriodType().SetUnitStrindex(d.str("nanoseconds"))
		pr.SetPeriod(period)
		pr.SetTime(pcommon.NewTimestampFromTime(w.Start))
		pr.SetDurationNano(uint64(max(w.Duration, 0)))
		for _, c := range counts {
			s := pr.Samples().AppendEmpty()
			s.SetStackIndex(d.stack(c.Frames))
			s.Values().Append(int64(c.N))
			s.AttributeIndices().Append(d.intAttr(AttrThreadID, int64(c.TID)), d.strAttr(AttrThreadName, c.Thread))
		}
	}
	return out
}

// modules lists the Wasm modules named in counts' frames, sorted.
func modules(counts []profile.Count) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range counts {
		for _, f := range c.Frames {
			if f.Kind == profile.KindWasm && f.Module != "" && !seen[f.Module] {
				seen[f.Module] = true
				out = append(out, f.Module)
			}
		}
	}
	slices.Sort(out)
	return out
}

// dict fills a ProfilesDictionary, deduplicating through maps (pprofile's
// Set* helpers search their table linearly, quadratic over a window).
type dict struct {
	d       pprofile.ProfilesDictionary
	strs    map[string]int32
	funcs   map[profile.Frame]int32
	locs    map[profile.Frame]int32
	stacks  map[string]int32
	strAtts map[[2]string]int32
	intAtts map[intAttrKey]int32
	wasmAtt int32
}

type intAttrKey struct {
	k string
	v int64
}

func newDict(d pprofile.ProfilesDictionary) *dict {
	t := &dict{d: d, strs: map[string]int32{}, funcs: map[profile.Frame]int32{}, locs: map[profile.Frame]int32{},
		stacks: map[string]int32{}, strAtts: map[[2]string]int32{}, intAtts: map[intAttrKey]int32{}}
	// The zero entries.
	t.str("")
	d.MappingTable().AppendEmpty()
	d.LocationTable().AppendEmpty()
	d.FunctionTable().AppendEmpty()
	d.LinkTable().AppendEmpty()
	d.StackTable().AppendEmpty()
	d.AttributeTable().AppendEmpty()
	t.wasmAtt = t.strAttr(AttrFrameType, "wasm")
	return t
}

func (t *dict) str(s string) int32 {
	if i, ok := t.strs[s]; ok {
		return i
	}
	i := int32(t.d.StringTable().Len())
	t.d.StringTable().Append(s)
	t.strs[s] = i
	return i
}

func (t *dict) strAttr(k, v string) int32 {
	key := [2]string{k, v}
	if i, ok := t.strAtts[key]; ok {
		return i
	}
	i := int32(t.d.AttributeTable().Len())
	a := t.d.AttributeTable().AppendEmpty()
	a.SetKeyStrindex(t.str(k))
	a.Value().SetStr(v)
	t.strAtts[key] = i
	return i
}

func (t *dict) intAttr(k string, v int64) int32 {
	key := intAttrKey{k, v}
	if i, ok := t.intAtts[key]; ok {
		return i
	}
	i := int32(t.d.AttributeTable().Len())
	a := t.d.AttributeTable().AppendEmpty()
	a.SetKeyStrindex(t.str(k))
	a.Value().SetInt(v)
	t.intAtts[key] = i
	return i
}

// location is a frame's Location (one Line, one Function). Frames are
// shown by profile.DisplayName, the name every wasmtrace format shows.
func (t *dict) location(f profile.Frame) int32 {
	if i, ok := t.locs[f]; ok {
		return i
	}
	fk := profile.Frame{Name: f.Name, Module: f.Module}
	fi, ok := t.funcs[fk]
	if !ok {
		fi = int32(t.d.FunctionTable().Len())
		fn := t.d.FunctionTable().AppendEmpty()
		name := t.str(profile.DisplayName(f.Name))
		fn.SetNameStrindex(name)
		fn.SetSystemNameStrindex(name)
		if f.Module != "" {
			fn.SetFilenameStrindex(t.str(profile.DisplayName(f.Module)))
		}
		t.funcs[fk] = fi
	}
	i := int32(t.d.LocationTable().Len())
	l := t.d.LocationTable().AppendEmpty()
	l.Lines().AppendEmpty().SetFunctionIndex(fi)
	if f.Kind == profile.KindWasm {
		l.AttributeIndices().Append(t.wasmAtt)
	}
	t.locs[f] = i
	return i
}

// stack is the Stack of frames (root first), whose locations OTLP lists
// leaf first, as pprof does.
func (t *dict) stack(frames []profile.Frame) int32 {
	idx := make([]int32, len(frames))
	for i, f := range frames {
		idx[len(frames)-1-i] = t.location(f)
	}
	key := string(int32Bytes(idx))
	if i, ok := t.stacks[key]; ok {
		return i
	}
	i := int32(t.d.StackTable().Len())
	t.d.StackTable().AppendEmpty().LocationIndices().Append(idx...)
	t.stacks[key] = i
	return i
}

func int32Bytes(v []int32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = append(b, byte(x), byte(x>>8), byte(x>>16), byte(x>>24))
	}
	return b
}
