// Package walker is the userspace reference implementation of wasmtrace's
// stack walk: the same algorithm as the kernel walker in bpf/wasmtrace.c,
// step for step, over any Memory (a live process or a snapshot). It is used
// to cross-check what the kernel sends, and to take stacks from userspace.
//
// The stack of a thread that entered Wasm twice (host -> Wasm -> host -> Wasm):
//
//	     higher addresses (older)
//	| host frames (main, ...)        |
//	| entry trampoline frame         | <- bound of activation 1 (entry FP,
//	|--------------------------------|    or entry SP - gap in the seed)
//	| Wasm frames of activation 1    |
//	| exit trampoline frame          | <- saved exit (trampoline) FP, exit PC
//	| host frames (a host function)  |
//	| entry trampoline frame         | <- bound of activation 0
//	|--------------------------------|
//	| Wasm frames of activation 0    | <- sampled PC/FP if in Wasm, else
//	| exit trampoline frame          |    the store's exit FP/PC
//	| host frames                    | <- sampled PC if in host code
//	     lower addresses (newer), stack grows down
//
// Async Wasmtime runs each call on a fiber, a stack of its own. While a
// fiber runs, the thread-local chain holds its CallThreadStates first, and
// the oldest links to what the chain held when the fiber was resumed (the
// thread's own activations, if any); a suspended fiber's are unlinked, so
// no walk reaches them:
//
//	    thread's own stack                 fiber stack
//	| main, executor ...        |      | fiber start                |
//	| (own activations, if any) |      | entry trampoline frame     | <- bound, fiber
//	| resume: switch stacks  ---+----> | Wasm frames, host frames   |
//	                                   | CTS (innermost, in TLS)    |
//
// Wasmtime links a fiber's CallThreadStates in (after swapping its saved
// state into the store) and unlinks them again while running on the
// resumer's stack: a thread on its own stack whose chain names a CTS
// elsewhere is switching fibers.
//
// The algorithm (numbered as in the C):
//  1. Find the thread's innermost CallThreadState (CTS) through the
//     thread-local slot at thread pointer + TLSOffset. None: no Wasm.
//     Then the bounds of the thread's own stack (proc.Stacks). Sampled on
//     its own stack with the CTS elsewhere, or in Wasm on another stack
//     with the CTS on its own: a fiber switch in progress.
//  2. Read its store's current exit PC/FP and entry bound. If they still
//     equal what this CTS saved on entry, its trampoline has not run yet (or
//     has been undone): the CTS contributes no region.
//  3. First region: if the sampled PC is in compiled Wasm code, start from
//     the sampled registers (fixing up the first frame in a prologue or at a
//     ret), bounded by the store's entry bound; otherwise start from the
//     store's exit PC/FP.
//  4. Walk a region: while fp != bound, check fp < bound, fp aligned and
//     pc != 0; emit pc; pc = [fp+ra], fp' = [fp]; check fp' > fp.
//  5. Next region: follow CTS.prev, skipping other stores' CTSs; each one's
//     saved values are the exit PC/FP and bound of the next older
//     activation. Exit PC 0 ends the stack. Each older bound lies above the
//     newer one on the same stack. Activations on fibers come before those
//     on the thread's own stack: the walk may leave the fibers for the
//     thread's stack once, never come back; the innermost activation lies
//     on a fiber whenever the sampled SP does not lie on the thread's
//     stack. A CTS whose saved stack limit is Some(usize::MAX) belongs to
//     the oldest activation of its store on its stack (async stores set a
//     fresh limit at every entry, and a fiber starts with none): the next
//     older activation is on another stack. The order check starts over on
//     each new stack.
package walker

import (
	"github.com/wasmtrace/wasmtrace/arch"
	"github.com/wasmtrace/wasmtrace/layout"
	"github.com/wasmtrace/wasmtrace/proc"
)

// Limits, equal to the kernel walker's (bpf/wasmtrace.h); a test checks.
const (
	MaxFrames      = 256
	MaxActivations = 32
	MaxCTS         = 64
	// MaxSteps bounds the walk's loop (steps 4 and 5): one frame, one
	// region end or one CallThreadState per step.
	MaxSteps = MaxFrames + MaxCTS + MaxActivations
	// MaxReads bounds the memory reads of one walk, none longer than 8
	// bytes: at most 13 before the loop (the TLS slot, the thread's stack
	// block and its size, four store and CTS words, the saved base, the
	// top of the stack, the prologue check's two code reads and the return
	// address after a push) and at most 9 per
	// step (a CallThreadState of the sampled store in the newer
	// generation).
	MaxReads = 13 + 9*MaxSteps
)

// Where a thread was when its stack was taken.
type Where uint8

const (
	NoWasm Where = 0 // no Wasm activation of the sampled store on the stack
	InWasm Where = 1 // the PC is in compiled Wasm code
	InHost Where = 2 // host code called from Wasm
)

