package record

import (
	"runtime"
	"slices"

	"github.com/wasmtrace/wasmtrace/loader"
	"github.com/wasmtrace/wasmtrace/profile"
	"github.com/wasmtrace/wasmtrace/symbolize"
	"github.com/wasmtrace/wasmtrace/walker"
)

type stackBuilder struct {
	syms  lookuper
	stats *Stats
}

// lookuper names code by address: a *symbolize.Symbolizer, or a fixed
// table in tests.
type lookuper interface {
	Lookup(pc uint64) (symbolize.Func, *symbolize.Module, bool)
	// UnseenCode reports whether pc is in executable memory that holds
	// no known module (symbolize.Symbolizer.UnseenCode).
	UnseenCode(pc uint64) bool
}

// stack turns one kernel sample into a symbolized sample, root first.
func (b *stackBuilder) stack(s loader.Sample) profile.Sample {
	b.stats.Samples++
	frames := b.frames(s)
	slices.Reverse(frames)
	return profile.Sample{Frames: frames, PID: int(s.PID), TID: int(s.TID), Thread: s.Comm}
}

// frames returns the sample's frames, innermost first.
func (b *stackBuilder) frames(s loader.Sample) []profile.Frame {
	stop := walker.Stop(s.Stop)
	if stop != walker.StopOK {
		b.stats.Stops[stop.String()]++
		return []profile.Frame{profile.UnwindFailedFrame(stop.String())}
	}
	if s.Where != loader.InWasm {
		// The kernel saw a PC outside every module it knew of. If the
		// PC is compiled Wasm after all, the module was compiled after
		// the last update of the kernel's ranges and the walk started
		// from stale exit records: it cannot be trusted.
		if f, _, ok := b.syms.Lookup(s.UserPC); ok && f.Kind != symbolize.Other {
			const why = "module compiled after the last range update"
			b.stats.Stops[why]++
			return []profile.Frame{profile.UnwindFailedFrame(why)}
		}
		// A thread that entered Wasm, sampled in JIT code that no module
		// known yet holds: most likely a module compiled since the last
		// rescan. It is neither [no Wasm] nor the host's code.
		if s.CTS && b.syms.UnseenCode(s.UserPC) {
			const why = "code wasmtrace has not seen yet"
			b.stats.Stops[why]++
			return []profile.Frame{profile.UnwindFailedFrame(why)}
		}
	}
	if len(s.PCs) == 0 {
		return []profile.Frame{profile.NoWasmFrame()}
	}
	var out []profile.Frame
	push := func(f profile.Frame) {
		if f.Kind == profile.KindHost && len(out) > 0 && out[len(out)-1].Kind == profile.KindHost {
			return
		}
		out = append(out, f)
	}
	if s.Where == loader.InHost {
		push(profile.HostFrame())
	}
	// [fiber] marks where the stack moved onto a fiber: root side of the
	// oldest activation on each fiber stack.
	res := walker.Result{ActStart: make([]int, len(s.ActStart)), Fibers: s.Fibers, StackEnds: s.StackEnds}
	act := 0
	nextAct := func() {
		if res.FiberRoot(act) {
			push(profile.FiberFrame())
		}
		act++
		push(profile.HostFrame())
	}
	for i, pc := range s.PCs {
		for act+1 < len(s.ActStart) && int(s.ActStart[act+1]) <= i {
			nextAct()
		}
		lookup := pc
		if i > 0 || s.Where != loader.InWasm {
			lookup = pc - 1 // a return address: the call is the byte before
		}
		push(b.frame(lookup))
	}
	// Activations with no frames of their own at the end (possible when
	// sampled inside an entry trampoline) still mark host code.
	for act+1 < len(s.ActStart) {
		nextAct()
	}
	if res.FiberRoot(act) {
		push(profile.FiberFrame())
	}
	return out
}

// frame names the code at pc. A Wasm frame's module is the module's own
// name (its name section), or "" when it has none: wasmtrace does not
// invent one (see profile.Frame.Module).
func (b *stackBuilder) frame(pc uint64) profile.Frame {
	f, m, ok := b.syms.Lookup(pc)
	switch {
	case !ok:
		return profile.UnresolvedFrame(pc)
	case f.Kind == symbolize.Trampoline:
		return profile.HostFrame()
	}
	module := ""
	if m != nil {
		module = m.Name
	}
	return profile.WasmFrame(f.Name, module)
}

// goarchOfProcess is the architecture wasmtrace runs on; a process it can
// trace runs on the same one.
func goarchOfProcess() string { return runtime.GOARCH }
