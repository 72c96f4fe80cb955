package record

import (
	"hash/maphash"
	"runtime"
	"unsafe"

	"github.com/wasmtrace/wasmtrace/loader"
	"github.com/wasmtrace/wasmtrace/profile"
	"github.com/wasmtrace/wasmtrace/symbolize"
	"github.com/wasmtrace/wasmtrace/walker"
)

// A sample's path, from the kernel's PCs to a count in the profile.
//
// Most samples repeat a stack seen shortly before, so the builder hashes
// what decides a sample's frames (its PCs, where it was taken, its
// activations and their fiber bits) and looks the stack up in a cache of
// interned stacks (profile.StackID) before symbolizing anything. A stack
// not cached is symbolized PC by PC through a cache of PCs' frames
// (profile.FrameID), and only a PC not seen before is looked up in the
// module's function table (symbolize.Symbolizer.Lookup, which allocates
// nothing) and named.
//
// Both caches hold answers of Lookup, so they follow the rule of
// symbolize.Symbolizer.Generation: they are emptied when the generation
// changes, and an entry is used only when every module its frames came
// from is still Current (checked once per module per refresh: newEpoch).
// They are bounded, and emptied when full. A profile that folds its
// stacks (MaxStacks) renumbers them: the stack cache is emptied then too.
//
// What decides a sample's stack beyond its PCs, and so is hashed too:
// Where (the leaf PC is exact only in Wasm; host code adds a [host]
// leaf), ActStart (the [host] between activations), Fibers and StackEnds
// (the [fiber] markers). A failed walk (Stop) and the checks of UserPC
// for samples outside Wasm (a module compiled after the kernel's last
// update, code not seen yet) are decided before the cache, per sample:
// their answers change as modules come and go, and they cost one lookup.

// Bounds of the caches: entries, each a few dozen bytes.
const (
	maxCachedStacks = 1 << 15
	maxCachedPCs    = 1 << 16
)

type stackBuilder struct {
	syms  lookuper
	stats *Stats
	p     *profile.Profile

	gen     uint64 // the symbolizer's generation the caches hold
	epoch   uint64 // the profile's stack numbering the stack cache holds
	ready   bool
	seeds   [2]maphash.Seed
	stacks  map[stackKey]stackEntry
	pcs     map[uint64]pcEntry
	checked map[*symbolize.Module]bool // found Current since the last refresh
	failed  map[string]profile.StackID
	threads map[uint32]threadEntry // by tid

	host, fiber, noWasm profile.FrameID

	// Scratch of one sample's symbolization, kept to allocate nothing.
	ids  []profile.FrameID // innermost first
	mods []*symbolize.Module
}

// lookuper names code by address: a *symbolize.Symbolizer, or a fixed
// table in tests.
type lookuper interface {
	Lookup(pc uint64) (symbolize.Func, *symbolize.Module, bool)
	// UnseenCode reports whether pc is in executable memory that holds
	// no known module (symbolize.Symbolizer.UnseenCode).
	UnseenCode(pc uint64) bool
	// Generation and Current say when an answer of Lookup may be reused
	// (symbolize.Symbolizer.Generation, Current).
	Generation() uint64
	Current(m *symbolize.Module) bool
}

// stackKey is two independent 64-bit hashes of what decides a sample's
// stack: a collision of both is not to be expected in any recording.
type stackKey [2]uint64

type stackEntry struct {
	stack profile.StackID
	mods  []*symbolize.Module // the modules its frames came from
}

type pcEntry struct {
	frame profile.FrameID
	kind  profile.Kind
	mod   *symbolize.Module // nil for a PC outside every module
}

type threadEntry struct {
	pid  uint32
	comm string
	id   profile.ThreadID
}

// newStackBuilder returns a builder that counts samples in p.
func newStackBuilder(syms lookuper, stats *Stats, p *profile.Profile) stackBuilder {
	return stackBuilder{syms: syms, stats: stats, p: p}
}

// reset empties the caches for symbolizer generation gen.
func (b *stackBuilder) reset(gen uint64) {
	if !b.ready {
		// A new profile: its own frame ids.
		b.ready = true
		b.seeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
		b.stacks = map[stackKey]stackEntry{}
		b.pcs = map[uint64]pcEntry{}
		b.checked = map[*symbolize.Module]bool{}
		b.failed = map[string]profile.StackID{}
		b.threads = map[uint32]threadEntry{}
		b.host = b.p.Frame(profile.HostFrame())
		b.fiber = b.p.Frame(profile.FiberFrame())
		b.noWasm = b.p.Frame(profile.NoWasmFrame())
		clear(b.pcs)
	}
	if gen != b.gen {
		clear(b.pcs)
		clear(b.checked)
	}
	clear(b.stacks)
	clear(b.failed)
	b.gen, b.epoch = gen, b.p.Epoch()
}