// Stop says why a walk ended; StopOK is the only complete walk. The values
// are those of enum wt_stop in bpf/wasmtrace.h.
type Stop uint8

const (
	StopOK          Stop = 0
	StopRead        Stop = 1
	StopFPAlign     Stop = 2
	StopFPOrder     Stop = 3
	StopFPBound     Stop = 4
	StopPCZero      Stop = 5
	StopActOrder    Stop = 6
	StopTransition  Stop = 7
	StopTooDeep     Stop = 8
	StopEntryAlign  Stop = 9
	StopNoFSBase    Stop = 10
	StopFiberSwitch Stop = 11
	StopNoStack     Stop = 12
	stopCount            = 13
)

var stopNames = [stopCount]string{
	"ok", "unreadable memory", "misaligned frame pointer", "frame pointer not increasing",
	"frame pointer beyond the entry bound", "zero return address", "activations out of order",
	"sampled while entering or leaving Wasm", "stack deeper than the walker's limit",
	"misaligned entry stack pointer", "thread pointer unknown",
	"sampled while switching fibers", "thread's stack unknown",
}

func (s Stop) String() string {
	if int(s) < len(stopNames) {
		return stopNames[s]
	}
	return "unknown stop reason"
}

// Error makes a failed Stop usable as an error.
func (s Stop) Error() string { return "stack walk stopped: " + s.String() }

// Thread is the state a walk starts from.
type Thread struct {
	PC, FP, SP    uint64 // user registers
	ThreadPointer uint64 // fs_base on x86-64
	// Main is the process's main thread, whose own stack is in Stacks;
	// any other thread's is read from its TCB.
	Main   bool
	Stacks proc.Stacks
}

// Result is one walk.
type Result struct {
	Where Where
	Stop  Stop
	// PCs are the Wasm frames, innermost first; PCs[0] is the sampled PC
	// when Where is InWasm, every other one a return address.
	PCs []uint64
	// ActStart[i] is the index in PCs of activation i's innermost frame.
	ActStart []int
	// Fibers has bit i set when activation i runs on a fiber stack, not
	// on the thread's own stack; StackEnds when activation i is the
	// oldest of its store on its stack (the next older one is on another
	// stack). OnFiber: the sampled SP is not on the thread's own stack.
	Fibers    uint32
	StackEnds uint32
	OnFiber   bool
	// CTS: the thread-local slot held a CallThreadState (Wasmtime had
	// entered Wasm on the thread).
	CTS bool
}

// OnFiberAct reports whether activation i ran on a fiber stack.
func (r Result) OnFiberAct(i int) bool { return i < 32 && r.Fibers&(1<<i) != 0 }

// FiberRoot reports whether activation i is the oldest on a fiber stack:
// root side of it, the stack moved onto that fiber.
func (r Result) FiberRoot(i int) bool {
	return r.OnFiberAct(i) && (i == len(r.ActStart)-1 || r.StackEnds&(1<<i) != 0)
}

type walk struct {
	mem   proc.Memory
	l     *layout.Layout
	a     arch.Arch
	res   *Result
	pc    uint64
	fp    uint64
	bound uint64
	// prevBound is the newer activation's bound (0 before the first).
	prevBound uint64
	cts       uint64
	store     uint64
	// The thread's own stack, whether the sampled SP is on it, and
	// whether the current region is on a fiber.
	ownLo, ownHi uint64
	spOwn        bool
	onFiber      bool
	newStack     bool // the region about to start is on another stack
	inRegion     bool
	stop         Stop
	done         bool
}

