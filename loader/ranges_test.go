package loader

import (
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/wasmtrace/wasmtrace/arch"
)

func TestArena(t *testing.T) {
	a := newArena(100)
	r1, err := a.alloc(30)
	if err != nil || r1 != (slotRun{0, 30}) {
		t.Fatalf("alloc 30: %v %v", r1, err)
	}
	r2, _ := a.alloc(30)
	r3, _ := a.alloc(40)
	if _, err := a.alloc(1); err == nil {
		t.Fatal("allocated past the end")
	}
	a.release(r2)
	if r, err := a.alloc(31); err == nil {
		t.Fatalf("allocated %v from a 30-slot hole", r)
	}
	a.release(r1)
	a.release(r3)
	if a.available() != 100 || len(a.free) != 1 {
		t.Fatalf("after releasing all: %v", a.free)
	}
}

// Random allocations and releases never hand out overlapping runs, and
// releasing everything gives the whole arena back.
func TestArenaRandom(t *testing.T) {
	const size = 1000
	a := newArena(size)
	rng := rand.New(rand.NewPCG(1, 2))
	owner := make([]int, size)
	var held []slotRun
	for step := 1; step < 5000; step++ {
		if len(held) > 0 && rng.IntN(2) == 0 {
			i := rng.IntN(len(held))
			for s := held[i].off; s < held[i].off+held[i].n; s++ {
				owner[s] = 0
			}
			a.release(held[i])
			held = append(held[:i], held[i+1:]...)
			continue
		}
		r, err := a.alloc(uint32(1 + rng.IntN(50)))
		if err != nil {
			continue
		}
		for s := r.off; s < r.off+r.n; s++ {
			if owner[s] != 0 {
				t.Fatalf("step %d: slot %d handed out twice", step, s)
			}
			owner[s] = step
		}
		held = append(held, r)
	}
	for _, r := range held {
		a.release(r)
	}
	if a.available() != size || len(a.free) != 1 {
		t.Fatalf("after releasing all: %v", a.free)
	}
}

// A process with 100,000 modules: its ranges go into the kernel's array
// in one run, a second update writes a new run beside it, and removing
// the process gives every slot back.
func TestManyRanges(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("loading BPF needs root, and CI=true forbids skipping")
		}
		t.Skip("loading BPF needs root")
	}
	tr, err := load(progSample)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ranges := func(n int, base uint64) [][2]uint64 {
		r := make([][2]uint64, n)
		for i := range r {
			r[i] = [2]uint64{base + uint64(i)*0x3000, base + uint64(i)*0x3000 + 0x1000}
		}
		return r
	}
	const pid = 1 << 30 // no such process: nothing samples it
	cfg := ProcessConfig{Layout: layout39(), Arch: arch.AMD64, Ranges: ranges(100000, 0x7f0000000000)}
	if err := tr.SetProcess(pid, cfg); err != nil {
		t.Fatal(err)
	}
	first := tr.runs[pid].cur
	cfg.Ranges = ranges(50000, 0x7e0000000000)
	if err := tr.SetProcess(pid, cfg); err != nil {
		t.Fatal(err)
	}
	pr := tr.runs[pid]
	if pr.retired != first || pr.cur.n != 50000 || (pr.cur.off < first.off+first.n && first.off < pr.cur.off+pr.cur.n) {
		t.Fatalf("runs %+v after %+v: the new run must not overlap the one walks may still read", pr, first)
	}
	var v wasmtraceWtProcess
	if err := tr.objs.Processes.Lookup(uint32(pid), &v); err != nil {
		t.Fatal(err)
	}
	if v.RangesOff != pr.cur.off || v.Nranges != 50000 {
		t.Fatalf("configuration names run %d+%d, want %+v", v.RangesOff, v.Nranges, pr.cur)
	}
	for _, i := range []uint32{0, 1, 24999, 49999} {
		var r wasmtraceWtRange
		if err := tr.objs.CodeRanges.Lookup(v.RangesOff+i, &r); err != nil {
			t.Fatal(err)
		}
		if want := cfg.Ranges[i]; r.Start != want[0] || r.End != want[1] {
			t.Errorf("slot %d: %#x-%#x, want %#x-%#x", i, r.Start, r.End, want[0], want[1])
		}
	}
	if err := tr.SetProcess(pid, ProcessConfig{Layout: layout39(), Arch: arch.AMD64, Ranges: ranges(MaxRanges+1, 0x10000)}); err == nil {
		t.Error("more ranges than one process may have were accepted")
	}
	if err := tr.RemoveProcess(pid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	tr.mu.Lock()
	free := tr.slots.available()
	tr.mu.Unlock()
	if free != uint32(wasmtraceWtLimitWT_LIMIT_RANGE_SLOTS) {
		t.Errorf("%d of %d slots free after the process was removed", free, wasmtraceWtLimitWT_LIMIT_RANGE_SLOTS)
	}
}