// newEpoch is called after each refresh of the symbolizer: each module
// must be found Current again before a cached answer naming it is used.
func (b *stackBuilder) newEpoch() { clear(b.checked) }

// add counts one kernel sample in p. The caches hold p's ids: a new
// profile (a window of wasmtrace agent) starts them anew.
func (b *stackBuilder) add(p *profile.Profile, s loader.Sample, process string) {
	if p != b.p {
		b.p, b.ready = p, false
	}
	b.stats.Samples++
	st := b.stackID(s)
	b.p.AddStack(st, b.thread(s, process), 1)
}

// stack turns one kernel sample into a symbolized sample, root first, as
// add counts it (for trace, one event at a time: no caches kept).
func (b *stackBuilder) stack(s loader.Sample) profile.Sample {
	one := newStackBuilder(b.syms, b.stats, profile.New())
	one.stats.Samples++
	st := one.stackID(s)
	return profile.Sample{Frames: one.p.StackFrames(st), PID: int(s.PID), TID: int(s.TID), Thread: s.Comm}
}

// thread is the profile's id of the sample's thread.
func (b *stackBuilder) thread(s loader.Sample, process string) profile.ThreadID {
	if t, ok := b.threads[s.TID]; ok && t.pid == s.PID && t.comm == s.Comm {
		return t.id
	}
	id := b.p.Thread(int(s.PID), process, int(s.TID), s.Comm)
	if len(b.threads) >= maxCachedPCs {
		clear(b.threads)
	}
	b.threads[s.TID] = threadEntry{s.PID, s.Comm, id}
	return id
}

// stackID returns the sample's stack, interned in b.p.
func (b *stackBuilder) stackID(s loader.Sample) profile.StackID {
	if g := b.syms.Generation(); !b.ready || g != b.gen || b.p.Epoch() != b.epoch {
		b.reset(g)
	}
	stop := walker.Stop(s.Stop)
	if stop != walker.StopOK {
		return b.failure(stop.String())
	}
	if s.Where != loader.InWasm {
		// The kernel saw a PC outside every module it knew of. If the
		// PC is compiled Wasm after all, the module was compiled after
		// the last update of the kernel's ranges and the walk started
		// from stale exit records: it cannot be trusted.
		if f, _, ok := b.syms.Lookup(s.UserPC); ok && f.Kind != symbolize.Other {
			return b.failure("module compiled after the last range update")
		}
		// A thread that entered Wasm, sampled in JIT code that no module
		// known yet holds: most likely a module compiled since the last
		// rescan. It is neither [no Wasm] nor the host's code.
		if s.CTS && b.syms.UnseenCode(s.UserPC) {
			return b.failure("code wasmtrace has not seen yet")
		}
	}
	if len(s.PCs) == 0 {
		return b.p.Push(0, b.noWasm)
	}
	key := b.key(s)
	if e, ok := b.stacks[key]; ok && b.allCurrent(e.mods) {
		return e.stack
	}
	gen := b.gen
	st := b.symbolize(s)
	if b.syms.Generation() != gen {
		return st // named while modules changed: exact, but not to keep
	}
	if len(b.stacks) >= maxCachedStacks {
		clear(b.stacks)
	}
	var mods []*symbolize.Module
	if len(b.mods) > 0 {
		mods = append(make([]*symbolize.Module, 0, len(b.mods)), b.mods...)
	}
	b.stacks[key] = stackEntry{st, mods}
	return st
}

// failure counts a failed walk and returns its stack.
func (b *stackBuilder) failure(why string) profile.StackID {
	b.stats.Stops[why]++
	if st, ok := b.failed[why]; ok {
		return st
	}
	st := b.p.Push(0, b.p.Frame(profile.UnwindFailedFrame(why)))
	b.failed[why] = st
	return st
}

// key hashes what decides the frames of a sample that has PCs.
func (b *stackBuilder) key(s loader.Sample) stackKey {
	hdr := [4]uint64{uint64(s.Where) | uint64(len(s.ActStart))<<8 | uint64(len(s.PCs))<<32, uint64(s.Fibers), uint64(s.StackEnds), 0}
	hb := unsafe.Slice((*byte)(unsafe.Pointer(&hdr[0])), int(unsafe.Sizeof(hdr)))
	var act, pcs []byte
	if len(s.ActStart) > 0 {
		act = unsafe.Slice((*byte)(unsafe.Pointer(&s.ActStart[0])), 2*len(s.ActStart))
	}
	pcs = unsafe.Slice((*byte)(unsafe.Pointer(&s.PCs[0])), 8*len(s.PCs))
	var k stackKey
	for i, seed := range b.seeds {
		var h maphash.Hash
		h.SetSeed(seed)
		h.Write(hb)
		h.Write(act)
		h.Write(pcs)
		k[i] = h.Sum64()
	}
	return k
}

