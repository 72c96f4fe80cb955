package record

import (
	"github.com/wasmtrace/wasmtrace/loader"
	"github.com/wasmtrace/wasmtrace/profile"
)

// NewStats returns empty Stats, for callers of Target.Stack.
func NewStats() *Stats { return &Stats{Stops: map[string]int{}} }

// Stack symbolizes one kernel walk of t's process exactly as a recording
// does (root first, [host] between activations); failed walks are counted
// in st. It is how `wasmtrace trace` names the stacks of its events.
func (t *Target) Stack(s loader.Sample, st *Stats) profile.Sample {
	b := stackBuilder{syms: t.Syms, stats: st}
	ps := b.stack(s)
	ps.Process = t.Comm
	return ps
}