// Walk takes the Wasm stack of one thread. inWasm says whether a PC is in
// compiled Wasm code. It never panics and reads a bounded amount of memory,
// whatever mem holds.
func Walk(mem proc.Memory, l *layout.Layout, a arch.Arch, t Thread, inWasm func(pc uint64) bool) Result {
	res := Result{}
	w := &walk{mem: mem, l: l, a: a, res: &res}

	// Step 1: the innermost CallThreadState.
	if t.ThreadPointer == 0 {
		res.Stop = StopNoFSBase
		return res
	}
	isWasm := inWasm(t.PC)
	var slot uint64
	if !w.read(&slot, uint64(int64(t.ThreadPointer)+l.TLSOffset)) {
		res.Stop = StopRead
		return res
	}
	cts := slot & l.TLSMask
	if cts == 0 {
		if isWasm {
			res.Where, res.Stop = InWasm, StopTransition
		}
		return res
	}
	res.CTS = true
	stop := w.ownStack(t)
	if stop == StopOK {
		w.spOwn = w.onOwnStack(t.SP)
		res.OnFiber = !w.spOwn
		if w.onOwnStack(cts) != w.spOwn && (w.spOwn || isWasm) {
			stop = StopFiberSwitch
		}
	}
	if stop != StopOK {
		res.Where, res.Stop = InHost, stop
		if isWasm {
			res.Where = InWasm
		}
		return res
	}

	// Step 2: the store's current values, and what this CTS saved. Reads
	// stop at the first failure, like the C's chain of ||.
	var store, curPC, curFP, curEntry, base, oldEntry uint64
	if !(w.read(&store, cts+uint64(l.CTSStore)) &&
		w.read(&curPC, store+uint64(l.StoreExitPC)) &&
		w.read(&curFP, store+uint64(l.StoreExitFP)) &&
		w.read(&curEntry, store+uint64(l.StoreEntry)) &&
		w.savedBase(cts, &base) &&
		w.read(&oldEntry, base+uint64(l.SavedEntry))) {
		res.Stop = StopRead
		return res
	}
	w.store, w.cts = store, cts
	entered := curEntry != oldEntry

	// Step 3: the first region.
	if isWasm {
		res.Where = InWasm
		if !entered {
			res.Stop = StopTransition
			return res
		}
		caller := w.callerPCOutsideFrame(t.PC, t.SP, t.FP, inWasm)
		start := t.PC
		if caller != 0 {
			start = caller
		}
		if !w.startRegion(start, t.FP, curEntry) && caller != 0 {
			res.PCs = append(res.PCs, t.PC)
		}
	} else {
		res.Where = InHost
		if entered && curPC != 0 {
			fp := curFP
			if !w.exitFP(&fp) {
				res.Stop = StopRead
				return res
			}
			w.startRegion(curPC, fp, curEntry)
		}
	}

	// Steps 4 and 5, bounded like the kernel's loop.
	for i := 0; i < MaxSteps && !w.done; i++ {
		w.step()
	}
	res.Stop = StopTooDeep
	if w.done {
		res.Stop = w.stop
	}
	if res.Where == InHost && len(res.PCs) == 0 && res.Stop == StopOK {
		res.Where = NoWasm
	}
	return res
}

// read is the C's read_word: one little-endian word into *dst, false when
// unreadable (and *dst is then 0, as bpf_probe_read_user leaves it).
func (w *walk) read(dst *uint64, addr uint64) bool {
	v, err := proc.Word(w.mem, addr)
	*dst = v
	return err == nil
}

// finish ends the walk; it returns true, like the C's "stop the loop".
func (w *walk) finish(s Stop) bool {
	w.stop, w.done = s, true
	return true
}

// exitFP turns an activation's saved exit FP field, in place, into its last
// Wasm FP: newer builds save the exit trampoline's FP, whose record holds
// the Wasm FP. False when that record is unreadable.
func (w *walk) exitFP(fp *uint64) bool {
	if w.l.ExitFPIndirect() && *fp != 0 {
		return w.read(fp, *fp)
	}
	return true
}

// savedBase is where a CTS keeps what the store held before its
// activation began: the CTS itself, or the EntryStoreContext it points to.
func (w *walk) savedBase(cts uint64, base *uint64) bool {
	if !w.l.SavedIndirect() {
		*base = cts
		return true
	}
	return w.read(base, cts+uint64(w.l.CTSOld))
}

// ownStack is step 1's bounds of the thread's own stack.
func (w *walk) ownStack(t Thread) Stop {
	if t.Main {
		w.ownLo, w.ownHi = t.Stacks.MainLo, t.Stacks.MainHi
	} else {
		off := t.Stacks.TCBBlock
		if off == 0 {
			return StopNoStack
		}
		var block, size uint64
		if !(w.read(&block, t.ThreadPointer+off) && w.read(&size, t.ThreadPointer+off+8)) {
			return StopRead
		}
		w.ownLo, w.ownHi = block, block+size
	}
	if w.ownHi <= w.ownLo {
		return StopNoStack
	}
	return StopOK
}

func (w *walk) onOwnStack(addr uint64) bool { return w.ownLo <= addr && addr < w.ownHi }

// startRegion is steps 3 and 5's common end: begin a region at pc/fp with
// the raw entry field. It returns true when the walk is over.
func (w *walk) startRegion(pc, fp, entry uint64) bool {
	if pc == 0 {
		return w.finish(StopOK)
	}
	bound := entry
	if w.l.Generation == layout.Seed {
		if entry == ^uint64(0) {
			w.inRegion = false // the seed's marker of an empty region
			return false
		}
		if !w.a.SeedEntrySPAligned(entry) {
			return w.finish(StopEntryAlign)
		}
		bound = entry - w.a.SeedEntrySPGap
	}
	// Which stack the region is on: fibers first, then the thread's own
	// stack, where the order of bounds starts over.
	n := len(w.res.ActStart)
	fiber := !w.onOwnStack(bound)
	if fiber && ((n > 0 && !w.onFiber) || (n == 0 && w.spOwn)) {
		return w.finish(StopFiberSwitch)
	}
	if n > 0 && (w.newStack || w.onFiber != fiber) {
		w.res.StackEnds |= 1 << (n - 1)
		w.prevBound = 0
	}
	w.newStack = false
	if bound <= w.prevBound {
		return w.finish(StopActOrder)
	}
	if len(w.res.ActStart) >= MaxActivations {
		return w.finish(StopTooDeep)
	}
	w.res.ActStart = append(w.res.ActStart, len(w.res.PCs))
	if fiber {
		w.res.Fibers |= 1 << n
	}
	w.onFiber = fiber
	w.pc, w.fp, w.bound, w.prevBound, w.inRegion = pc, fp, bound, bound, true
	return false
}

