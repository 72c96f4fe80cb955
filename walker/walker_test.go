package walker

import (
	"fmt"
	"slices"
	"testing"
)

// Wasm frames of up to three activations, innermost first.
var (
	actA = []uint64{0x500013, 0x500012, 0x500011}
	actB = []uint64{0x500023, 0x500022}
	actC = []uint64{0x500031}
)

const leafPC = 0x500099 // a leaf function sampled before its frame exists

func cat(s ...[]uint64) []uint64 { return slices.Concat(s...) }

// want is a walk's expected result, asserted exactly.
type want struct {
	where Where
	stop  Stop
	pcs   []uint64
	act   []int
}

type walkCase struct {
	name string
	// only restricts the case to some configurations.
	only  func(config) bool
	scene scene
	// mutate changes the built memory or registers before the walk.
	mutate func(b *built)
	want   want
	// wantFor overrides want per configuration.
	wantFor func(config) want
	// fibers, stackEnds and onFiber are the result's (0, 0 and false: no
	// fibers).
	fibers, stackEnds uint32
	onFiber           bool
}

func seedOnly(c config) bool    { return c.seed() }
func entryFPOnly(c config) bool { return !c.seed() }
func amd64Only(c config) bool   { return c.amd64() }

func nFrames(n int) []uint64 {
	pcs := make([]uint64, n)
	for i := range pcs {
		pcs[i] = 0x510000 + uint64(n-i)
	}
	return pcs
}

