package walker

import (
	"github.com/wasmtrace/wasmtrace/arch"
	"github.com/wasmtrace/wasmtrace/layout"
	"github.com/wasmtrace/wasmtrace/proc"
)

// Layouts shaped like Wasmtime 39 (newer generation) and 3 (seed), with
// those builds' offsets (layout/known.go) and TLS slots.
var (
	layoutEntryFP = &layout.Layout{
		Version: "39.0.0", Generation: layout.EntryFP,
		TLSOffset: -0x68, TLSMask: ^uint64(1),
		CTSStore: 0x10, CTSPrev: 0xa8, CTSOld: 0xb0,
		SavedExitPC: 0x20, SavedExitFP: 0x28, SavedEntry: 0x30,
		SavedLimitTag: 0, SavedLimitValue: 8, LimitKnown: true,
		StoreExitFP: 0x28, StoreExitPC: 0x30, StoreEntry: 0x40,
	}
	layoutSeed = &layout.Layout{
		Version: "3.0.0", Generation: layout.Seed,
		TLSOffset: -0x80, TLSMask: ^uint64(0),
		CTSStore: 0x48, CTSPrev: 0x50,
		SavedExitFP: 0x58, SavedExitPC: 0x60, SavedEntry: 0x68,
		StoreExitFP: 0x18, StoreExitPC: 0x20, StoreEntry: 0x28,
	}
)

// config is one generation on one architecture. Both architectures' walks
// run here, on whatever machine runs the tests: the walker is pure Go and
// depends on the architecture only through arch.Arch's constants and the
// x86-64 prologue check (keyed on Arch.Name), and both architectures are
// little-endian, as proc.Word assumes. Running the tests under qemu-aarch64
// would execute the same code on the same inputs, so it is not done.
type config struct {
	name string
	l    *layout.Layout
	a    arch.Arch
}

func (c config) seed() bool  { return c.l.Generation == layout.Seed }
func (c config) amd64() bool { return c.a.Name == arch.AMD64.Name }

var configs = []config{
	{"entryfp-amd64", layoutEntryFP, arch.AMD64},
	{"entryfp-arm64", layoutEntryFP, arch.ARM64},
	{"seed-amd64", layoutSeed, arch.AMD64},
	{"seed-arm64", layoutSeed, arch.ARM64},
}

// Compiled Wasm code lies in [wasmLo, wasmHi); everything else is host code.
const (
	wasmLo   = 0x500000
	wasmHi   = 0x600000
	hostPC   = 0x400100 // where a thread sampled in host code is
	stackTop = 0x7ffd00000000
	tp       = 0x7f0000000000       // thread pointer
	ctsBase  = stackTop - 0x8000000 // CallThreadStates (and EntryStoreContexts) live here, 0x1000 apart
	ourStore = 0x61000000
	other    = 0x62000000 // another store's context
	frameGap = 0x40       // distance between frame records on the synthetic stack
	stale    = 0xbad0     // what exit fields hold when no exit happened yet
	// The thread's own stack, as glibc's TCB at tp+tcbBlock says, holds
	// the stack and every CallThreadState of the thread's own stack.
	ownLo    = stackTop - 0x10000000
	ownHi    = stackTop
	tcbBlock = 0x690
	// Fiber stacks: activations a scene puts on fibers, and their
	// CallThreadStates, lie here, outside the thread's own stack.
	fiberTop     = 0x7e0000000000
	fiberCTSBase = 0x7e0001000000
)

// stacksOf is where the synthetic process keeps its threads' own stacks.
var stacksOf = proc.Stacks{TCBBlock: tcbBlock}

func inWasm(pc uint64) bool { return pc >= wasmLo && pc < wasmHi }

// scene is a synthetic thread.
type scene struct {
	// acts are the activations' Wasm frames, each innermost first, as the
	// walk should report them; activation 0 is the innermost. Every
	// activation has at least one frame.
	acts [][]uint64
	// host: sampled in host code that activation 0 called; otherwise in
	// activation 0's innermost function.
	host bool
	// others[k] CallThreadStates of another store sit between activation
	// k's CTS and the next older one.
	others map[int]int
	// fibers: the innermost fibers activations (and their CTSs) are on a
	// fiber stack, each one on a fiber of its own when nested is set.
	fibers int
	nested bool
	// above: each nested fiber lies above the one that resumed it, as
	// the pooling allocator's slots can.
	above bool
}

