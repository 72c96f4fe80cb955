package layout

// Live checks: confirming a layout against a running process without
// stopping it (no ptrace), by reading its memory.
//
//  1. Thread pointers. fs_base is not readable without ptrace, but glibc
//     puts each thread's TCB (struct pthread) at the thread pointer, and
//     the TCB starts with two pointers to itself (tcb, and self at +0x10)
//     and holds the thread's id. Scanning the process's writable memory
//     for 64-byte aligned words X with [X] == X and [X+0x10] == X, whose
//     stack-protector canaries (+0x28) agree, and finding the one offset
//     at which each holds a distinct thread id of the process, gives every
//     thread's thread pointer.
//  2. Thread-local slot. At thread pointer + TLSOffset each thread must
//     hold zero or the "initialised" tag when idle, and otherwise a
//     CallThreadState pointer into its own stack or, in async hosts, into
//     a fiber stack (an anonymous private mapping that is no thread's
//     stack).
//  3. Offsets. For a thread caught inside Wasm (or in the host called from
//     Wasm): each CallThreadState's store pointer points off its stack,
//     its old_state into the same stack, and prev further up that stack,
//     or on to an older stack: from a fiber to another fiber or to the
//     thread's own stack, never back (see readThread). When the
//     EntryStoreContext's stack_limit is known, it must be None,
//     Some(usize::MAX) or Some(an address of that stack) (limitProblem).
//  4. VMStoreContext offsets (entry-FP generation). The JIT trampolines
//     in the process's compiled modules store the exit trampoline's FP
//     and the return address (wasm_to_array_trampoline) and the entry
//     trampoline's FP (array_to_wasm_trampoline) at fixed offsets: decoded
//     like the binary (x86.Stores), they must name the same offsets.
//
// Checks 2 and 3 race with the running target; a thread fails only when
// three reads in a row fail. A contradiction refuses the process; finding
// nothing to check (no thread in Wasm, no module compiled yet) is
// reported and accepted.

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/wasmtrace/wasmtrace/layout/x86"
	"github.com/wasmtrace/wasmtrace/proc"
	"github.com/wasmtrace/wasmtrace/symbolize"
)

func (l *Layout) checkLive(pid int) error {
	mem := proc.ProcessMemory{PID: pid}
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		l.live("memory", "not checked: "+err.Error())
		return nil
	}
	if err := l.checkTrampolines(mem, maps); err != nil {
		return err
	}
	tids, err := proc.Threads(pid)
	if err != nil {
		l.live("threads", "not checked: "+err.Error())
		return nil
	}
	tps, how := proc.ThreadPointers(mem, maps, tids)
	if len(tps) == 0 {
		l.live("thread pointers", "not found ("+how+"); the thread-local slot was not checked")
		return nil
	}
	l.live("thread pointers", fmt.Sprintf("%d of %d threads (%s)", len(tps), len(tids), how))
	return l.checkThreads(mem, maps, tps, func() ([]proc.Mapping, error) { return proc.ReadMaps(pid) })
}

func (l *Layout) live(what, how string) {
	l.Live = append(l.Live, Fact{What: what, Source: srcLive, How: how})
}

// ---- thread-local slot and offsets ----

func mappingOf(maps []proc.Mapping, addr uint64) *proc.Mapping {
	i := sort.Search(len(maps), func(i int) bool { return maps[i].End > addr })
	if i < len(maps) && maps[i].Start <= addr {
		return &maps[i]
	}
	return nil
}

// threadView is one read of a thread's Wasmtime state.
type threadView struct {
	slot, cts uint64
	fibers    int // fiber stacks the CallThreadState list runs through
	limits    limitCount
	problem   string // "" when consistent
}

// limitCount counts the saved stack limits seen, by kind.
type limitCount struct{ none, first, some int }

func (c *limitCount) add(d limitCount) {
	c.none, c.first, c.some = c.none+d.none, c.first+d.first, c.some+d.some
}

func (c limitCount) total() int { return c.none + c.first + c.some }