var walkCases = []walkCase{
	// Complete walks.
	{
		name:  "in Wasm",
		scene: scene{acts: [][]uint64{actA}},
		want:  want{InWasm, StopOK, actA, []int{0}},
	},
	{
		name:  "in host called from Wasm",
		scene: scene{acts: [][]uint64{actA}, host: true},
		want:  want{InHost, StopOK, actA, []int{0}},
	},
	{
		name:  "nested activations, in Wasm",
		scene: scene{acts: [][]uint64{actA, actB}},
		want:  want{InWasm, StopOK, cat(actA, actB), []int{0, 3}},
	},
	{
		name:  "nested activations, in host",
		scene: scene{acts: [][]uint64{actA, actB}, host: true},
		want:  want{InHost, StopOK, cat(actA, actB), []int{0, 3}},
	},
	{
		name:  "other stores' CallThreadStates are skipped",
		scene: scene{acts: [][]uint64{actA, actB, actC}, others: map[int]int{0: 2, 1: 1}},
		want:  want{InWasm, StopOK, cat(actA, actB, actC), []int{0, 3, 5}},
	},
	{
		name:  "other stores' CallThreadStates are skipped, in host",
		scene: scene{acts: [][]uint64{actA, actB}, host: true, others: map[int]int{0: 1, 1: 3}},
		want:  want{InHost, StopOK, cat(actA, actB), []int{0, 3}},
	},
	{
		name:   "no CallThreadState: no Wasm",
		scene:  scene{acts: [][]uint64{actA}, host: true},
		mutate: func(b *built) { b.setSlot(0) },
		want:   want{NoWasm, StopOK, nil, nil},
	},
	{
		name:   "slot holds only the initialised tag",
		only:   entryFPOnly,
		scene:  scene{acts: [][]uint64{actA}, host: true},
		mutate: func(b *built) { b.set(b.slot, 1) },
		want:   want{NoWasm, StopOK, nil, nil},
	},
	{
		name:  "store's exit PC is 0 in host code: the next CTS's saved values are read",
		scene: scene{acts: [][]uint64{actA}, host: true},
		mutate: func(b *built) {
			b.set(ourStore+uint64(b.cfg.l.StoreExitPC), 0)
		},
		want: want{NoWasm, StopOK, nil, nil},
	},
	{
		name:  "only other stores' CallThreadStates after ours",
		scene: scene{acts: [][]uint64{actA}, others: map[int]int{0: 4}},
		want:  want{InWasm, StopOK, actA, []int{0}},
	},

	// Transition windows.
	{
		name:   "compiled code without a CallThreadState",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.setSlot(0) },
		want:   want{InWasm, StopTransition, nil, nil},
	},
	{
		name:  "CTS pushed, entry trampoline not run yet, in compiled code",
		scene: scene{acts: [][]uint64{actA}},
		mutate: func(b *built) {
			b.set(ourStore+uint64(b.cfg.l.StoreEntry), 0) // what CTS 0 saved
		},
		want: want{InWasm, StopTransition, nil, nil},
	},
	{
		name:  "CTS pushed, entry trampoline not run yet, in host: the older activation is walked",
		scene: scene{acts: [][]uint64{actB}, host: true},
		mutate: func(b *built) {
			// A new CTS whose saved values equal the store's: its
			// activation has not begun.
			base := b.writeCTS(ctsBase+0x100000, ourStore, b.cts[0])
			b.writeSaved(base, actB[0], b.exitFP(0), b.entry(0))
			b.setSlot(ctsBase + 0x100000)
		},
		want: want{InHost, StopOK, actB, []int{0}},
	},
	{
		name:  "CTS popped before the store's fields were restored: exit FP above the entry bound",
		scene: scene{acts: [][]uint64{actA, actB}, host: true},
		mutate: func(b *built) {
			b.set(ourStore+uint64(b.cfg.l.StoreEntry), b.entry(0)-0x100)
		},
		want: want{InHost, StopFPBound, nil, []int{0}},
	},

	// Prologue and epilogue fix-ups (x86-64 only: elsewhere the walk
	// trusts FP, so the function FP belongs to is reported after the leaf).
	{
		name:  "at a function's first instruction (push %rbp)",
		scene: scene{acts: [][]uint64{actA}},
		mutate: func(b *built) {
			b.thread.PC = leafPC
			b.mem.Set(leafPC, []byte{0x55, 0x48, 0x89})
			b.set(b.thread.SP, actA[0]) // the return address just pushed
		},
		wantFor: func(c config) want {
			if c.amd64() {
				return want{InWasm, StopOK, cat([]uint64{leafPC}, actA), []int{0}}
			}
			return want{InWasm, StopOK, cat([]uint64{leafPC}, actA[1:]), []int{0}}
		},
	},
	{
		name:  "at a ret",
		scene: scene{acts: [][]uint64{actA}},
		mutate: func(b *built) {
			b.thread.PC = leafPC
			b.mem.Set(leafPC, []byte{0xc3})
			b.set(b.thread.SP, actA[0])
		},
		wantFor: func(c config) want {
			if c.amd64() {
				return want{InWasm, StopOK, cat([]uint64{leafPC}, actA), []int{0}}
			}
			return want{InWasm, StopOK, cat([]uint64{leafPC}, actA[1:]), []int{0}}
		},
	},
	{
		name:  "at a ret $N (the callee pops its stack arguments)",
		scene: scene{acts: [][]uint64{actA}},
		mutate: func(b *built) {
			b.thread.PC = leafPC
			b.mem.Set(leafPC, []byte{0xc2, 0x10, 0x00})
			b.set(b.thread.SP, actA[0])
		},
		wantFor: func(c config) want {
			if c.amd64() {
				return want{InWasm, StopOK, cat([]uint64{leafPC}, actA), []int{0}}
			}
			return want{InWasm, StopOK, cat([]uint64{leafPC}, actA[1:]), []int{0}}
		},
	},
	{
		name:  "after push %rbp, at mov %rsp,%rbp",
		scene: scene{acts: [][]uint64{actA}},
		mutate: func(b *built) {
			b.thread.PC = leafPC
			b.mem.Set(leafPC, []byte{0x48, 0x89, 0xe5})
			b.set(b.thread.SP, b.thread.FP) // the pushed rbp
			b.set(b.thread.SP+8, actA[0])
		},
		wantFor: func(c config) want {
			if c.amd64() {
				return want{InWasm, StopOK, cat([]uint64{leafPC}, actA), []int{0}}
			}
			return want{InWasm, StopOK, cat([]uint64{leafPC}, actA[1:]), []int{0}}
		},
	},
	{
		name:  "at a function's first instruction in a nested activation",
		only:  amd64Only,
		scene: scene{acts: [][]uint64{actA, actB}},
		mutate: func(b *built) {
			b.thread.PC = leafPC
			b.mem.Set(leafPC, []byte{0x55})
			b.set(b.thread.SP, actA[0])
		},
		want: want{InWasm, StopOK, cat([]uint64{leafPC}, actA, actB), []int{0, 4}},
	},
	{
		// The top of the stack is neither a return address into Wasm nor
		// the caller's FP: the sampled function is in its body, whatever
		// the code says (here a push, which the walk must not read).
		name:  "top of the stack not a return address: the code is not read",
		only:  amd64Only,
		scene: scene{acts: [][]uint64{actA}},
		mutate: func(b *built) {
			b.thread.PC = leafPC
			b.mem.Set(leafPC, []byte{0x55})
			b.set(b.thread.SP, 0x1234)
		},
		want: want{InWasm, StopOK, cat([]uint64{leafPC}, actA[1:]), []int{0}},
	},
	{
		name:  "prologue, return address unreadable: FP is trusted",
		only:  amd64Only,
		scene: scene{acts: [][]uint64{actA}},
		mutate: func(b *built) {
			b.thread.PC = leafPC
			b.mem.Set(leafPC, []byte{0x55})
			b.mem.Forget(b.thread.SP, 8)
		},
		want: want{InWasm, StopOK, cat([]uint64{leafPC}, actA[1:]), []int{0}},
	},
	{
		name:  "0x48 that is not mov %rsp,%rbp",
		scene: scene{acts: [][]uint64{actA}},
		mutate: func(b *built) {
			b.mem.Set(actA[0], []byte{0x48, 0x83, 0xec}) // sub $..,%rsp
			b.set(b.thread.SP, 0x4444)
			b.set(b.thread.SP+8, 0x4444)
		},
		want: want{InWasm, StopOK, actA, []int{0}},
	},
	{
		name:  "0x48 at the end of readable code",
		scene: scene{acts: [][]uint64{actA}},
		mutate: func(b *built) {
			b.mem.Set(actA[0], []byte{0x48})
			b.mem.Forget(actA[0]+1, 2)
		},
		want: want{InWasm, StopOK, actA, []int{0}},
	},
	{
		name:   "code unreadable",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.mem.Forget(actA[0], 3) },
		want:   want{InWasm, StopOK, actA, []int{0}},
	},

	// Frame checks.
	{
		name:   "misaligned sampled FP",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.thread.FP += 8 },
		want:   want{InWasm, StopFPAlign, nil, []int{0}},
	},
	{
		name:   "misaligned older FP",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.record(b.fps[0][0], b.fps[0][1]+4, actA[1]) },
		want:   want{InWasm, StopFPAlign, actA[:1], []int{0}},
	},
	{
		name:   "older FP equal to FP",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.record(b.fps[0][1], b.fps[0][1], actA[2]) },
		want:   want{InWasm, StopFPOrder, actA[:2], []int{0}},
	},
	{
		name:   "older FP below FP",
		scene:  scene{acts: [][]uint64{actA}, host: true},
		mutate: func(b *built) { b.record(b.fps[0][0], b.fps[0][0]-0x20, actA[1]) },
		want:   want{InHost, StopFPOrder, actA[:1], []int{0}},
	},
	{
		name:   "FP beyond the entry bound",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.record(b.fps[0][1], b.entryFP[0]+0x10, actA[2]) },
		want:   want{InWasm, StopFPBound, actA[:2], []int{0}},
	},
	{
		name:   "sampled FP beyond the entry bound",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.thread.FP = b.entryFP[0] + 0x40 },
		want:   want{InWasm, StopFPBound, nil, []int{0}},
	},
	{
		name:   "zero return address",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.record(b.fps[0][0], b.fps[0][1], 0) },
		want:   want{InWasm, StopPCZero, actA[:1], []int{0}},
	},
	{
		name:   "region at its bound at once: no frames, then the older activation",
		scene:  scene{acts: [][]uint64{actA, actB}, host: true},
		mutate: func(b *built) { b.record(b.exitTramp[0], b.entryFP[0], actA[0]) },
		wantFor: func(c config) want {
			if c.seed() {
				// The seed's exit FP is the Wasm FP itself, not behind the
				// trampoline record.
				return want{InHost, StopOK, cat(actA, actB), []int{0, 3}}
			}
			return want{InHost, StopOK, actB, []int{0, 0}}
		},
	},

	// Activations.
	{
		name:  "older activation below the newer one",
		scene: scene{acts: [][]uint64{actA, actB}},
		mutate: func(b *built) {
			b.writeSaved(b.saved[0], actB[0], b.exitFP(1), b.entry(0)-0x100)
		},
		want: want{InWasm, StopActOrder, actA, []int{0}},
	},
	{
		name:  "older activation at the newer one's bound",
		scene: scene{acts: [][]uint64{actA, actB, actC}, host: true},
		mutate: func(b *built) {
			b.writeSaved(b.saved[1], actC[0], b.exitFP(2), b.entry(1))
		},
		want: want{InHost, StopActOrder, cat(actA, actB), []int{0, 3}},
	},
	{
		name:  "older activation's exit PC 0 ends the stack",
		scene: scene{acts: [][]uint64{actA, actB, actC}},
		mutate: func(b *built) {
			b.writeSaved(b.saved[1], 0, 0, 0)
		},
		want: want{InWasm, StopOK, cat(actA, actB), []int{0, 3}},
	},

	{
		name:   "CallThreadState chain ends without an exit PC of 0",
		scene:  scene{acts: [][]uint64{actA, actB}},
		mutate: func(b *built) { b.set(b.cts[0]+uint64(b.cfg.l.CTSPrev), 0) },
		want:   want{InWasm, StopOK, cat(actA, actB), []int{0, 3}},
	},

	// Unreadable memory.
	{
		name:   "TLS slot unreadable",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.mem.Forget(b.slot, 8) },
		want:   want{NoWasm, StopRead, nil, nil},
	},
	{
		name:   "CallThreadState unreadable",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.mem.Forget(b.cts[0]+uint64(b.cfg.l.CTSStore), 8) },
		want:   want{NoWasm, StopRead, nil, nil},
	},
	{
		name:   "store unreadable",
		scene:  scene{acts: [][]uint64{actA}, host: true},
		mutate: func(b *built) { b.mem.Forget(ourStore+uint64(b.cfg.l.StoreEntry), 8) },
		want:   want{NoWasm, StopRead, nil, nil},
	},
	{
		name:   "EntryStoreContext pointer unreadable",
		only:   entryFPOnly,
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.mem.Forget(b.cts[0]+uint64(b.cfg.l.CTSOld), 8) },
		want:   want{NoWasm, StopRead, nil, nil},
	},
	{
		name:   "saved entry unreadable",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.mem.Forget(b.saved[0]+uint64(b.cfg.l.SavedEntry), 8) },
		want:   want{NoWasm, StopRead, nil, nil},
	},
	{
		name:   "exit trampoline record unreadable",
		only:   entryFPOnly,
		scene:  scene{acts: [][]uint64{actA}, host: true},
		mutate: func(b *built) { b.mem.Forget(b.exitTramp[0], 8) },
		want:   want{InHost, StopRead, nil, nil},
	},
	{
		name:   "frame record unreadable",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.mem.Forget(b.fps[0][1], 16) },
		want:   want{InWasm, StopRead, actA[:2], []int{0}},
	},
	{
		name:   "return address unreadable",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.mem.Forget(b.fps[0][2]+b.cfg.a.ReturnAddrOffset, 8) },
		want:   want{InWasm, StopRead, actA, []int{0}},
	},
	{
		name:   "exit FP field 0 with an exit PC",
		scene:  scene{acts: [][]uint64{actA}, host: true},
		mutate: func(b *built) { b.set(ourStore+uint64(b.cfg.l.StoreExitFP), 0) },
		want:   want{InHost, StopRead, actA[:1], []int{0}},
	},
	{
		name:   "older CTS's prev unreadable",
		scene:  scene{acts: [][]uint64{actA, actB}},
		mutate: func(b *built) { b.mem.Forget(b.cts[0]+uint64(b.cfg.l.CTSPrev), 8) },
		want:   want{InWasm, StopRead, actA, []int{0}},
	},
	{
		// CTS 0's saved values describe activation 1; the other store's
		// CTS is read after that.
		name:   "other store's CTS unreadable",
		scene:  scene{acts: [][]uint64{actA, actB}, others: map[int]int{0: 1}},
		mutate: func(b *built) { b.mem.Forget(b.cts[0]+0x1000+uint64(b.cfg.l.CTSStore), 8) },
		want:   want{InWasm, StopRead, cat(actA, actB), []int{0, 3}},
	},
	{
		name:   "older activation's saved exit PC unreadable",
		scene:  scene{acts: [][]uint64{actA, actB}},
		mutate: func(b *built) { b.mem.Forget(b.saved[0]+uint64(b.cfg.l.SavedExitPC), 8) },
		want:   want{InWasm, StopRead, actA, []int{0}},
	},
	{
		name:   "older activation's exit trampoline record unreadable",
		only:   entryFPOnly,
		scene:  scene{acts: [][]uint64{actA, actB}},
		mutate: func(b *built) { b.mem.Forget(b.exitTramp[1], 8) },
		want:   want{InWasm, StopRead, actA, []int{0}},
	},

	// Limits.
	{
		name:  "too many frames",
		scene: scene{acts: [][]uint64{nFrames(MaxFrames + 5)}},
		want:  want{InWasm, StopTooDeep, nFrames(MaxFrames + 5)[:MaxFrames], []int{0}},
	},
	{
		name:  "exactly the frame limit",
		scene: scene{acts: [][]uint64{nFrames(MaxFrames)}},
		want:  want{InWasm, StopOK, nFrames(MaxFrames), []int{0}},
	},
	{
		name:  "too many activations",
		scene: scene{acts: manyActs(MaxActivations + 1)},
		want:  want{InWasm, StopTooDeep, cat(manyActs(MaxActivations)...), seq(MaxActivations)},
	},
	{
		name:  "exactly the activation limit",
		scene: scene{acts: manyActs(MaxActivations)},
		want:  want{InWasm, StopOK, cat(manyActs(MaxActivations)...), seq(MaxActivations)},
	},
	{
		name:  "too many CallThreadStates for the loop",
		scene: scene{acts: [][]uint64{actA, actB}, others: map[int]int{0: MaxSteps}},
		want:  want{InWasm, StopTooDeep, cat(actA, actB), []int{0, 3}},
	},

	// The seed generation's entry SP.
	{
		name:  "seed: an entry SP of -1 marks an empty region",
		only:  seedOnly,
		scene: scene{acts: [][]uint64{actA, actB}},
		mutate: func(b *built) {
			// A's CTS saved an empty region; a CTS of our store between
			// A's and B's saved B's values.
			base := b.writeCTS(ctsBase+0x100000, ourStore, b.cts[1])
			b.writeSaved(base, actB[0], b.exitFP(1), b.entry(1))
			b.set(b.cts[0]+uint64(b.cfg.l.CTSPrev), ctsBase+0x100000)
			b.writeSaved(b.saved[0], 0x500077, 0x1230, ^uint64(0))
		},
		want: want{InWasm, StopOK, cat(actA, actB), []int{0, 3}},
	},
	{
		name:  "seed: store's entry SP of -1 while in Wasm keeps only the leaf",
		only:  seedOnly,
		scene: scene{acts: [][]uint64{actA}},
		mutate: func(b *built) {
			b.thread.PC = leafPC
			b.mem.Set(leafPC, []byte{0x55})
			b.set(b.thread.SP, actA[0])
			b.set(ourStore+uint64(b.cfg.l.StoreEntry), ^uint64(0))
		},
		wantFor: func(c config) want {
			if c.amd64() {
				// Reachable only in memory no Wasmtime writes: the leaf
				// is kept without an activation.
				return want{InWasm, StopOK, []uint64{leafPC}, nil}
			}
			return want{InWasm, StopOK, nil, nil}
		},
	},
	{
		name:   "seed: misaligned entry SP",
		only:   seedOnly,
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.set(ourStore+uint64(b.cfg.l.StoreEntry), b.entry(0)+8) },
		want:   want{InWasm, StopEntryAlign, nil, nil},
	},
	{
		name:  "seed: older activation's entry SP misaligned",
		only:  seedOnly,
		scene: scene{acts: [][]uint64{actA, actB}, host: true},
		mutate: func(b *built) {
			b.writeSaved(b.saved[0], actB[0], b.exitFP(1), b.entry(1)+8)
		},
		want: want{InHost, StopEntryAlign, actA, []int{0}},
	},
	{
		name:   "newer generation: no alignment rule on the entry FP field",
		only:   entryFPOnly,
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.set(ourStore+uint64(b.cfg.l.StoreEntry), b.entry(0)+8) },
		// The walk goes on into the entry trampoline's frame.
		want: want{InWasm, StopFPBound, cat(actA, []uint64{0x400010}), []int{0}},
	},

	// Fibers (async Wasmtime).
	{
		name:   "on a fiber, in Wasm",
		scene:  scene{acts: [][]uint64{actA}, fibers: 1},
		want:   want{InWasm, StopOK, actA, []int{0}},
		fibers: 1, onFiber: true,
	},
	{
		name:   "on a fiber, in host code",
		scene:  scene{acts: [][]uint64{actA}, fibers: 1, host: true},
		want:   want{InHost, StopOK, actA, []int{0}},
		fibers: 1, onFiber: true,
	},
	{
		name:   "on a fiber resumed by host code that Wasm on the thread's own stack called",
		scene:  scene{acts: [][]uint64{actA, actB, actC}, fibers: 2, others: map[int]int{1: 1}},
		want:   want{InWasm, StopOK, cat(actA, actB, actC), []int{0, 3, 5}},
		fibers: 0b11, stackEnds: 0b10, onFiber: true,
	},
	{
		name:   "a fiber resumed from another fiber, below it",
		only:   entryFPOnly,
		scene:  scene{acts: [][]uint64{actA, actB}, fibers: 2, nested: true, host: true},
		want:   want{InHost, StopOK, cat(actA, actB), []int{0, 3}},
		fibers: 0b11, stackEnds: 0b01, onFiber: true,
	},
	{
		name:   "a fiber resumed from another fiber, above it",
		only:   entryFPOnly,
		scene:  scene{acts: [][]uint64{actA, actB, actC}, fibers: 3, nested: true, above: true},
		want:   want{InWasm, StopOK, cat(actA, actB, actC), []int{0, 3, 5}},
		fibers: 0b111, stackEnds: 0b011, onFiber: true,
	},
	{
		name:  "a fiber above another, when the saved stack limit is not known",
		scene: scene{acts: [][]uint64{actA, actB}, fibers: 2, nested: true, above: true},
		mutate: func(b *built) {
			l := *b.cfg.l
			l.LimitKnown = false
			b.cfg.l = &l
		},
		want:   want{InWasm, StopActOrder, actA, []int{0}},
		fibers: 0b1, onFiber: true,
	},
	{
		name:  "a fiber stack unmapped mid-walk",
		scene: scene{acts: [][]uint64{actA, actB}, fibers: 1, host: true},
		mutate: func(b *built) {
			b.mem.Forget(b.fps[0][1], 0x100) // its frames, from the second on
		},
		want:   want{InHost, StopRead, actA[:2], []int{0}},
		fibers: 1, onFiber: true,
	},
	{
		name:  "a fiber stack reused mid-walk: its frames point elsewhere",
		scene: scene{acts: [][]uint64{actA, actB}, fibers: 1},
		mutate: func(b *built) {
			b.record(b.fps[0][1], b.fps[0][1]-0x40, 0x500777) // a new owner's frame record
		},
		want:   want{InWasm, StopFPOrder, actA[:2], []int{0}},
		fibers: 1, onFiber: true,
	},
	{
		name:   "a saved stack limit unreadable",
		only:   entryFPOnly,
		scene:  scene{acts: [][]uint64{actA, actB}},
		mutate: func(b *built) { b.mem.Forget(b.saved[0]+uint64(b.cfg.l.SavedLimitValue), 8) },
		want:   want{InWasm, StopRead, actA, []int{0}},
	},
	{
		name:    "on a fiber with no activation yet: the thread's own ones",
		scene:   scene{acts: [][]uint64{actA}, host: true},
		mutate:  func(b *built) { b.thread.SP, b.thread.FP = fiberTop-0x1000, fiberTop-0xf00 },
		want:    want{InHost, StopOK, actA, []int{0}},
		onFiber: true,
	},
	{
		name:  "switching: on the thread's own stack, the chain on a fiber",
		scene: scene{acts: [][]uint64{actA}, fibers: 1, host: true},
		mutate: func(b *built) {
			b.thread.SP, b.thread.FP = stackTop-0x1000, stackTop-0xf00
		},
		want: want{InHost, StopFiberSwitch, nil, nil},
	},
	{
		name:  "switching: Wasm on a fiber, the chain on the thread's own stack",
		scene: scene{acts: [][]uint64{actA, actB}, fibers: 1},
		mutate: func(b *built) {
			b.setSlot(b.cts[1])
		},
		want:    want{InWasm, StopFiberSwitch, nil, nil},
		onFiber: true,
	},
	{
		name:  "switching: the store's state is a fiber's, the chain the thread's",
		scene: scene{acts: [][]uint64{actA}, host: true},
		mutate: func(b *built) {
			b.set(ourStore+uint64(b.cfg.l.StoreEntry), b.entry(0)-stackTop+fiberTop)
		},
		want: want{InHost, StopFiberSwitch, nil, nil},
	},
	{
		name:  "an older activation on a fiber after one on the thread's own stack",
		scene: scene{acts: [][]uint64{actA, actB}},
		mutate: func(b *built) {
			b.writeSaved(b.saved[0], actB[0], b.exitFP(1), b.entry(1)-stackTop+fiberTop)
		},
		want: want{InWasm, StopFiberSwitch, actA, []int{0}},
	},
	{
		name:   "the thread's stack block is empty",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.set(tp+tcbBlock+8, 0) },
		want:   want{InWasm, StopNoStack, nil, nil},
	},
	{
		name:   "the process's TCB layout is unknown",
		scene:  scene{acts: [][]uint64{actA}, host: true},
		mutate: func(b *built) { b.thread.Stacks.TCBBlock = 0 },
		want:   want{InHost, StopNoStack, nil, nil},
	},
	{
		name:  "the main thread's stack is the process's",
		scene: scene{acts: [][]uint64{actA, actB}, host: true},
		mutate: func(b *built) {
			b.set(tp+tcbBlock+8, 0) // not read
			b.thread.Main = true
			b.thread.Stacks.MainLo, b.thread.Stacks.MainHi = ownLo, ownHi
		},
		want: want{InHost, StopOK, cat(actA, actB), []int{0, 3}},
	},

	{
		name:   "thread pointer unknown",
		scene:  scene{acts: [][]uint64{actA}},
		mutate: func(b *built) { b.thread.ThreadPointer = 0 },
		want:   want{NoWasm, StopNoFSBase, nil, nil},
	},
}

