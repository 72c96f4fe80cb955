package walker

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/wasmtrace/wasmtrace/layout"
	"github.com/wasmtrace/wasmtrace/proc"
)

// window is memory whose only readable bytes are data, at base.
type window struct {
	base uint64
	data []byte
}

func (w window) ReadAt(p []byte, addr uint64) (int, error) {
	if addr < w.base || addr-w.base > uint64(len(w.data)) || uint64(len(w.data))-(addr-w.base) < uint64(len(p)) {
		return 0, proc.ErrUnreadable
	}
	return copy(p, w.data[addr-w.base:]), nil
}

// cyclic is memory readable everywhere (but across the top of the address
// space): address a holds data[a % len].
// Every pointer leads somewhere, so walks go deep.
type cyclic []byte

func (c cyclic) ReadAt(p []byte, addr uint64) (int, error) {
	if len(c) == 0 || addr+uint64(len(p)) < addr {
		return 0, proc.ErrUnreadable // nothing, or past the top of the address space
	}
	for i := range p {
		p[i] = c[(addr+uint64(i))%uint64(len(c))]
	}
	return len(p), nil
}

// access is one read a walk made, and what it got.
type access struct {
	addr uint64
	data []byte // nil: the read failed
}

// recorder logs every read, like the kernel walker's verification log.
type recorder struct {
	mem proc.Memory
	log []access
}

func (r *recorder) ReadAt(p []byte, addr uint64) (int, error) {
	n, err := r.mem.ReadAt(p, addr)
	a := access{addr: addr}
	if err == nil {
		a.data = slices.Clone(p)
	}
	if len(p) > 8 {
		panic("walker read more than 8 bytes at once")
	}
	r.log = append(r.log, a)
	return n, err
}

// checkWalk walks and checks what must hold whatever the memory: bounded
// reads and results, and that replaying the logged reads (as --verify does
// with the kernel's log) gives the same walk from the same reads.
func checkWalk(t *testing.T, mem proc.Memory, l *layout.Layout, cfg config, th Thread, inWasm func(uint64) bool) Result {
	t.Helper()
	rec := &recorder{mem: mem}
	res := Walk(rec, l, cfg.a, th, inWasm)
	if len(rec.log) > MaxReads {
		t.Fatalf("%d reads, more than MaxReads (%d)", len(rec.log), MaxReads)
	}
	if len(res.PCs) > MaxFrames || len(res.ActStart) > MaxActivations {
		t.Fatalf("%d frames, %d activations: beyond the limits", len(res.PCs), len(res.ActStart))
	}
	if res.Stop >= stopCount || res.Where > InHost {
		t.Fatalf("stop %d, where %d out of range", res.Stop, res.Where)
	}
	for i, s := range res.ActStart {
		if s > len(res.PCs) || (i > 0 && s < res.ActStart[i-1]) {
			t.Fatalf("activation starts %v with %d frames", res.ActStart, len(res.PCs))
		}
	}
	if all := uint64(1)<<len(res.ActStart) - 1; uint64(res.Fibers)&^all != 0 || uint64(res.StackEnds)&^all != 0 {
		t.Fatalf("fibers %b, stack ends %b for %d activations", res.Fibers, res.StackEnds, len(res.ActStart))
	}
	if res.Where == NoWasm && len(res.PCs) > 0 {
		t.Fatalf("frames without Wasm: %v", res)
	}

	var snap Snapshot
	for _, a := range rec.log {
		if a.data != nil {
			snap.Set(a.addr, a.data)
		}
	}
	rec2 := &recorder{mem: &snap}
	res2 := Walk(rec2, l, cfg.a, th, inWasm)
	if !equalResults(res, res2) {
		t.Fatalf("replay differs:\n%+v\n%+v", res, res2)
	}
	if len(rec2.log) != len(rec.log) {
		t.Fatalf("replay made %d reads, the walk %d", len(rec2.log), len(rec.log))
	}
	for i := range rec.log {
		if rec.log[i].addr != rec2.log[i].addr || !slices.Equal(rec.log[i].data, rec2.log[i].data) {
			t.Fatalf("read %d: %#x %x, replay %#x %x", i, rec.log[i].addr, rec.log[i].data, rec2.log[i].addr, rec2.log[i].data)
		}
	}
	return res
}

func equalResults(a, b Result) bool {
	return a.Where == b.Where && a.Stop == b.Stop && slices.Equal(a.PCs, b.PCs) && slices.Equal(a.ActStart, b.ActStart) &&
		a.Fibers == b.Fibers && a.StackEnds == b.StackEnds && a.OnFiber == b.OnFiber && a.CTS == b.CTS
}

