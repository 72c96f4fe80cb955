// Package profile aggregates symbolized samples and writes them in the
// formats people open: a top-functions table, folded stacks, pprof,
// an interactive flame graph (SVG) and speedscope JSON.
//
// Every format is written from the same aggregated samples: a Sample keeps
// its frames (each with a kind, and a module for Wasm frames), its pid and
// process name, tid and thread name, so no format has to recover what
// another dropped.
// How frame names are made safe for every format is decided in one place,
// DisplayName (escape.go).
package profile

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Marker frames: names in brackets are not names Wasm toolchains give
// functions, so they stand out from real frames in every format.
const (
	// Host is host code: on top of a stack, the host function Wasm called;
	// between two Wasm activations, the host code that called back in.
	Host = "[host]"
	// NoWasm roots the samples of threads with no Wasm on their stack, so
	// percentages are of the whole process.
	NoWasm = "[no Wasm]"
	// UnwindFailedPrefix roots samples whose walk failed a check; the
	// reason follows.
	UnwindFailedPrefix = "[unwind failed: "
	// Fiber is where a stack moves onto a fiber: below it (root side) the
	// thread's own stack, above it Wasm that async Wasmtime runs on a
	// fiber stack of its own.
	Fiber = "[fiber]"
	// FoldedMarker stands for the rarest callees of its caller, folded into it
	// to keep a profile within its MaxStacks.
	FoldedMarker = "[folded]"
)

// UnwindFailed is the name of the root frame of a sample whose walk
// stopped early.
func UnwindFailed(reason string) string { return UnwindFailedPrefix + reason + "]" }

// Kind says what a frame stands for.
type Kind uint8

const (
	// KindWasm is code of a compiled Wasm module: a function body, named
	// from the module's name section or wasm[M]::function[I]; or, rarely,
	// other code in the module's image, named by its symbol.
	KindWasm Kind = iota + 1
	// KindHost is the [host] marker.
	KindHost
	// KindNoWasm is the [no Wasm] root of a sample with no Wasm on the
	// stack.
	KindNoWasm
	// KindUnwindFailed is the [unwind failed: REASON] root of a sample
	// whose walk stopped early.
	KindUnwindFailed
	// KindUnresolved is an address in no known function, named 0x....
	KindUnresolved
	// KindThread is the "tid N (NAME)" root that Stacks puts above each
	// stack when the profile is split by thread. Samples never hold one.
	KindThread
	// KindProcess is the "pid N (NAME)" root that Stacks puts above each
	// stack when the profile is split by process. Samples never hold one.
	KindProcess
	// KindFiber is the [fiber] marker.
	KindFiber
	// KindFolded is the [folded] marker: it stands for the callees of its
	// caller that were folded into it to keep the profile within
	// MaxStacks.
	KindFolded
)

