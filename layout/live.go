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
//     CallThreadState pointer into its own stack.
//  3. Offsets. For a thread caught inside Wasm (or in the host called from
//     Wasm): the CallThreadState's store pointer is a heap pointer, its
//     prev and old_state point further up the same stack, and the store's
//     exit FP and entry bound lie in that stack.
//  4. VMStoreContext offsets (entry-FP generation). The JIT trampolines
//     in the process's compiled modules store the exit trampoline's FP
//     and the return address (wasm_to_array_trampoline) and the entry
//     trampoline's FP (array_to_wasm_trampoline) at fixed offsets: decoded
//     like the binary, they must name the same offsets.
//
// Checks 2 and 3 race with the running target; a thread fails only when
// three reads in a row fail. A contradiction refuses the process; finding
// nothing to check (no thread in Wasm, no module compiled yet) is
// reported and accepted.

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"

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
	tps, how := findThreadPointers(mem, maps, tids)
	if len(tps) == 0 {
		l.live("thread pointers", "not found ("+how+"); the thread-local slot was not checked")
		return nil
	}
	l.live("thread pointers", fmt.Sprintf("%d of %d threads (%s)", len(tps), len(tids), how))
	return l.checkThreads(mem, maps, tps)
}

func (l *Layout) live(what, how string) {
	l.Live = append(l.Live, Fact{What: what, Source: srcLive, How: how})
}

// ---- thread pointers ----

const (
	tcbAlign   = 64
	scanTop    = 64 << 10 // bytes scanned at the top of large mappings
	scanSmall  = 1 << 20  // mappings up to this size are scanned whole
	tidScanEnd = 0x1000
)

// findThreadPointers returns thread pointer by thread id.
func findThreadPointers(mem proc.Memory, maps []proc.Mapping, tids []int) (map[int]uint64, string) {
	type cand struct{ addr, guard uint64 }
	var cands []cand
	for _, m := range maps {
		if len(m.Perms) < 2 || m.Perms[0] != 'r' || m.Perms[1] != 'w' {
			continue
		}
		lo := m.Start
		if m.End-m.Start > scanSmall {
			lo = m.End - scanTop
		}
		buf := make([]byte, m.End-lo)
		if _, err := mem.ReadAt(buf, lo); err != nil {
			continue
		}
		for off := 0; off+0x30 <= len(buf); off += tcbAlign {
			x := lo + uint64(off)
			if le(buf[off:]) == x && le(buf[off+0x10:]) == x {
				cands = append(cands, cand{x, le(buf[off+0x28:])})
			}
		}
	}
	if len(cands) == 0 {
		return nil, "no glibc thread control block (self-pointing TCB) in writable memory"
	}
	// All threads share one stack-protector canary.
	byGuard := map[uint64][]uint64{}
	for _, c := range cands {
		byGuard[c.guard] = append(byGuard[c.guard], c.addr)
	}
	var tcbs []uint64
	for _, a := range byGuard {
		if len(a) > len(tcbs) {
			tcbs = a
		}
	}
	isTid := map[uint32]bool{}
	for _, t := range tids {
		isTid[uint32(t)] = true
	}
	// The offset of the thread id in struct pthread differs between glibc
	// versions: find the one where every TCB holds a distinct id.
	for k := uint64(0x100); k < tidScanEnd; k += 4 {
		out := map[int]uint64{}
		for _, x := range tcbs {
			var b [4]byte
			if _, err := mem.ReadAt(b[:], x+k); err != nil {
				break
			}
			t := binary.LittleEndian.Uint32(b[:])
			if !isTid[t] {
				break
			}
			out[int(t)] = x
		}
		if len(out) == len(tcbs) {
			return out, fmt.Sprintf("glibc TCBs, thread id at +%#x", k)
		}
	}
	return nil, fmt.Sprintf("%d self-pointing TCBs, but no offset holds their thread ids", len(tcbs))
}

func le(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

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
	problem   string // "" when consistent
}

