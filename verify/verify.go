// Package verify checks the kernel walker against the Go reference walker,
// sample by sample: for the samples the kernel logged (record --verify), it
// replays the walk with walker.Walk over exactly the memory the kernel read,
// from the same registers and thread pointer, and compares the two walks
// frame by frame and read by read.
//
// The two walkers implement the same numbered algorithm step for step, and
// make the same reads in the same order; so the replay must make exactly
// the kernel's reads, and find exactly its frames. Any departure is a
// difference: a read the Go walker makes that the kernel did not log, a
// read the kernel made that the Go walker does not, another address or
// size, or another result (where, stop reason, frames, activation starts).
package verify

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/wasmtrace/wasmtrace/arch"
	"github.com/wasmtrace/wasmtrace/layout"
	"github.com/wasmtrace/wasmtrace/loader"
	"github.com/wasmtrace/wasmtrace/proc"
	"github.com/wasmtrace/wasmtrace/walker"
)

// keptDiffs is how many differences a Verifier keeps in full.
const keptDiffs = 20

// Verifier compares logged kernel samples with Go walks of the same
// memory, and counts. Not safe for concurrent use.
type Verifier struct {
	// Checked samples, and how many of them were identical.
	Checked, Identical int
	// Unchecked counts logged samples that could not be replayed, by
	// reason.
	Unchecked map[string]int
	// Diffs holds the first differences found; Differ counts them all.
	Diffs  []Diff
	Differ int
}

// Diff is one sample whose two walks differ.
type Diff struct {
	Sample loader.Sample
	// Reasons say what differs, first the first read that did.
	Reasons []string
	// Kernel and Go are the two walks.
	Kernel, Go walker.Result
}

// New returns an empty Verifier.
func New() *Verifier { return &Verifier{Unchecked: map[string]int{}} }

// Check verifies one sample of a process with layout l on architecture a,
// whose threads' own stacks are st. Samples without a read log are
// ignored; it reports whether the sample was checked and identical.
func (v *Verifier) Check(s loader.Sample, l *layout.Layout, a arch.Arch, st proc.Stacks) bool {
	log := s.Log
	switch {
	case log == nil:
		return false
	case log.NoRegs:
		v.Unchecked["user registers unreadable"]++
		return false
	case log.Overflow:
		v.Unchecked["read log full"]++
		return false
	case log.Ranges == nil:
		v.Unchecked["compiled-code ranges of the walk no longer known"]++
		return false
	}
	v.Checked++
	d := Compare(s, l, a, st)
	if d == nil {
		v.Identical++
		return true
	}
	v.Differ++
	if len(v.Diffs) < keptDiffs {
		v.Diffs = append(v.Diffs, *d)
	}
	return false
}

// Compare replays one logged sample and returns how it differs, or nil.
func Compare(s loader.Sample, l *layout.Layout, a arch.Arch, st proc.Stacks) *Diff {
	mem := newReplay(s.Log.Reads)
	ranges := s.Log.Ranges
	inWasm := func(pc uint64) bool {
		i := sort.Search(len(ranges), func(i int) bool { return ranges[i][1] > pc })
		return i < len(ranges) && ranges[i][0] <= pc
	}
	th := walker.Thread{PC: s.UserPC, FP: s.UserFP, SP: s.UserSP, ThreadPointer: s.Log.FSBase,
		Main: s.TID == s.PID, Stacks: st}
	goRes := walker.Walk(mem, l, a, th, inWasm)
	kRes := KernelResult(s)

	var reasons []string
	if s.Log.CopyMismatch {
		reasons = append(reasons, "a word the kernel took from its copy of user memory differed from a direct read of it")
	}
	if mem.diverged != "" {
		reasons = append(reasons, mem.diverged)
	} else if mem.next < len(mem.log) {
		r := mem.log[mem.next]
		reasons = append(reasons, fmt.Sprintf("read %d: the kernel read %d bytes at %#x, the Go walker had stopped (%d reads)",
			mem.next, r.Size, r.Addr, mem.next))
	}
	reasons = append(reasons, resultDiffs(kRes, goRes)...)
	if len(reasons) == 0 {
		return nil
	}
	return &Diff{Sample: s, Reasons: reasons, Kernel: kRes, Go: goRes}
}

// KernelResult is the kernel's walk in the Go walker's terms.
func KernelResult(s loader.Sample) walker.Result {
	r := walker.Result{Where: walker.Where(s.Where), Stop: walker.Stop(s.Stop),
		Fibers: s.Fibers, StackEnds: s.StackEnds, OnFiber: s.OnFiber, CTS: s.CTS}
	if len(s.PCs) > 0 {
		r.PCs = slices.Clone(s.PCs)
	}
	for _, a := range s.ActStart {
		r.ActStart = append(r.ActStart, int(a))
	}
	return r
}