// FuzzWalk walks memory that is entirely fuzz data (in a window, or
// repeated over the whole address space), with fuzzed registers and
// layout offsets.
func FuzzWalk(f *testing.F) {
	const base = 0x10000
	for _, seed := range [][]byte{
		nil,
		make([]byte, 64),
		// A slot pointing at a CTS inside the window.
		binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, base+0x10), base),
	} {
		f.Add(seed, uint64(base+8), uint64(base+0x20), uint64(base+0x10), uint64(base+0x80), uint64(0x0102030405), uint8(0))
		f.Add(seed, uint64(base+8), uint64(base+0x20), uint64(base+0x10), uint64(base+0x80), uint64(0x0102030405), uint8(0x21))
	}
	f.Fuzz(func(t *testing.T, data []byte, pc, fp, sp, tp, offs uint64, sel uint8) {
		cfg := configs[sel%4]
		l := *cfg.l
		// Layout variations: every offset a multiple of 8 below 0x100.
		o := func(i int) uint32 { return uint32(offs>>(5*i)&0x1f) * 8 }
		l.CTSStore, l.CTSPrev, l.CTSOld = o(0), o(1), o(2)
		l.SavedExitPC, l.SavedExitFP, l.SavedEntry = o(3), o(4), o(5)
		l.StoreExitPC, l.StoreExitFP, l.StoreEntry = o(6), o(7), o(8)
		l.TLSOffset = -int64(o(9)) - 8
		if sel&0x10 != 0 {
			l.TLSMask = ^uint64(0)
		}
		var mem proc.Memory = window{base: base, data: data}
		if sel&0x20 != 0 {
			mem = cyclic(data)
		}
		half := uint64(len(data) / 2)
		inWasm := func(pc uint64) bool { return pc >= base && pc-base < half }
		// The thread's stack block: read from the fuzz data after the
		// TCB, or the main thread's fixed range.
		th := Thread{PC: pc, FP: fp, SP: sp, ThreadPointer: tp, Stacks: proc.Stacks{TCBBlock: uint64(o(10)) + 8}}
		if sel&0x40 != 0 {
			th.Main, th.Stacks.MainLo, th.Stacks.MainHi = true, base, base+uint64(len(data))
		}
		checkWalk(t, mem, &l, cfg, th, inWasm)
	})
}

// FuzzWalkScene mutates valid synthetic stacks, so that the fuzzer starts
// deep inside the walk.
func FuzzWalkScene(f *testing.F) {
	f.Add(uint8(0), []byte{})
	f.Add(uint8(5), []byte{0, 3, 8, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint8(2), []byte{1, 7, 0, 0, 0, 0, 0, 0, 0, 0, 3, 4, 16, 0, 0, 0, 0, 0, 0, 0})
	scenes := []scene{
		{acts: [][]uint64{actA}},
		{acts: [][]uint64{actA}, host: true},
		{acts: [][]uint64{actA, actB}},
		{acts: [][]uint64{actA, actB, actC}, host: true, others: map[int]int{0: 1, 1: 2}},
		{acts: [][]uint64{nFrames(40), actB}},
		{acts: manyActs(6), others: map[int]int{2: 1}},
		{acts: [][]uint64{actA, actB, actC}, fibers: 2, others: map[int]int{1: 1}},
		{acts: [][]uint64{actA, actB}, fibers: 2, nested: true, host: true},
		{acts: [][]uint64{actA, actB, actC}, fibers: 3, nested: true, above: true},
	}
	f.Fuzz(func(t *testing.T, sel uint8, muts []byte) {
		cfg := configs[sel%4]
		sc := scenes[int(sel/4)%len(scenes)]
		b := build(cfg, sc)
		// Interesting addresses to aim mutations at.
		targets := []uint64{b.slot, ourStore, b.thread.SP, b.thread.PC, tp + tcbBlock}
		targets = append(targets, b.cts...)
		targets = append(targets, b.saved...)
		targets = append(targets, b.entryFP...)
		targets = append(targets, b.exitTramp...)
		for _, fps := range b.fps {
			targets = append(targets, fps...)
		}
		// Each mutation is 10 bytes: op, target, then an 8-byte value.
		for len(muts) >= 10 {
			op, tgt, v := muts[0], targets[int(muts[1])%len(targets)], binary.LittleEndian.Uint64(muts[2:10])
			muts = muts[10:]
			at := tgt + uint64(op>>3)*8 // a field near the target
			switch op & 7 {
			case 0: // a word
				b.set(at, v)
			case 1: // unreadable
				b.mem.Forget(at, 8)
			case 2: // a pointer to another target, a little off
				b.set(at, targets[v%uint64(len(targets))]+uint64(int8(v>>8)))
			case 3: // nudge a register
				switch v % 4 {
				case 0:
					b.thread.PC += v >> 8 & 0xff
				case 1:
					b.thread.FP += v >> 8 & 0xff
				case 2:
					b.thread.SP += v >> 8 & 0xff
				case 3:
					b.thread.ThreadPointer ^= v >> 8
				}
			case 4: // code bytes at the PC
				b.mem.Set(b.thread.PC, []byte{byte(v), byte(v >> 8), byte(v >> 16)})
			default: // a small change to a word
				w, _ := proc.Word(b.mem, at)
				b.set(at, w+uint64(int8(v)))
			}
		}
		checkWalk(t, b.mem, cfg.l, cfg, b.thread, inWasm)
	})
}