// nextRegion is step 5.
func (w *walk) nextRegion() bool {
	cts := w.cts
	if cts == 0 {
		return w.finish(StopOK)
	}
	var store, prev uint64
	if !(w.read(&store, cts+uint64(w.l.CTSStore)) && w.read(&prev, cts+uint64(w.l.CTSPrev))) {
		return w.finish(StopRead)
	}
	w.cts = prev
	if store != w.store {
		return false // another store's activation: opaque host code to us
	}
	var base, pc, fp, entry uint64
	if !(w.savedBase(cts, &base) &&
		w.read(&pc, base+uint64(w.l.SavedExitPC)) &&
		w.read(&fp, base+uint64(w.l.SavedExitFP)) &&
		w.read(&entry, base+uint64(w.l.SavedEntry)) &&
		(pc == 0 || w.exitFP(&fp))) {
		return w.finish(StopRead)
	}
	if pc != 0 && w.l.LimitKnown {
		var tag, limit uint64
		if !(w.read(&tag, base+uint64(w.l.SavedLimitTag)) && w.read(&limit, base+uint64(w.l.SavedLimitValue))) {
			return w.finish(StopRead)
		}
		w.newStack = tag == 1 && limit == ^uint64(0)
	}
	return w.startRegion(pc, fp, entry)
}

// step is step 4: one frame of the current region, or a move to the next.
func (w *walk) step() bool {
	if !w.inRegion {
		return w.nextRegion()
	}
	fp := w.fp
	if fp == w.bound {
		w.inRegion = false // reached the entry trampoline
		return false
	}
	if fp > w.bound {
		return w.finish(StopFPBound)
	}
	if !w.a.FPAligned(fp) {
		return w.finish(StopFPAlign)
	}
	if w.pc == 0 {
		return w.finish(StopPCZero)
	}
	if len(w.res.PCs) >= MaxFrames {
		return w.finish(StopTooDeep)
	}
	w.res.PCs = append(w.res.PCs, w.pc)
	var ra, older uint64
	if !(w.read(&ra, fp+w.a.ReturnAddrOffset) && w.read(&older, fp+w.a.NextOlderFPOffset)) {
		return w.finish(StopRead)
	}
	if older <= fp {
		return w.finish(StopFPOrder)
	}
	w.pc, w.fp = ra, older
	return false
}

// callerPCOutsideFrame: on x86-64 a Cranelift function sets up its frame
// with push %rbp (55); mov %rsp,%rbp (48 89 e5) and leaves it with pop
// %rbp; ret (c3), or pop %rbp; ret $N (c2 N) where Wasmtime's tail-call
// convention has the callee pop its stack arguments (Wasmtime 37 and 39:
// a tenth of a large guest's functions). Sampled on one of those
// instructions, rbp is still the caller's frame and the caller's PC is on
// top of the stack ([sp] before the push and at the ret, [sp+8] after the
// push). It returns that PC, or 0 when fp is the sampled function's own
// frame.
//
// The top of the stack comes first: on those instructions it holds a
// return address into compiled code (before the push, at the ret) or the
// caller's FP (after the push). When it holds neither, the function is in
// its body and the code is not read: reading the code costs the kernel a
// page of memory it touches nowhere else.
func (w *walk) callerPCOutsideFrame(pc, sp, fp uint64, inWasm func(uint64) bool) uint64 {
	if w.a.Name != arch.AMD64.Name {
		return 0
	}
	var top uint64
	if !w.read(&top, sp) || (top != fp && !inWasm(top)) {
		return 0
	}
	var code [3]byte
	if _, err := w.mem.ReadAt(code[:1], pc); err != nil {
		return 0
	}
	switch {
	case code[0] == 0x55 || code[0] == 0xc3 || code[0] == 0xc2:
		return top
	case code[0] == 0x48:
		if _, err := w.mem.ReadAt(code[:], pc); err == nil && code[1] == 0x89 && code[2] == 0xe5 {
			var ra uint64
			w.read(&ra, sp+8)
			return ra
		}
	}
	return 0
}