// built is a scene laid out in memory, with the addresses a test mutates.
type built struct {
	cfg       config
	mem       *Snapshot
	thread    Thread
	slot      uint64     // the TLS slot's address
	cts       []uint64   // each activation's CallThreadState
	saved     []uint64   // where each CTS's saved values are (EntryStoreContext, or the CTS)
	fps       [][]uint64 // each activation's frame pointers, innermost first
	entryFP   []uint64   // each activation's entry trampoline FP
	exitTramp []uint64   // each activation's exit trampoline FP (0: none)
	lowSP     uint64     // below the deepest frame built
}

func (b *built) set(addr, v uint64) { b.mem.SetWord(addr, v) }

// entry is activation k's entry field: the trampoline's FP, or in the
// seed the entry SP just above it.
func (b *built) entry(k int) uint64 {
	if b.cfg.seed() {
		return b.entryFP[k] + b.cfg.a.SeedEntrySPGap
	}
	return b.entryFP[k]
}

// exitFP is activation k's exit FP field: the exit trampoline's FP, or in
// the seed the last Wasm FP itself.
func (b *built) exitFP(k int) uint64 {
	if b.cfg.seed() {
		return b.fps[k][0]
	}
	return b.exitTramp[k]
}

// record writes a frame record at fp.
func (b *built) record(fp, older, ra uint64) {
	b.set(fp+b.cfg.a.NextOlderFPOffset, older)
	b.set(fp+b.cfg.a.ReturnAddrOffset, ra)
}

// writeSaved writes what a CTS saved: an activation's exit PC, exit FP
// field and entry field.
func (b *built) writeSaved(base, pc, fp, entry uint64) {
	l := b.cfg.l
	b.set(base+uint64(l.SavedExitPC), pc)
	b.set(base+uint64(l.SavedExitFP), fp)
	b.set(base+uint64(l.SavedEntry), entry)
	if l.LimitKnown { // a stack limit, as in a recursive entry: not a new stack
		b.set(base+uint64(l.SavedLimitTag), 1)
		b.set(base+uint64(l.SavedLimitValue), stackTop-0x200000)
	}
}

// writeCTS writes a CallThreadState at addr and returns where its saved
// values go.
func (b *built) writeCTS(addr, store, prev uint64) uint64 {
	l := b.cfg.l
	b.set(addr+uint64(l.CTSStore), store)
	b.set(addr+uint64(l.CTSPrev), prev)
	if l.SavedIndirect() {
		esc := addr + 0x800
		b.set(addr+uint64(l.CTSOld), esc)
		return esc
	}
	return addr
}

// setSlot points the TLS slot at a CTS (tagged as initialised in the newer
// generation, whose mask drops the tag).
func (b *built) setSlot(cts uint64) {
	v := cts
	if cts != 0 && !b.cfg.seed() {
		v |= 1
	}
	b.set(b.slot, v)
}

