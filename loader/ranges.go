package loader

import (
	"fmt"
	"slices"
)

// The compiled-code ranges of every traced process share the kernel's
// code_ranges array (WT_RANGE_SLOTS entries). Each process's ranges are one
// run of slots. An update writes the new ranges into a fresh run first and
// then points the process's configuration at it, in one map update, so a
// walk always searches a complete, sorted run; the run it replaces is
// reused only after the next update, long after any walk that read the
// old configuration has finished.

// slotRun is a run of code_ranges slots: [off, off+n).
type slotRun struct{ off, n uint32 }

// arena hands out runs of the code_ranges array.
type arena struct {
	size uint32
	free []slotRun // sorted by offset, coalesced
}

func newArena(size uint32) *arena { return &arena{size: size, free: []slotRun{{0, size}}} }

// alloc returns a run of n slots (n > 0), first fit.
func (a *arena) alloc(n uint32) (slotRun, error) {
	for i, f := range a.free {
		if f.n >= n {
			a.free[i] = slotRun{f.off + n, f.n - n}
			if a.free[i].n == 0 {
				a.free = slices.Delete(a.free, i, i+1)
			}
			return slotRun{f.off, n}, nil
		}
	}
	return slotRun{}, fmt.Errorf("%d compiled-code ranges do not fit in what is left of the kernel walker's %d slots", n, a.size)
}

// release returns r to the arena.
func (a *arena) release(r slotRun) {
	if r.n == 0 {
		return
	}
	i, _ := slices.BinarySearchFunc(a.free, r.off, func(f slotRun, off uint32) int { return int(f.off) - int(off) })
	a.free = slices.Insert(a.free, i, r)
	// Coalesce with the neighbours.
	if i+1 < len(a.free) && a.free[i].off+a.free[i].n == a.free[i+1].off {
		a.free[i].n += a.free[i+1].n
		a.free = slices.Delete(a.free, i+1, i+2)
	}
	if i > 0 && a.free[i-1].off+a.free[i-1].n == a.free[i].off {
		a.free[i-1].n += a.free[i].n
		a.free = slices.Delete(a.free, i, i+1)
	}
}

// available is the number of free slots.
func (a *arena) available() uint32 {
	var n uint32
	for _, f := range a.free {
		n += f.n
	}
	return n
}

// processRuns is what one process holds: the run its configuration names,
// and the one it named before, kept until the next update.
type processRuns struct{ cur, retired slotRun }