// checkThreads checks each thread's state; reread, if not nil, reads the
// memory map again when a read looked wrong, since fiber stacks come and go
// (Wasmtime's default allocator maps a new one for a call made while
// another fiber is suspended).
func (l *Layout) checkThreads(mem proc.Memory, maps []proc.Mapping, tps map[int]uint64, reread func() ([]proc.Mapping, error)) error {
	tids := make([]int, 0, len(tps))
	for t := range tps {
		tids = append(tids, t)
	}
	sort.Ints(tids)
	// The mappings holding a thread's TCB are thread stacks: a fiber
	// stack is none of them.
	var stacks map[uint64]bool
	setMaps := func(m []proc.Mapping) {
		maps = m
		sort.Slice(maps, func(i, j int) bool { return maps[i].Start < maps[j].Start })
		stacks = map[uint64]bool{}
		for _, tp := range tps {
			if m := mappingOf(maps, tp); m != nil {
				stacks[m.Start] = true
			}
		}
	}
	setMaps(maps)
	idle, ok, onFiber := 0, 0, 0
	var limits limitCount
	var bad []string
	var example string
	for _, tid := range tids {
		tp := tps[tid]
		var v threadView
		for try := range 3 {
			if try > 0 && reread != nil {
				if m, err := reread(); err == nil {
					setMaps(m)
				}
			}
			v = l.readThread(mem, maps, tp, stacks)
			if v.problem == "" {
				break
			}
		}
		switch {
		case v.problem != "":
			bad = append(bad, fmt.Sprintf("thread %d: %s", tid, v.problem))
		case v.cts == 0:
			idle++
		default:
			ok++
			limits.add(v.limits)
			where := ""
			if v.fibers > 0 {
				onFiber++
				where = " on a fiber stack"
			}
			if example == "" {
				example = fmt.Sprintf("e.g. thread %d: slot %#x -> CallThreadState %#x%s", tid, v.slot, v.cts, where)
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: thread-local slot fs%+#x: %s", ErrLive, l.TLSOffset, strings.Join(bad, "; "))
	}
	switch {
	case ok > 0:
		fibers := ""
		switch {
		case onFiber == 1:
			fibers = ", 1 of them on a fiber stack"
		case onFiber > 1:
			fibers = fmt.Sprintf(", %d of them on fiber stacks", onFiber)
		}
		l.live("thread-local slot and offsets", fmt.Sprintf("confirmed on %s in Wasm%s (%s), %d idle", plural(ok, "thread"), fibers, example, idle))
		l.liveLimits(limits)
	default:
		l.live("thread-local slot", fmt.Sprintf("plausible on %s, all idle; no thread held a CallThreadState, so its offsets were not checked", plural(idle, "thread")))
	}
	return nil
}

// maxCTSDepth bounds the CallThreadStates followed on one thread.
const maxCTSDepth = 64

// Kinds of stack a CallThreadState can live on.
const (
	notStack = iota
	threadStack
	fiberStack
)

// stackKind says whether addr, in mapping m, is on the stack of the
// thread whose thread pointer is tp (the main stack, or below its TCB in
// the mapping holding it), or on a fiber stack: a private, anonymous,
// writable mapping that holds no thread's TCB (stacks: the mappings that
// do, by start). Async Wasmtime runs Wasm on such fiber stacks.
func stackKind(m *proc.Mapping, addr, tp uint64, stacks map[uint64]bool) int {
	switch {
	case m == nil:
		return notStack
	case m.Start <= tp && tp < m.End:
		if addr < tp {
			return threadStack
		}
		return notStack
	case m.Path == "[stack]":
		return threadStack
	case m.Anonymous() && len(m.Perms) == 4 && m.Perms[:2] == "rw" && m.Perms[3] == 'p' && !stacks[m.Start]:
		return fiberStack
	}
	return notStack
}

// describe says where an address in m is, for a refusal.
func describe(m *proc.Mapping, tp uint64, stacks map[uint64]bool) string {
	switch {
	case m == nil:
		return "not mapped"
	case m.Start <= tp && tp < m.End:
		return "at or above the thread's TCB"
	case stacks[m.Start]:
		return "on another thread's stack"
	case m.Path != "":
		return "in " + m.Path
	}
	return "in a " + m.Perms + " mapping"
}

// readThread reads and checks one thread's state once.
//
// The CallThreadStates form a list from the innermost (the slot's) to the
// oldest, each on a stack: the thread's own, or, in async hosts, a fiber
// stack, where the oldest CallThreadState of a fiber links to whatever
// the slot held when the fiber was resumed (nothing, one on the thread's
// stack, or one on another fiber's stack). So the list runs through
// segments, each one stack mapping: within a segment prev points further
// up (older frames are at higher addresses); a segment once left is never
// entered again; and once on the thread's own stack the list stays there.
// Each CallThreadState's old_state (its EntryStoreContext) is on the same
// stack as the CallThreadState (it can share a frame with it when
// catch_traps is inlined, so it may sit on either side); its store is
// not. (VMStoreContext's exit fields are not checked here: Wasmtime leaves
// stale values in them, possibly from another thread's stack; the JIT
// trampolines confirm those offsets instead.)
func (l *Layout) readThread(mem proc.Memory, maps []proc.Mapping, tp uint64, stacks map[uint64]bool) threadView {
	var v threadView
	word := func(a uint64) (uint64, bool) {
		w, err := proc.Word(mem, a)
		return w, err == nil
	}
	slotAt := uint64(int64(tp) + l.TLSOffset)
	var okRead bool
	if v.slot, okRead = word(slotAt); !okRead {
		v.problem = fmt.Sprintf("slot at %#x unreadable", slotAt)
		return v
	}
	v.cts = v.slot & l.TLSMask
	if v.cts == 0 {
		return v // idle: zero, or only the "initialised" tag
	}
	seg := mappingOf(maps, v.cts)
	kind := stackKind(seg, v.cts, tp, stacks)
	if kind == notStack {
		v.problem = fmt.Sprintf("slot holds %#x, which is in neither the thread's stack nor a fiber stack (%s)", v.slot, describe(seg, tp, stacks))
		return v
	}
	if kind == fiberStack {
		v.fibers++
	}
	left := map[*proc.Mapping]bool{}
	cts := v.cts
	for depth := 0; cts != 0 && depth < maxCTSDepth; depth++ {
		st, ok1 := word(cts + uint64(l.CTSStore))
		prev, ok2 := word(cts + uint64(l.CTSPrev))
		if !ok1 || !ok2 {
			v.problem = fmt.Sprintf("CallThreadState %#x unreadable", cts)
			return v
		}
		if sm := mappingOf(maps, st); st == 0 || st%8 != 0 || sm == nil || sm == seg {
			v.problem = fmt.Sprintf("CallThreadState %#x +%#x holds %#x, not a store pointer", cts, l.CTSStore, st)
			return v
		}
		if l.Generation == EntryFP {
			old, ok := word(cts + uint64(l.CTSOld))
			if !ok || old == cts || mappingOf(maps, old) != seg {
				v.problem = fmt.Sprintf("CallThreadState %#x old_state (+%#x) holds %#x, not a saved state on the same stack", cts, l.CTSOld, old)
				return v
			}
			if l.LimitKnown {
				tag, ok1 := word(old + uint64(l.SavedLimitTag))
				limit, ok2 := word(old + uint64(l.SavedLimitValue))
				if !ok1 || !ok2 {
					v.problem = fmt.Sprintf("EntryStoreContext %#x unreadable", old)
					return v
				}
				if why := limitProblem(tag, limit, cts, seg); why != "" {
					v.problem = fmt.Sprintf("CallThreadState %#x: its EntryStoreContext %#x holds a stack_limit (tag +%#x, value +%#x) that %s", cts, old, l.SavedLimitTag, l.SavedLimitValue, why)
					return v
				}
				switch {
				case tag == 0:
					v.limits.none++
				case limit == ^uint64(0):
					v.limits.first++
				default:
					v.limits.some++
				}
			}
		}
		if prev == 0 {
			break
		}
		notOlder := func(why string) threadView {
			v.problem = fmt.Sprintf("CallThreadState %#x prev (+%#x) holds %#x, not an older CallThreadState (%s)", cts, l.CTSPrev, prev, why)
			return v
		}
		pm := mappingOf(maps, prev)
		pk := stackKind(pm, prev, tp, stacks)
		switch {
		case pk == notStack:
			return notOlder(describe(pm, tp, stacks))
		case pm == seg:
			if prev <= cts {
				return notOlder("below it on the same stack")
			}
		case kind == threadStack:
			return notOlder("it leaves the thread's stack")
		case left[pm]:
			return notOlder("on a stack the list already left")
		default:
			left[seg] = true
			seg, kind = pm, pk
			if kind == fiberStack {
				v.fibers++
			}
		}
		cts = prev
	}
	return v
}

// maxLimitBelow bounds how far below its CallThreadState a saved stack
// limit may lie.
const maxLimitBelow = 16 << 20

// limitProblem says why a saved stack_limit (an Option<usize>: tag word,
// value word) read from the EntryStoreContext of the CallThreadState at
// cts, on the stack mapping m, is implausible, or "" when it is not. The
// tag is 0 (None: the value word is not set) or 1 (Some). Some(usize::MAX)
// is what the oldest activation on a stack saves (no limit was in force).
// Any other Some(limit) is the limit of the store's enclosing activation
// on the same stack: the SP at its entry, higher on this stack than cts,
// minus max_wasm_stack. So it is below the top of the stack, and at most
// max_wasm_stack below cts; 16 MiB bounds that (Wasmtime's default is
// 512 KiB, and an async store's max_wasm_stack must fit in its fiber
// stacks, 2 MiB by default). It can lie below the mapping's start, or
// slightly above cts (when host code called from Wasm went past the
// limit before calling into Wasm again).
func limitProblem(tag, limit, cts uint64, m *proc.Mapping) string {
	switch {
	case tag > 1:
		return fmt.Sprintf("has tag word %#x, neither 0 (None) nor 1 (Some)", tag)
	case tag == 0 || limit == ^uint64(0):
		return ""
	case m != nil && limit >= m.End:
		return fmt.Sprintf("is Some(%#x), above the top of its stack (%#x)", limit, m.End)
	case limit < cts && cts-limit > maxLimitBelow:
		return fmt.Sprintf("is Some(%#x), neither usize::MAX nor within %d MiB below the CallThreadState", limit, maxLimitBelow>>20)
	}
	return ""
}

// liveLimits reports the saved stack limits the threads in Wasm showed.
func (l *Layout) liveLimits(c limitCount) {
	if !l.LimitKnown || c.total() == 0 {
		return
	}
	how := fmt.Sprintf("plausible in %s: %d Some(usize::MAX) (oldest on its stack), %d Some(limit), %d None",
		plural(c.total(), "EntryStoreContext"), c.first, c.some, c.none)
	l.live(limitFact, how)
	for _, name := range []string{limitTagFact, limitValueFact} {
		if f := l.factNamed(name); f != nil {
			f.Check = joinChecks(f.Check, "live: "+how)
		}
	}
}

// ---- JIT trampolines ----

// checkTrampolines decodes the entry and exit trampolines of the process's
// compiled modules (entry-FP generation) and compares the VMStoreContext
// offsets they use with the layout's.
func (l *Layout) checkTrampolines(mem proc.Memory, maps []proc.Mapping) error {
	if l.Generation != EntryFP {
		l.live("JIT trampolines", "not needed: this generation's VMRuntimeLimits offsets come from the assembly trampolines in the binary")
		return nil
	}
	want := map[string]struct {
		role x86.Role
		fl   x86.Field
	}{
		"exit FP":  {x86.OwnFP, x86.StoreExitFP},
		"exit PC":  {x86.RetAddr, x86.StoreExitPC},
		"entry FP": {x86.OwnFP, x86.StoreEntry},
	}
	seen := map[string]string{}
	n := 0
	checkModule := func(m *symbolize.Module) error {
		for _, f := range m.Funcs {
			var keys []string
			switch {
			case strings.Contains(f.Symbol, "wasm_to_array_trampoline"):
				keys = []string{"exit FP", "exit PC"}
			case strings.Contains(f.Symbol, "array_to_wasm_trampoline"):
				keys = []string{"entry FP"}
			default:
				continue
			}
			if !slices.ContainsFunc(keys, func(k string) bool { _, ok := seen[k]; return !ok }) {
				continue // one of each kind suffices
			}
			if f.End <= f.Start || f.End-f.Start > 4096 {
				continue
			}
			code := make([]byte, f.End-f.Start)
			if _, err := mem.ReadAt(code, f.Start); err != nil {
				continue
			}
			stores, err := x86.Stores(x86.Code{Name: short(f.Symbol), Addr: f.Start, Bytes: code})
			if err != nil {
				continue
			}
			n++
			for _, k := range keys {
				w := want[k]
				var offs []int64
				var at string
				for _, s := range stores {
					if s.Role == w.role && !slices.Contains(offs, s.Off) {
						offs = append(offs, s.Off)
						at = s.At
					}
				}
				if len(offs) != 1 {
					return fmt.Errorf("%w: %s stores %d candidate %s values", ErrLive, f.Symbol, len(offs), k)
				}
				if got := uint32(*l.ptr(w.fl)); int64(got) != offs[0] {
					return fmt.Errorf("%w: %s is %#x in the binary's code, but the process's %s stores it at %#x (%s)",
						ErrLive, l.Generation.fieldName(w.fl), got, f.Symbol, offs[0], at)
				}
				seen[k] = at
				if fact := l.factNamed(l.Generation.fieldName(w.fl)); fact != nil {
					fact.Check = joinChecks(fact.Check, "live JIT code agrees: "+at)
				}
			}
		}
		return nil
	}
	// Modules are read only until one trampoline of each kind is found:
	// reading them all would double the work of symbolization.
	var checkErr error
	found := 0
	err := symbolize.EachModule(mem, maps, func(m *symbolize.Module) bool {
		found++
		checkErr = checkModule(m)
		return checkErr == nil && len(seen) < len(want)
	})
	if checkErr != nil {
		return checkErr
	}
	if err != nil && found == 0 {
		l.live("JIT trampolines", "not checked: "+err.Error())
		return nil
	}
	if n == 0 {
		l.live("JIT trampolines", "none in memory yet; VMStoreContext offsets not checked against JIT code")
		return nil
	}
	var missing []string
	for k := range want {
		if _, ok := seen[k]; !ok {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	how := fmt.Sprintf("%d decoded, VMStoreContext offsets agree", n)
	if len(missing) > 0 {
		how += " (not seen: " + strings.Join(missing, ", ") + ")"
	}
	l.live("JIT trampolines", how)
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func joinChecks(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