func resultDiffs(k, g walker.Result) []string {
	var out []string
	if k.Where != g.Where {
		out = append(out, fmt.Sprintf("where: kernel %s, Go %s", whereName(k.Where), whereName(g.Where)))
	}
	if k.Stop != g.Stop {
		out = append(out, fmt.Sprintf("stop: kernel %q, Go %q", k.Stop.String(), g.Stop.String()))
	}
	if len(k.PCs) != len(g.PCs) {
		out = append(out, fmt.Sprintf("frames: kernel %d, Go %d", len(k.PCs), len(g.PCs)))
	}
	for i := range min(len(k.PCs), len(g.PCs)) {
		if k.PCs[i] != g.PCs[i] {
			out = append(out, fmt.Sprintf("frame %d: kernel %#x, Go %#x", i, k.PCs[i], g.PCs[i]))
			break
		}
	}
	if !slices.Equal(k.ActStart, g.ActStart) {
		out = append(out, fmt.Sprintf("activation starts: kernel %v, Go %v", k.ActStart, g.ActStart))
	}
	if k.CTS != g.CTS {
		out = append(out, fmt.Sprintf("CallThreadState found: kernel %v, Go %v", k.CTS, g.CTS))
	}
	if k.Fibers != g.Fibers || k.StackEnds != g.StackEnds || k.OnFiber != g.OnFiber {
		out = append(out, fmt.Sprintf("fibers: kernel activations %b, stack ends %b, on a fiber: %v; Go %b, %b, %v",
			k.Fibers, k.StackEnds, k.OnFiber, g.Fibers, g.StackEnds, g.OnFiber))
	}
	return out
}

func whereName(w walker.Where) string { return loader.Where(w).String() }

// replay serves the Go walker's reads from the kernel's log, in order. A
// read that departs from the log is answered from any logged read that
// covered the same bytes (or fails, when none did), and the first
// departure is remembered.
type replay struct {
	log      []loader.Read
	next     int
	all      *walker.Snapshot // built on the first departure
	diverged string
}

func newReplay(log []loader.Read) *replay { return &replay{log: log} }

func (r *replay) ReadAt(p []byte, addr uint64) (int, error) {
	i := r.next
	r.next++
	if i < len(r.log) && r.log[i].Addr == addr && int(r.log[i].Size) == len(p) {
		e := r.log[i]
		if e.Errno != 0 {
			return 0, fmt.Errorf("read %d bytes at %#x: errno %d in the kernel: %w", len(p), addr, e.Errno, proc.ErrUnreadable)
		}
		copy(p, e.Bytes())
		return len(p), nil
	}
	if r.all == nil {
		r.all = &walker.Snapshot{}
		for _, e := range r.log {
			if e.Errno == 0 {
				r.all.Set(e.Addr, e.Bytes())
			}
		}
	}
	n, err := r.all.ReadAt(p, addr)
	if r.diverged == "" {
		what := "the kernel had stopped"
		if i < len(r.log) {
			what = fmt.Sprintf("the kernel read %d bytes at %#x", r.log[i].Size, r.log[i].Addr)
		}
		logged := "logged elsewhere"
		if err != nil {
			logged = "never logged by the kernel"
		}
		r.diverged = fmt.Sprintf("read %d: the Go walker read %d bytes at %#x (%s), %s", i, len(p), addr, logged, what)
	}
	return n, err
}

// Write prints the summary line and up to maxDiffs differences, each with
// both stacks; name, when not nil, names a PC.
func (v *Verifier) Write(w io.Writer, maxDiffs int, name func(pc uint64) string) {
	fmt.Fprintf(w, "verified %d samples: %d identical, %d differ", v.Checked, v.Identical, v.Differ)
	if len(v.Unchecked) > 0 {
		keys := make([]string, 0, len(v.Unchecked))
		n := 0
		for k, c := range v.Unchecked {
			keys = append(keys, k)
			n += c
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%d %s", v.Unchecked[k], k)
		}
		fmt.Fprintf(w, "; %d not checked (%s)", n, strings.Join(parts, ", "))
	}
	fmt.Fprintln(w)
	for i, d := range v.Diffs {
		if i == maxDiffs {
			fmt.Fprintf(w, "... and %d more differences\n", v.Differ-maxDiffs)
			break
		}
		s := d.Sample
		fmt.Fprintf(w, "difference %d: tid %d (%s), pc %#x fp %#x sp %#x fs_base %#x, %d reads logged\n",
			i+1, s.TID, s.Comm, s.UserPC, s.UserFP, s.UserSP, s.Log.FSBase, len(s.Log.Reads))
		for _, r := range d.Reasons {
			fmt.Fprintf(w, "  %s\n", r)
		}
		fmt.Fprintf(w, "  kernel: %s\n", FormatResult(d.Kernel, name))
		fmt.Fprintf(w, "  Go:     %s\n", FormatResult(d.Go, name))
	}
}

// FormatResult prints a walk on one line, innermost frame first, with "|"
// between activations.
func FormatResult(r walker.Result, name func(pc uint64) string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, %s:", whereName(r.Where), r.Stop.String())
	act := 0
	for i, pc := range r.PCs {
		for act < len(r.ActStart) && r.ActStart[act] == i {
			if act > 0 {
				b.WriteString(" |")
			}
			act++
		}
		fmt.Fprintf(&b, " %#x", pc)
		if name != nil {
			if n := name(pc); n != "" {
				fmt.Fprintf(&b, " (%s)", n)
			}
		}
	}
	if len(r.PCs) == 0 {
		b.WriteString(" no frames")
	}
	return b.String()
}