var kindNames = [...]string{
	KindWasm:         "wasm",
	KindHost:         "host",
	KindNoWasm:       "no-wasm",
	KindUnwindFailed: "unwind-failed",
	KindUnresolved:   "unresolved",
	KindThread:       "thread",
	KindProcess:      "process",
	KindFiber:        "fiber",
	KindFolded:       "folded",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Frame is one frame of a stack. Frames are compared as values: two frames
// are the same frame when kind, name and module are equal.
type Frame struct {
	Kind Kind
	// Name is the frame's name as recorded, not escaped: a Wasm function's
	// name exactly as its module names it, the marker text for markers
	// ("[host]", "[unwind failed: bad fp]"), the address for unresolved
	// frames. Writers show DisplayName(Name).
	Name string
	// Module is the name of the Wasm module a KindWasm frame belongs to,
	// from the module's name section. It is "" for every other kind, and
	// for Wasm frames whose module has no name (most modules built by
	// toolchains without a module name, and functions known only from a
	// perf map): wasmtrace does not make one up, so that a name always
	// comes from the module itself.
	Module string
}

// WasmFrame is a frame of compiled Wasm code in module (may be "").
func WasmFrame(name, module string) Frame {
	return Frame{Kind: KindWasm, Name: name, Module: module}
}

// HostFrame is the [host] marker.
func HostFrame() Frame { return Frame{Kind: KindHost, Name: Host} }

// FiberFrame is the [fiber] marker.
func FiberFrame() Frame { return Frame{Kind: KindFiber, Name: Fiber} }

// FoldedFrame is the [folded] marker.
func FoldedFrame() Frame { return Frame{Kind: KindFolded, Name: FoldedMarker} }

// NoWasmFrame is the [no Wasm] root.
func NoWasmFrame() Frame { return Frame{Kind: KindNoWasm, Name: NoWasm} }

// UnwindFailedFrame is the [unwind failed: reason] root.
func UnwindFailedFrame(reason string) Frame {
	return Frame{Kind: KindUnwindFailed, Name: UnwindFailed(reason)}
}

// UnresolvedFrame is an address that no known function contains.
func UnresolvedFrame(pc uint64) Frame {
	return Frame{Kind: KindUnresolved, Name: fmt.Sprintf("%#x", pc)}
}

// ThreadFrame is the root Stacks puts above a thread's stacks.
func ThreadFrame(tid int, thread string) Frame {
	return Frame{Kind: KindThread, Name: fmt.Sprintf("tid %d (%s)", tid, thread)}
}

// ProcessFrame is the root Stacks puts above a process's stacks.
func ProcessFrame(pid int, process string) Frame {
	return Frame{Kind: KindProcess, Name: fmt.Sprintf("pid %d (%s)", pid, process)}
}

// IsMarker reports whether f is one of wasmtrace's bracketed markers.
func (f Frame) IsMarker() bool {
	return f.Kind == KindHost || f.Kind == KindNoWasm || f.Kind == KindUnwindFailed || f.Kind == KindFiber || f.Kind == KindFolded
}

func compareFrames(a, b Frame) int {
	return cmp.Or(strings.Compare(a.Name, b.Name), cmp.Compare(a.Kind, b.Kind), strings.Compare(a.Module, b.Module))
}

// Sample is one stack seen on one thread.
type Sample struct {
	Frames  []Frame // root first
	PID     int
	Process string // the process's name (its main thread's comm)
	TID     int
	Thread  string // the thread's name (comm) when sampled
}

// Count is a distinct sample and how often it was seen.
type Count struct {
	Sample
	N int
}

// Profile is a multiset of samples, with what is known of the recording.
//
// It is kept as a frame table (each distinct Frame once, by FrameID), a
// stack trie (each distinct stack a node, keyed by its caller's node and
// its leaf frame: a StackID) and a count per (stack, thread), so that its
// memory grows with what is distinct, not with the samples. Every writer
// reads that one structure (aggregate.go).
type Profile struct {
	// PID and Comm name the process recorded; PID is 0 when the profile
	// holds several processes (each sample names its own).
	PID      int
	Comm     string // the process's name
	Hz       int    // sampling frequency per CPU; 0 if unknown
	Duration time.Duration
	Lost     uint64 // samples the kernel could not deliver
	// ByThread splits the profile by thread: the folded, text and svg
	// formats root each stack at "tid N (NAME)", and speedscope writes one
	// profile per thread instead of one for all. pprof always labels each
	// sample with its pid, tid and thread name.
	ByThread bool
	// ByProcess splits the profile by process in the same way: stacks
	// are rooted at "pid N (NAME)" (above the thread, with ByThread), and
	// speedscope writes one profile per process (or per thread).
	ByProcess bool
	// MaxStacks, when positive, bounds the distinct stacks kept: when one
	// more would exceed it, the rarest are folded into their callers
	// (see fold.go). 0 keeps every stack.
	MaxStacks int

	agg
}

// New makes an empty profile.
func New() *Profile {
	p := &Profile{}
	p.agg.init()
	return p
}

// Add counts one occurrence of s.
func (p *Profile) Add(s Sample) { p.AddN(s, 1) }

// AddN counts n occurrences of s. The profile keeps its own copy of what
// it needs of s.
func (p *Profile) AddN(s Sample, n int) {
	st := StackID(0)
	for _, f := range s.Frames {
		st = p.Push(st, p.Frame(f))
	}
	p.AddStack(st, p.Thread(s.PID, s.Process, s.TID, s.Thread), n)
}

// Total is the number of samples.
func (p *Profile) Total() int { return p.total }

// Period is the sampling period in nanoseconds, 0 if Hz is unknown.
func (p *Profile) Period() int64 {
	if p.Hz <= 0 {
		return 0
	}
	return int64(time.Second) / int64(p.Hz)
}

// Samples returns the distinct samples, ordered by pid, process name, tid,
// thread name and frames, so output is deterministic.
func (p *Profile) Samples() []Count {
	cs := p.samples()
	out := make([]Count, len(cs))
	for i, c := range cs {
		out[i] = c.Count
	}
	return out
}

// Stack is one distinct stack as the folded, text and svg formats show it,
// and how often it was seen.
type Stack struct {
	Frames []Frame // root first; KindProcess, KindThread roots with ByProcess, ByThread
	Count  int
}

// Stacks returns the distinct stacks: samples with equal frames are merged
// across threads and processes, unless ByProcess or ByThread, which root
// each stack at its process and then its thread. Most frequent first, ties
// in frame order.
func (p *Profile) Stacks() []Stack {
	type key struct {
		proc, thread string // the root frames' names, "" when not split
		stack        StackID
	}
	by := map[key]int{}
	var order []key
	for ck, n := range p.counts {
		k := key{stack: ck.stack}
		th := &p.threads[ck.thread]
		if p.ByProcess {
			k.proc = th.procName
		}
		if p.ByThread {
			k.thread = th.threadName
		}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] += int(n)
	}
	out := make([]Stack, 0, len(order))
	for _, k := range order {
		var frames []Frame
		if p.ByProcess {
			frames = append(frames, Frame{Kind: KindProcess, Name: k.proc})
		}
		if p.ByThread {
			frames = append(frames, Frame{Kind: KindThread, Name: k.thread})
		}
		out = append(out, Stack{Frames: p.appendFrames(frames, k.stack), Count: by[k]})
	}
	slices.SortFunc(out, func(a, b Stack) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), slices.CompareFunc(a.Frames, b.Frames, compareFrames))
	})
	return out
}

// subject names what was recorded: "pid N (NAME)", or "N processes"
// when the profile holds several.
func (p *Profile) subject() string {
	if p.PID != 0 {
		return fmt.Sprintf("pid %d (%s)", p.PID, DisplayName(p.Comm))
	}
	pids := map[int]string{}
	for ck := range p.counts {
		th := &p.threads[ck.thread]
		pids[th.PID] = th.Process
	}
	if len(pids) == 1 {
		for pid, process := range pids {
			return fmt.Sprintf("pid %d (%s)", pid, DisplayName(process))
		}
	}
	return fmt.Sprintf("%d processes", len(pids))
}

// WithWasm counts the samples that had Wasm on the stack.
func (p *Profile) WithWasm() int { return int(p.withWasm) }
