package record

import (
	"fmt"
	"runtime"
	"slices"

	"github.com/wasmtrace/wasmtrace/loader"
	"github.com/wasmtrace/wasmtrace/profile"
	"github.com/wasmtrace/wasmtrace/symbolize"
	"github.com/wasmtrace/wasmtrace/walker"
)

type stackBuilder struct {
	syms    *symbolize.Symbolizer
	threads bool
	stats   *Stats
}

// stack turns one kernel sample into a symbolized stack, root first.
func (b *stackBuilder) stack(s loader.Sample) []string {
	b.stats.Samples++
	leaf := b.frames(s)
	out := make([]string, 0, len(leaf)+1)
	if b.threads {
		out = append(out, fmt.Sprintf("tid %d (%s)", s.TID, s.Comm))
	}
	slices.Reverse(leaf)
	return append(out, leaf...)
}

// frames returns the sample's frames, innermost first.
func (b *stackBuilder) frames(s loader.Sample) []string {
	stop := walker.Stop(s.Stop)
	if stop != walker.StopOK {
		b.stats.Stops[stop.String()]++
		return []string{profile.UnwindFailed(stop.String())}
	}
	if s.Where != loader.InWasm {
		// The kernel saw a PC outside every module it knew of. If the
		// PC is compiled Wasm after all, the module was compiled after
		// the last update of the kernel's ranges and the walk started
		// from stale exit records: it cannot be trusted.
		if f, _, ok := b.syms.Lookup(s.UserPC); ok && f.Kind != symbolize.Other {
			const why = "module compiled after the last range update"
			b.stats.Stops[why]++
			return []string{profile.UnwindFailed(why)}
		}
	}
	if len(s.PCs) == 0 {
		return []string{profile.NoWasm}
	}
	var out []string
	push := func(name string) {
		if name == profile.Host && len(out) > 0 && out[len(out)-1] == profile.Host {
			return
		}
		out = append(out, name)
	}
	if s.Where == loader.InHost {
		push(profile.Host)
	}
	act := 0
	for i, pc := range s.PCs {
		for act+1 < len(s.ActStart) && int(s.ActStart[act+1]) <= i {
			act++
			push(profile.Host)
		}
		lookup := pc
		if i > 0 || s.Where != loader.InWasm {
			lookup = pc - 1 // a return address: the call is the byte before
		}
		push(b.name(lookup))
	}
	// Activations with no frames of their own at the end (possible when
	// sampled inside an entry trampoline) still mark host code.
	for act+1 < len(s.ActStart) {
		act++
		push(profile.Host)
	}
	return out
}

func (b *stackBuilder) name(pc uint64) string {
	f, _, ok := b.syms.Lookup(pc)
	switch {
	case !ok:
		return fmt.Sprintf("%#x", pc)
	case f.Kind == symbolize.Trampoline:
		return profile.Host
	}
	return f.Name
}

// goarchOfProcess is the architecture wasmtrace runs on; a process it can
// trace runs on the same one.
func goarchOfProcess() string { return runtime.GOARCH }