// allCurrent reports whether every module is still Current, asking the
// symbolizer about each once per refresh.
func (b *stackBuilder) allCurrent(mods []*symbolize.Module) bool {
	for _, m := range mods {
		if !b.current(m) {
			return false
		}
	}
	return true
}

// current reports whether m is still Current, asking the symbolizer once
// per refresh.
func (b *stackBuilder) current(m *symbolize.Module) bool {
	if b.checked[m] {
		return true
	}
	if !b.syms.Current(m) {
		return false // and the generation has changed: the caches go next time
	}
	b.checked[m] = true
	return true
}

// symbolize names the sample's frames and interns its stack; b.mods are
// then the modules the frames came from.
func (b *stackBuilder) symbolize(s loader.Sample) profile.StackID {
	b.ids, b.mods = b.ids[:0], b.mods[:0]
	last := profile.Kind(0)
	push := func(id profile.FrameID, k profile.Kind) {
		if k == profile.KindHost && last == profile.KindHost {
			return
		}
		b.ids = append(b.ids, id)
		last = k
	}
	if s.Where == loader.InHost {
		push(b.host, profile.KindHost)
	}
	// [fiber] marks where the stack moved onto a fiber: root side of the
	// oldest activation on each fiber stack.
	// (Result.FiberRoot reads only the number of activations.)
	var acts [32]int
	res := walker.Result{ActStart: acts[:0], Fibers: s.Fibers, StackEnds: s.StackEnds}
	if n := len(s.ActStart); n <= len(acts) {
		res.ActStart = acts[:n]
	} else {
		res.ActStart = make([]int, n)
	}
	act := 0
	nextAct := func() {
		if res.FiberRoot(act) {
			push(b.fiber, profile.KindFiber)
		}
		act++
		push(b.host, profile.KindHost)
	}
	for i, pc := range s.PCs {
		for act+1 < len(s.ActStart) && int(s.ActStart[act+1]) <= i {
			nextAct()
		}
		lookup := pc
		if i > 0 || s.Where != loader.InWasm {
			lookup = pc - 1 // a return address: the call is the byte before
		}
		e := b.frame(lookup)
		if e.mod != nil && !containsModule(b.mods, e.mod) {
			b.mods = append(b.mods, e.mod)
		}
		push(e.frame, e.kind)
	}
	// Activations with no frames of their own at the end (possible when
	// sampled inside an entry trampoline) still mark host code.
	for act+1 < len(s.ActStart) {
		nextAct()
	}
	if res.FiberRoot(act) {
		push(b.fiber, profile.KindFiber)
	}
	st := profile.StackID(0)
	for i := len(b.ids) - 1; i >= 0; i-- {
		st = b.p.Push(st, b.ids[i])
	}
	return st
}

func containsModule(mods []*symbolize.Module, m *symbolize.Module) bool {
	for _, x := range mods {
		if x == m {
			return true
		}
	}
	return false
}

// frame names the code at pc, from the cache when the module it came
// from is still Current. A Wasm frame's module is the module's own name
// (its name section), or "" when it has none: wasmtrace does not invent
// one (see profile.Frame.Module).
func (b *stackBuilder) frame(pc uint64) pcEntry {
	if e, ok := b.pcs[pc]; ok && (e.mod == nil || b.current(e.mod)) {
		return e
	}
	f, m, ok := b.syms.Lookup(pc)
	if m != nil {
		b.checked[m] = true // Lookup names a module only once it found it Current
	}
	var fr profile.Frame
	switch {
	case !ok:
		fr = profile.UnresolvedFrame(pc)
	case f.Kind == symbolize.Trampoline:
		fr = profile.HostFrame()
	default:
		module := ""
		if m != nil {
			module = m.Name
		}
		fr = profile.WasmFrame(f.Name, module)
	}
	e := pcEntry{b.p.Frame(fr), fr.Kind, m}
	if len(b.pcs) >= maxCachedPCs {
		clear(b.pcs)
	}
	b.pcs[pc] = e
	return e
}

// goarchOfProcess is the architecture wasmtrace runs on; a process it can
// trace runs on the same one.
func goarchOfProcess() string { return runtime.GOARCH }