// manyActs returns n one-frame activations.
func manyActs(n int) [][]uint64 {
	acts := make([][]uint64, n)
	for i := range acts {
		acts[i] = []uint64{0x520000 + uint64(i)}
	}
	return acts
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func TestWalk(t *testing.T) {
	for _, cfg := range configs {
		t.Run(cfg.name, func(t *testing.T) {
			for _, tc := range walkCases {
				if tc.only != nil && !tc.only(cfg) {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					b := build(cfg, tc.scene)
					if tc.mutate != nil {
						tc.mutate(b)
					}
					w := tc.want
					if tc.wantFor != nil {
						w = tc.wantFor(cfg)
					}
					mem := &countingMemory{mem: b.mem}
					got := Walk(mem, b.cfg.l, cfg.a, b.thread, inWasm)
					checkResult(t, got, w)
					if got.Fibers != tc.fibers || got.StackEnds != tc.stackEnds || got.OnFiber != tc.onFiber {
						t.Errorf("fibers %b, stack ends %b, on a fiber %v; want %b, %b, %v",
							got.Fibers, got.StackEnds, got.OnFiber, tc.fibers, tc.stackEnds, tc.onFiber)
					}
					if mem.reads > MaxReads || mem.bytes > 8*mem.reads {
						t.Errorf("%d reads of %d bytes, MaxReads is %d", mem.reads, mem.bytes, MaxReads)
					}
				})
			}
		})
	}
}

