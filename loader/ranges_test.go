package loader

import (
	"math/rand/v2"
	"testing"
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