func (l *Layout) checkThreads(mem proc.Memory, maps []proc.Mapping, tps map[int]uint64) error {
	sort.Slice(maps, func(i, j int) bool { return maps[i].Start < maps[j].Start })
	tids := make([]int, 0, len(tps))
	for t := range tps {
		tids = append(tids, t)
	}
	sort.Ints(tids)
	idle, ok := 0, 0
	var bad []string
	var example string
	for _, tid := range tids {
		tp := tps[tid]
		var v threadView
		for range 3 {
			v = l.readThread(mem, maps, tp)
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
			if example == "" {
				example = fmt.Sprintf("e.g. thread %d: slot %#x -> CallThreadState %#x", tid, v.slot, v.cts)
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: thread-local slot fs%+#x: %s", ErrLive, l.TLSOffset, strings.Join(bad, "; "))
	}
	switch {
	case ok > 0:
		l.live("thread-local slot and offsets", fmt.Sprintf("confirmed on %s in Wasm (%s), %d idle", plural(ok, "thread"), example, idle))
	default:
		l.live("thread-local slot", fmt.Sprintf("plausible on %s, all idle; no thread held a CallThreadState, so its offsets were not checked", plural(idle, "thread")))
	}
	return nil
}

// readThread reads and checks one thread's state once.
func (l *Layout) readThread(mem proc.Memory, maps []proc.Mapping, tp uint64) threadView {
	var v threadView
	word := func(a uint64) (uint64, bool) {
		w, err := proc.Word(mem, a)
		return w, err == nil
	}
	var okRead bool
	if v.slot, okRead = word(uint64(int64(tp) + l.TLSOffset)); !okRead {
		v.problem = fmt.Sprintf("slot at %#x unreadable", uint64(int64(tp)+l.TLSOffset))
		return v
	}
	v.cts = v.slot & l.TLSMask
	if v.cts == 0 {
		return v // idle: zero, or only the "initialised" tag
	}
	// The CallThreadState lives on the thread's stack: in the mapping
	// holding the thread's TCB, below it, or in the main stack.
	stack := mappingOf(maps, v.cts)
	if stack == nil || !(stack.Path == "[stack]" || stack.Start <= tp && tp < stack.End && v.cts < tp) {
		v.problem = fmt.Sprintf("slot holds %#x, which is not in the thread's stack", v.slot)
		return v
	}
	// Older frames are at higher addresses: prev points up the same
	// stack; old_state points into it too (the EntryStoreContext can share
	// a frame with the CallThreadState when catch_traps is inlined, so it
	// may sit on either side). The store is on the heap. (VMStoreContext's exit
	// fields are not checked here: Wasmtime leaves stale values in them,
	// possibly from another thread's stack; the JIT trampolines confirm
	// those offsets instead.)
	above := func(a, than uint64) bool { return a > than && a < stack.End }
	cts := v.cts
	for depth := 0; cts != 0 && depth < 64; depth++ {
		st, ok1 := word(cts + uint64(l.CTSStore))
		prev, ok2 := word(cts + uint64(l.CTSPrev))
		if !ok1 || !ok2 {
			v.problem = fmt.Sprintf("CallThreadState %#x unreadable", cts)
			return v
		}
		if st == 0 || st%8 != 0 || mappingOf(maps, st) == nil || mappingOf(maps, st) == stack {
			v.problem = fmt.Sprintf("CallThreadState %#x +%#x holds %#x, not a store pointer", cts, l.CTSStore, st)
			return v
		}
		if prev != 0 && !above(prev, cts) {
			v.problem = fmt.Sprintf("CallThreadState %#x prev (+%#x) holds %#x, not an older CallThreadState", cts, l.CTSPrev, prev)
			return v
		}
		if l.Generation == EntryFP {
			old, ok := word(cts + uint64(l.CTSOld))
			if !ok || old == cts || mappingOf(maps, old) != stack {
				v.problem = fmt.Sprintf("CallThreadState %#x old_state (+%#x) holds %#x, not a saved state on the thread's stack", cts, l.CTSOld, old)
				return v
			}
		}
		cts = prev
	}
	return v
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
		role storeRole
		fl   field
	}{
		"exit FP":  {roleOwnFP, fStoreExitFP},
		"exit PC":  {roleRetAddr, fStoreExitPC},
		"entry FP": {roleOwnFP, fStoreEntry},
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
			fn, err := decodeFunc(f.Symbol, f.Start, code)
			if err != nil {
				continue
			}
			n++
			stores := storesByRole(fn)
			for _, k := range keys {
				w := want[k]
				var offs []int64
				var at uint64
				for _, s := range stores {
					if s.role == w.role && !slices.Contains(offs, s.off) {
						offs = append(offs, s.off)
						at = s.pc
					}
				}
				if len(offs) != 1 {
					return fmt.Errorf("%w: %s stores %d candidate %s values", ErrLive, f.Symbol, len(offs), k)
				}
				if got := uint32(*l.ptr(w.fl)); int64(got) != offs[0] {
					return fmt.Errorf("%w: %s is %#x in the binary's code, but the process's %s stores it at %#x (%s)",
						ErrLive, l.Generation.fieldName(w.fl), got, f.Symbol, offs[0], fn.at(at))
				}
				seen[k] = fn.at(at)
				if fact := l.factNamed(l.Generation.fieldName(w.fl)); fact != nil {
					fact.Check = joinChecks(fact.Check, "live JIT code agrees: "+fn.at(at))
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