func build(cfg config, sc scene) *built {
	n := len(sc.acts)
	b := &built{
		cfg: cfg, mem: &Snapshot{},
		fps: make([][]uint64, n), entryFP: make([]uint64, n), exitTramp: make([]uint64, n),
		cts: make([]uint64, n), saved: make([]uint64, n),
	}
	// The stack, oldest activation first, growing down; each fiber's
	// stack lies below the older one's.
	sp := uint64(stackTop - 0x100)
	for k := n - 1; k >= 0; k-- {
		if k < sc.fibers && (k == sc.fibers-1 || sc.nested) {
			slot := uint64(sc.fibers - 1 - k)
			if sc.above {
				slot = uint64(k)
			}
			sp = fiberTop - 0x100 - slot*0x100000
		}
		b.entryFP[k] = sp
		b.record(sp, sp+0x100, 0x400000+uint64(k)) // the entry trampoline's own record
		sp -= frameGap
		pcs := sc.acts[k]
		fps := make([]uint64, len(pcs))
		for j := len(pcs) - 1; j >= 0; j-- {
			fps[j] = sp
			sp -= frameGap
		}
		for j := range pcs {
			older, ra := b.entryFP[k], uint64(0x400010+k) // returns into the entry trampoline
			if j+1 < len(pcs) {
				older, ra = fps[j+1], pcs[j+1]
			}
			b.record(fps[j], older, ra)
		}
		b.fps[k] = fps
		if k > 0 || sc.host {
			// The exit trampoline's record holds the last Wasm FP and the
			// return address into Wasm; host frames follow.
			b.exitTramp[k] = sp
			b.record(sp, fps[0], pcs[0])
			sp -= frameGap + 0x80
		}
	}
	b.lowSP = sp

	// The CallThreadStates, innermost first, with other stores' between.
	var chain []uint64 // addresses, innermost first
	ours := map[uint64]int{}
	next := uint64(ctsBase)
	if sc.fibers > 0 {
		next = fiberCTSBase
	}
	for k := 0; k < n; k++ {
		if k == sc.fibers && k > 0 {
			next = ctsBase // the first CTS on the thread's own stack
		}
		ours[next] = k
		b.cts[k] = next
		chain = append(chain, next)
		next += 0x1000
		for range sc.others[k] {
			chain = append(chain, next)
			next += 0x1000
		}
	}
	for i, addr := range chain {
		prev := uint64(0)
		if i+1 < len(chain) {
			prev = chain[i+1]
		}
		k, mine := ours[addr]
		if !mine {
			base := b.writeCTS(addr, other, prev)
			b.writeSaved(base, 0xdead, 0xdead0, 0xdead0) // never read
			continue
		}
		b.saved[k] = b.writeCTS(addr, ourStore, prev)
		if k+1 < n {
			b.writeSaved(b.saved[k], sc.acts[k+1][0], b.exitFP(k+1), b.entry(k+1))
		} else {
			b.writeSaved(b.saved[k], 0, 0, 0) // no older activation
		}
		// The stack limit before the activation: none (usize::MAX) for
		// the first one on a stack.
		if l := cfg.l; l.LimitKnown {
			if k == n-1 || k == sc.fibers-1 || (k < sc.fibers && sc.nested) {
				b.set(b.saved[k]+uint64(l.SavedLimitTag), 1)
				b.set(b.saved[k]+uint64(l.SavedLimitValue), ^uint64(0))
			}
		}
	}

	// The store describes activation 0. Its exit fields are stale while
	// activation 0 runs Wasm: they still describe the last exit.
	l := cfg.l
	exitPC, exitFP := uint64(stale), uint64(stale)
	if sc.host {
		exitPC, exitFP = sc.acts[0][0], b.exitFP(0)
	} else if n > 1 {
		exitPC, exitFP = sc.acts[1][0], b.exitFP(1)
	}
	b.set(ourStore+uint64(l.StoreExitPC), exitPC)
	b.set(ourStore+uint64(l.StoreExitFP), exitFP)
	b.set(ourStore+uint64(l.StoreEntry), b.entry(0))

	b.slot = uint64(int64(tp) + l.TLSOffset)
	b.setSlot(b.cts[0])
	b.set(tp+tcbBlock, ownLo)
	b.set(tp+tcbBlock+8, ownHi-ownLo)
	if sc.host {
		b.thread = Thread{PC: hostPC, FP: sp + 0x40, SP: sp, ThreadPointer: tp, Stacks: stacksOf}
	} else {
		b.thread = Thread{PC: sc.acts[0][0], FP: b.fps[0][0], SP: b.fps[0][0] - 0x10, ThreadPointer: tp, Stacks: stacksOf}
		b.mem.Set(sc.acts[0][0], []byte{0x90, 0x90, 0x90}) // nops: not a prologue
	}
	return b
}

// countingMemory counts the reads a walk makes.
type countingMemory struct {
	mem   proc.Memory
	reads int
	bytes int
}

func (c *countingMemory) ReadAt(p []byte, addr uint64) (int, error) {
	c.reads++
	c.bytes += len(p)
	return c.mem.ReadAt(p, addr)
}
