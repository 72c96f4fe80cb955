// Package profile aggregates symbolized stacks and writes them in the
// formats people open: folded stacks for flame graphs, and a top-functions
// table.
package profile

import (
	"sort"
	"strings"
	"time"
)

// Marker frames: names in brackets cannot be Wasm function names, so they
// never collide with a real frame.
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
)

// UnwindFailed is the root frame of a sample whose walk stopped early.
func UnwindFailed(reason string) string { return UnwindFailedPrefix + reason + "]" }

// Profile is a multiset of stacks, each root first.
type Profile struct {
	PID      int
	Comm     string
	Hz       int
	Duration time.Duration
	Lost     uint64 // samples the kernel could not deliver

	counts map[string]*entry
	total  int
}

type entry struct {
	frames []string
	count  int
}

// New makes an empty profile.
func New() *Profile { return &Profile{counts: map[string]*entry{}} }

// Add counts one occurrence of stack (root first).
func (p *Profile) Add(stack []string) { p.AddN(stack, 1) }

// AddN counts n occurrences of stack.
func (p *Profile) AddN(stack []string, n int) {
	key := strings.Join(stack, "\x00")
	e := p.counts[key]
	if e == nil {
		e = &entry{frames: append([]string(nil), stack...)}
		p.counts[key] = e
	}
	e.count += n
	p.total += n
}

// Total is the number of samples.
func (p *Profile) Total() int { return p.total }

// Stack is one distinct stack and how often it was seen.
type Stack struct {
	Frames []string // root first
	Count  int
}

// Stacks returns the distinct stacks, most frequent first, ties in
// lexical order, so output is deterministic.
func (p *Profile) Stacks() []Stack {
	out := make([]Stack, 0, len(p.counts))
	for _, e := range p.counts {
		out = append(out, Stack{Frames: e.frames, Count: e.count})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return strings.Join(out[i].Frames, ";") < strings.Join(out[j].Frames, ";")
	})
	return out
}

// WithWasm counts the samples that had Wasm on the stack.
func (p *Profile) WithWasm() int {
	n := 0
	for _, e := range p.counts {
		if len(e.frames) > 0 && !isRootMarker(e.frames[0]) {
			n += e.count
		}
	}
	return n
}

func isRootMarker(f string) bool {
	return f == NoWasm || strings.HasPrefix(f, UnwindFailedPrefix)
}