func checkResult(t *testing.T, got Result, w want) {
	t.Helper()
	if got.Where != w.where || got.Stop != w.stop {
		t.Errorf("where %d stop %q, want where %d stop %q", got.Where, got.Stop, w.where, w.stop)
	}
	if !slices.Equal(got.PCs, w.pcs) {
		t.Errorf("PCs\n got %s\nwant %s", hexs(got.PCs), hexs(w.pcs))
	}
	if !slices.Equal(got.ActStart, w.act) {
		t.Errorf("activation starts %v, want %v", got.ActStart, w.act)
	}
}

func hexs(pcs []uint64) string {
	s := "["
	for i, pc := range pcs {
		if i > 0 {
			s += " "
		}
		if i == 12 && len(pcs) > 16 {
			s += fmt.Sprintf("... (%d in all)", len(pcs))
			break
		}
		s += fmt.Sprintf("%#x", pc)
	}
	return s + "]"
}

// Every stop code is produced by some case in every configuration where
// the code can occur.
func TestWalkCoversEveryStop(t *testing.T) {
	for _, cfg := range configs {
		seen := map[Stop]bool{}
		for _, tc := range walkCases {
			if tc.only != nil && !tc.only(cfg) {
				continue
			}
			w := tc.want
			if tc.wantFor != nil {
				w = tc.wantFor(cfg)
			}
			seen[w.stop] = true
		}
		for s := Stop(0); s < stopCount; s++ {
			if s == StopEntryAlign && !cfg.seed() {
				continue // the newer generation has no entry SP check
			}
			if !seen[s] {
				t.Errorf("%s: no case ends with %q", cfg.name, s)
			}
		}
	}
}

func TestStopStrings(t *testing.T) {
	seen := map[string]bool{}
	for s := Stop(0); s < stopCount; s++ {
		str := s.String()
		if str == "" || seen[str] || str == Stop(200).String() {
			t.Errorf("stop %d: name %q missing or not unique", s, str)
		}
		seen[str] = true
		if s.Error() == "" {
			t.Errorf("stop %d: empty error", s)
		}
	}
}
