package layout

// Discovery: reading a build's struct offsets out of Wasmtime's own code.
//
// Anchors, per generation (see ../shared/notes/wasmtime-internals.md):
//
// EntryFP (Wasmtime ~28 and later; 37 and 39 here). Backtrace::
// new_with_trap_state (or trace_with_trap_state where it is not inlined)
// walks the CallThreadState list looking for activations of one store:
//
//	loop:  x = x->prev                     self-linked field:   prev
//	       if x->vm_store_context == store  compared to the store: vm_store_context
//	           e = x->old_state             loaded from x, then read: old_state
//	           (pc, fp, entry) = (e->exit_pc, *e->exit_trampoline_fp, e->entry_fp)
//
// and the first activation takes the same three values from the store's
// VMStoreContext. Both tuples meet in the same variables (the loop over
// activations, or the arguments of frame_iterator), which pairs every
// EntryStoreContext field with its VMStoreContext field. The exit FP is
// the pair that is dereferenced (the trampoline's FP points to the Wasm
// FP). The exit PC follows the exit trampoline FP in VMStoreContext, which
// is repr(C) and declares them in that order. The entry FP is the pair the
// walk compares with the frame pointer (fp == trampoline_fp), when that
// comparison is inlined; otherwise the next paired VMStoreContext field.
//
// Seed (Wasmtime 3 to ~25; 3 here). Backtrace::new_with_trap_state and
// trace_with_trap_state call trace_through_wasm once with the values of
// VMRuntimeLimits (behind CallThreadState.limits) and then, following
// prev, with the values saved inline in each CallThreadState: the
// argument positions pair the fields. Their roles come from Wasmtime's
// assembly trampolines: wasm_to_host_trampoline stores %rbp (exit FP) and
// the return address (exit PC), host_to_wasm_trampoline stores %rsp
// (entry SP), each into VMRuntimeLimits.
//
// Thread-local slot: tls::raw::get (37, 39) loads it from the thread
// pointer and clears bit 0 (mov %fs:0,%rax; mov -0x68(%rax),%rax; and
// $-2,%rax); tls::raw::PTR::__getit (3) returns its address (lea).

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// field names one offset of a Layout.
type field int

const (
	fCTSStore field = iota
	fCTSPrev
	fCTSOld
	fSavedExitPC
	fSavedExitFP
	fSavedEntry
	fStoreExitPC
	fStoreExitFP
	fStoreEntry
	numFields
)

// fieldNames are Wasmtime's names for each field, by generation.
var fieldNames = map[Generation][numFields]string{
	EntryFP: {
		"CallThreadState.vm_store_context", "CallThreadState.prev", "CallThreadState.old_state",
		"EntryStoreContext.last_wasm_exit_pc", "EntryStoreContext.last_wasm_exit_trampoline_fp", "EntryStoreContext.last_wasm_entry_fp",
		"VMStoreContext.last_wasm_exit_pc", "VMStoreContext.last_wasm_exit_trampoline_fp", "VMStoreContext.last_wasm_entry_fp",
	},
	Seed: {
		"CallThreadState.limits", "CallThreadState.prev", "",
		"CallThreadState.old_last_wasm_exit_pc", "CallThreadState.old_last_wasm_exit_fp", "CallThreadState.old_last_wasm_entry_sp",
		"VMRuntimeLimits.last_wasm_exit_pc", "VMRuntimeLimits.last_wasm_exit_fp", "VMRuntimeLimits.last_wasm_entry_sp",
	},
}

func (g Generation) fieldName(fl field) string { return fieldNames[g][fl] }

// fields lists the fields a generation uses, in display order.
func (g Generation) fields() []field {
	if g == Seed {
		return []field{fCTSStore, fCTSPrev, fSavedExitFP, fSavedExitPC, fSavedEntry, fStoreExitFP, fStoreExitPC, fStoreEntry}
	}
	return []field{fCTSStore, fCTSPrev, fCTSOld, fSavedExitFP, fSavedExitPC, fSavedEntry, fStoreExitFP, fStoreExitPC, fStoreEntry}
}

func (l *Layout) ptr(fl field) *uint32 {
	switch fl {
	case fCTSStore:
		return &l.CTSStore
	case fCTSPrev:
		return &l.CTSPrev
	case fCTSOld:
		return &l.CTSOld
	case fSavedExitPC:
		return &l.SavedExitPC
	case fSavedExitFP:
		return &l.SavedExitFP
	case fSavedEntry:
		return &l.SavedEntry
	case fStoreExitPC:
		return &l.StoreExitPC
	case fStoreExitFP:
		return &l.StoreExitFP
	case fStoreEntry:
		return &l.StoreEntry
	}
	panic("bad field")
}

// finding is one offset and the instruction it was read from.
type finding struct {
	off int64
	how string
}

// decoded is what the code of one build says.
type decoded struct {
	gen    Generation
	genHow string
	fields [numFields]*finding
}

func (d *decoded) set(fl field, off int64, how string) {
	d.fields[fl] = &finding{off, how}
}

// errPattern wraps a reason why a function's code was not recognised.
type errPattern struct{ fn, why string }

func (e *errPattern) Error() string { return e.fn + ": pattern not recognised: " + e.why }

// discoverOffsets decodes the struct offsets from the binary's backtrace
// code, deciding the generation by which pattern the code follows.
func discoverOffsets(b *exeFile) (*decoded, error) {
	backtrace := b.funcs([]string{"new_with_trap_state", "trace_with_trap_state"}, func(n string) bool {
		return suffix("backtrace::Backtrace::new_with_trap_state")(n) || suffix("backtrace::Backtrace::trace_with_trap_state")(n)
	})
	if len(backtrace) == 0 {
		return nil, errors.New("function Backtrace::new_with_trap_state (or trace_with_trap_state) not found among the symbols")
	}
	var results []*decoded
	var whyNot []string
	for _, s := range backtrace {
		f, err := b.decode(s)
		if err != nil {
			whyNot = append(whyNot, err.Error())
			continue
		}
		d, errE := matchEntryFP(f)
		if errE == nil {
			results = append(results, d)
			continue
		}
		d, errS := matchSeed(b, f)
		if errS == nil {
			results = append(results, d)
			continue
		}
		whyNot = append(whyNot, fmt.Sprintf("%s at %#x follows neither generation's pattern (entry-FP: %s; seed: %s)",
			short(f.name), f.addr, stripFn(errE), stripFn(errS)))
	}
	if len(results) == 0 {
		return nil, errors.New(strings.Join(whyNot, "; "))
	}
	// Every function that follows a pattern must say the same thing.
	first := results[0]
	for _, d := range results[1:] {
		if d.gen != first.gen {
			return nil, fmt.Errorf("%s and %s disagree on the generation", first.genHow, d.genHow)
		}
		for fl := range numFields {
			a, c := first.fields[fl], d.fields[fl]
			if a != nil && c != nil && a.off != c.off {
				return nil, fmt.Errorf("%s: %#x (%s) but %#x (%s)", first.gen.fieldName(field(fl)), a.off, a.how, c.off, c.how)
			}
			if a == nil && c != nil {
				first.fields[fl] = c
			}
		}
	}
	return first, nil
}

func stripFn(err error) string {
	var p *errPattern
	if errors.As(err, &p) {
		return p.why
	}
	return err.Error()
}

// lastIdent is the last identifier of a path: what its mangled name
// surely contains.
func lastIdent(path string) string {
	if i := strings.LastIndex(path, "::"); i >= 0 {
		return path[i+2:]
	}
	return path
}

// short drops the module path of a demangled name.
func short(name string) string {
	parts := strings.Split(name, "::")
	if len(parts) > 2 {
		return strings.Join(parts[len(parts)-2:], "::")
	}
	return name
}

// ---- queries over an analysed function ----

// concrete lists the values of s that name something (not unknown, not a
// constant).
func (f *fn) concrete(s vset) []int32 {
	var out []int32
	for _, v := range s {
		switch f.exprs[v].op {
		case opTop, opUnk, opConst:
		default:
			out = append(out, v)
		}
	}
	return out
}

// loadPC returns the first instruction that loaded base+off, or 0.
func (f *fn) loadPC(bases map[int32]bool, off int64) uint64 {
	var pc uint64
	for _, l := range f.loads {
		if bases[l.base] && l.off == off && (pc == 0 || l.pc < pc) {
			pc = l.pc
		}
	}
	return pc
}

// ---- entry-FP generation ----

func matchEntryFP(f *fn) (*decoded, error) {
	fail := func(format string, a ...any) (*decoded, error) {
		return nil, &errPattern{short(f.name), fmt.Sprintf(format, a...)}
	}
	// 1. The list walk: a field of x compared with the store, where x
	// follows a self-linked field.
	type walk struct{ store, prev int64 }
	walks := map[walk]uint64{}
	cts := map[int32]bool{}   // the CallThreadState values: chains and their heads
	store := map[int32]bool{} // the VMStoreContext pointer
	for _, c := range f.cmps {
		for _, sides := range [2][2]vset{{c.a, c.b}, {c.b, c.a}} {
			others := f.concrete(sides[1])
			for _, v := range sides[0] {
				x := f.exprs[v]
				if x.op != opLoad || len(others) == 0 {
					continue
				}
				ch := f.exprs[x.a]
				if ch.op != opChain || ch.off == x.off {
					continue
				}
				w := walk{x.off, ch.off}
				if _, ok := walks[w]; !ok {
					walks[w] = c.pc
				}
				cts[x.a], cts[ch.a] = true, true
				for _, o := range others {
					store[o] = true
				}
			}
		}
	}
	if len(walks) == 0 {
		return fail("no comparison of a CallThreadState field with the store while following a self-linked field")
	}
	if len(walks) > 1 {
		return fail("%d different list walks", len(walks))
	}
	var w walk
	var cmpPC uint64
	for k, pc := range walks {
		w, cmpPC = k, pc
	}
	d := &decoded{gen: EntryFP}
	d.set(fCTSStore, w.store, "compared with the store: "+f.at(cmpPC))
	prevPC := f.loadPC(chainsOf(f, cts, w.prev), w.prev)
	d.set(fCTSPrev, w.prev, "followed as a list: "+f.at(prevPC))

	// 2. old_state: a pointer loaded from a CallThreadState whose
	// target's fields are read.
	esc := map[int64]map[int32]bool{}
	for _, l := range f.loads {
		if cts[l.base] && l.off != w.store && l.off != w.prev {
			if esc[l.off] == nil {
				esc[l.off] = map[int32]bool{}
			}
			esc[l.off][l.val] = true
		}
	}
	var oldOff int64 = -1
	for q, vals := range esc {
		fields := map[int64]bool{}
		for _, l := range f.loads {
			if vals[l.base] {
				fields[l.off] = true
			}
		}
		if len(fields) >= 3 {
			if oldOff >= 0 {
				return fail("two CallThreadState fields (%#x, %#x) both look like old_state", oldOff, q)
			}
			oldOff = q
		}
	}
	if oldOff < 0 {
		return fail("no CallThreadState field is followed to a saved-state structure (old_state)")
	}
	escVals := esc[oldOff]
	d.set(fCTSOld, oldOff, "followed to the saved state: "+f.at(f.loadPC(cts, oldOff)))

	// 3. Pair the store's fields with the saved state's.
	pairs, err := pairFields(f, store, escVals)
	if err != nil {
		return fail("%v", err)
	}
	// 4. Roles.
	var fp *fieldPair
	for i := range pairs {
		if pairs[i].deref {
			if fp != nil {
				return fail("two dereferenced pairs (%#x, %#x)", fp.store, pairs[i].store)
			}
			fp = &pairs[i]
		}
	}
	if fp == nil {
		return fail("no dereferenced exit trampoline FP among the paired fields")
	}
	d.set(fStoreExitFP, fp.store, "dereferenced, like the saved value at "+hex64(fp.saved)+": "+f.at(fp.storePC))
	d.set(fSavedExitFP, fp.saved, "dereferenced, like VMStoreContext "+hex64(fp.store)+": "+f.at(fp.savedPC))
	pc := findPair(pairs, fp.store+8)
	if pc == nil {
		return fail("no paired field at exit trampoline FP + 8 (VMStoreContext's exit PC)")
	}
	d.set(fStoreExitPC, pc.store, "the field after the exit trampoline FP (repr(C)), paired with the saved value at "+hex64(pc.saved)+": "+f.at(pc.storePC))
	d.set(fSavedExitPC, pc.saved, "meets VMStoreContext "+hex64(pc.store)+" (exit PC) in one variable: "+f.at(pc.savedPC))

	// Entry FP: compared with the frame pointer, if the walk is inlined.
	var entry *fieldPair
	entryHow := ""
	for i := range pairs {
		p := &pairs[i]
		if p.deref || p == pc {
			continue
		}
		if at := comparedWith(f, p, fp); at != 0 {
			if entry != nil && entry != p {
				return fail("two fields compared with the frame pointer")
			}
			entry, entryHow = p, "compared with the frame pointer (fp == trampoline_fp): "+f.at(at)
		}
	}
	if entry == nil {
		for i := range pairs {
			p := &pairs[i]
			if !p.deref && p.store > pc.store && (entry == nil || p.store < entry.store) {
				entry = p
			}
		}
		if entry == nil {
			return fail("no paired field after the exit PC (VMStoreContext's entry FP)")
		}
		entryHow = "the next paired VMStoreContext field after the exit PC (repr(C) order): " + f.at(entry.storePC)
	}
	d.set(fStoreEntry, entry.store, entryHow)
	d.set(fSavedEntry, entry.saved, "meets VMStoreContext "+hex64(entry.store)+" (entry FP) in one variable: "+f.at(entry.savedPC))
	d.genHow = fmt.Sprintf("%s at %#x saves the previous activation's state behind CallThreadState.old_state (entry-FP generation)", short(f.name), f.addr)
	return d, nil
}

func hex64(v int64) string { return fmt.Sprintf("%#x", v) }

// chainsOf returns the chain values of cts that follow offset p.
func chainsOf(f *fn, cts map[int32]bool, p int64) map[int32]bool {
	out := map[int32]bool{}
	for v := range cts {
		if x := f.exprs[v]; x.op == opChain && x.off == p {
			out[v] = true
			out[x.a] = true
		}
	}
	for _, l := range f.loads {
		if out[l.val] && l.off == p {
			out[l.base] = true
		}
	}
	return out
}

// fieldPair is a VMStoreContext field and the EntryStoreContext field
// that holds the same role.
type fieldPair struct {
	store, saved     int64
	deref            bool
	storePC, savedPC uint64 // where each was loaded
	meetPC           uint64 // where they meet
	storeVals        []int32
	savedVals        []int32
}

// side classifies v as a field of one of two structures: load(base+off),
// or load(load(base+off)) (deref).
func side(f *fn, v int32, bases map[int32]bool) (off int64, deref, ok bool) {
	x := f.exprs[v]
	if x.op != opLoad {
		return 0, false, false
	}
	if bases[x.a] {
		return x.off, false, true
	}
	if y := f.exprs[x.a]; x.off == 0 && y.op == opLoad && bases[y.a] {
		return y.off, true, true
	}
	return 0, false, false
}

func pairFields(f *fn, store, saved map[int32]bool) ([]fieldPair, error) {
	type key struct {
		off   int64
		deref bool
	}
	var sets []meetRec
	sets = append(sets, f.meets...)
	for _, c := range f.calls {
		for _, a := range c.args {
			sets = append(sets, meetRec{pc: c.pc, vals: a})
		}
	}
	byStore := map[int64]*fieldPair{}
	for _, m := range sets {
		var sk, vk []key
		var sv, vv []int32
		for _, v := range m.vals {
			if off, deref, ok := side(f, v, store); ok {
				if k := (key{off, deref}); !slices.Contains(sk, k) {
					sk = append(sk, k)
				}
				sv = append(sv, v)
			}
			if off, deref, ok := side(f, v, saved); ok {
				if k := (key{off, deref}); !slices.Contains(vk, k) {
					vk = append(vk, k)
				}
				vv = append(vv, v)
			}
		}
		if len(sk) != 1 || len(vk) != 1 || sk[0].deref != vk[0].deref {
			continue
		}
		p := byStore[sk[0].off]
		if p == nil {
			p = &fieldPair{store: sk[0].off, saved: vk[0].off, deref: sk[0].deref, meetPC: m.pc}
			byStore[sk[0].off] = p
		} else if p.saved != vk[0].off {
			return nil, fmt.Errorf("VMStoreContext field %#x meets both saved fields %#x and %#x", p.store, p.saved, vk[0].off)
		}
		p.storeVals = appendNew(p.storeVals, sv...)
		p.savedVals = appendNew(p.savedVals, vv...)
	}
	var out []fieldPair
	seenSaved := map[int64]int64{}
	for _, p := range byStore {
		if s, ok := seenSaved[p.saved]; ok {
			return nil, fmt.Errorf("saved field %#x meets both VMStoreContext fields %#x and %#x", p.saved, s, p.store)
		}
		seenSaved[p.saved] = p.store
		p.storePC = firstOrigin(f, p.storeVals)
		p.savedPC = firstOrigin(f, p.savedVals)
		out = append(out, *p)
	}
	if len(out) == 0 {
		return nil, errors.New("no VMStoreContext field meets a saved field")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].store < out[j].store })
	return out, nil
}

func appendNew(s []int32, vs ...int32) []int32 {
	for _, v := range vs {
		if !slices.Contains(s, v) {
			s = append(s, v)
		}
	}
	return s
}

// firstOrigin is the lowest address that produced one of vals (or, for a
// dereference, the load it dereferenced).
func firstOrigin(f *fn, vals []int32) uint64 {
	var pc uint64
	for _, v := range vals {
		x := f.exprs[v]
		cand := []int32{v}
		if x.op == opLoad && x.off == 0 {
			cand = append(cand, x.a)
		}
		for _, c := range cand {
			if p, ok := f.origin[c]; ok && (pc == 0 || p < pc) {
				pc = p
			}
		}
	}
	return pc
}

func findPair(pairs []fieldPair, store int64) *fieldPair {
	for i := range pairs {
		if pairs[i].store == store && !pairs[i].deref {
			return &pairs[i]
		}
	}
	return nil
}

// comparedWith returns the address of a comparison between p's values and
// fp's, or 0.
func comparedWith(f *fn, p, fp *fieldPair) uint64 {
	has := func(s vset, vals []int32) bool {
		for _, v := range vals {
			if slices.Contains(s, v) {
				return true
			}
		}
		return false
	}
	for _, c := range f.cmps {
		if has(c.a, p.storeVals) && has(c.b, fp.storeVals) || has(c.b, p.storeVals) && has(c.a, fp.storeVals) {
			return c.pc
		}
	}
	return 0
}

// ---- seed generation ----

func matchSeed(b *exeFile, f *fn) (*decoded, error) {
	fail := func(format string, a ...any) (*decoded, error) {
		return nil, &errPattern{short(f.name), fmt.Sprintf(format, a...)}
	}
	// The CallThreadState list: chains used as load bases.
	type posKey struct {
		target uint64
		pos    int
	}
	type seedWalk struct {
		prev, limits int64
		saved        map[posKey]int64 // argument position -> saved field
		limitsArgs   map[posKey]int64 // argument position -> VMRuntimeLimits field
		savedPC      map[posKey]uint64
		limitsPC     map[posKey]uint64
		prevPC       uint64
		limitsPC0    uint64
	}
	var found []*seedWalk
	for ci, ch := range f.exprs {
		if ch.op != opChain {
			continue
		}
		c := int32(ci)
		fam := map[int32]bool{c: true, ch.a: true}
		sw := &seedWalk{prev: ch.off, limits: -1, saved: map[posKey]int64{}, limitsArgs: map[posKey]int64{},
			savedPC: map[posKey]uint64{}, limitsPC: map[posKey]uint64{}}
		ambiguous := false
		for _, call := range f.calls {
			if call.target == 0 {
				continue
			}
			for k, a := range call.args {
				pk := posKey{call.target, k}
				for _, v := range a {
					x := f.exprs[v]
					if x.op != opLoad {
						continue
					}
					if fam[x.a] && x.off != ch.off {
						if o, ok := sw.saved[pk]; ok && o != x.off {
							ambiguous = true
						}
						sw.saved[pk] = x.off
						sw.savedPC[pk] = f.origin[v]
						continue
					}
					if y := f.exprs[x.a]; y.op == opLoad && fam[y.a] && y.off != ch.off {
						if sw.limits >= 0 && sw.limits != y.off {
							ambiguous = true
						}
						sw.limits = y.off
						sw.limitsPC0 = f.origin[x.a]
						if o, ok := sw.limitsArgs[pk]; ok && o != x.off {
							ambiguous = true
						}
						sw.limitsArgs[pk] = x.off
						sw.limitsPC[pk] = f.origin[v]
					}
				}
			}
		}
		if ambiguous || sw.limits < 0 {
			continue
		}
		n := 0
		for pk := range sw.saved {
			if _, ok := sw.limitsArgs[pk]; ok {
				n++
			}
		}
		if n >= 3 {
			sw.prevPC = f.loadPC(map[int32]bool{c: true, ch.a: true}, ch.off)
			found = append(found, sw)
		}
	}
	if len(found) == 0 {
		return fail("no call that receives fields of VMRuntimeLimits and, in a loop over a self-linked list, fields of CallThreadState in the same argument positions")
	}
	sw := found[0]
	for _, o := range found[1:] {
		if o.prev != sw.prev || o.limits != sw.limits {
			return fail("two different list walks")
		}
	}
	// Roles of VMRuntimeLimits' fields, from the assembly trampolines.
	roles, err := trampolineRoles(b)
	if err != nil {
		return fail("%v", err)
	}
	d := &decoded{gen: Seed}
	d.set(fCTSPrev, sw.prev, "followed as a list: "+f.at(sw.prevPC))
	d.set(fCTSStore, sw.limits, "its fields go to the same calls as the saved ones: "+f.at(sw.limitsPC0))
	for _, r := range []struct {
		store, saved field
		off          *finding
	}{{fStoreExitFP, fSavedExitFP, roles.exitFP}, {fStoreExitPC, fSavedExitPC, roles.exitPC}, {fStoreEntry, fSavedEntry, roles.entrySP}} {
		d.fields[r.store] = r.off
		for pk, a := range sw.limitsArgs {
			s, ok := sw.saved[pk]
			if !ok || a != r.off.off {
				continue
			}
			if prev := d.fields[r.saved]; prev != nil && prev.off != s {
				return fail("%s pairs with both %#x and %#x", fieldNames[Seed][r.store], prev.off, s)
			}
			d.set(r.saved, s, fmt.Sprintf("passed in argument %d like VMRuntimeLimits %#x: %s", pk.pos+1, a, f.at(sw.savedPC[pk])))
		}
		if d.fields[r.saved] == nil {
			return fail("no saved CallThreadState field pairs with %s (%#x)", fieldNames[Seed][r.store], r.off.off)
		}
	}
	d.genHow = fmt.Sprintf("%s at %#x passes values saved inline in CallThreadState (seed generation)", short(f.name), f.addr)
	return d, nil
}

// roles is what the trampolines say about VMRuntimeLimits.
type roles struct {
	exitFP, exitPC, entrySP *finding
}

// trampolineRoles reads the stores of Wasmtime 3's assembly trampolines.
func trampolineRoles(b *exeFile) (*roles, error) {
	get := func(name string) (*fn, error) {
		ss := b.funcs([]string{name}, exactly(name))
		if len(ss) != 1 {
			return nil, fmt.Errorf("function %s not found", name)
		}
		return b.decode(ss[0])
	}
	exit, err := get("wasm_to_host_trampoline")
	if err != nil {
		return nil, err
	}
	entry, err := get("host_to_wasm_trampoline")
	if err != nil {
		return nil, err
	}
	r := &roles{}
	for _, st := range storesByRole(exit) {
		switch st.role {
		case roleCallerFP:
			r.exitFP = &finding{st.off, "stores %rbp: " + exit.at(st.pc)}
		case roleRetAddr:
			r.exitPC = &finding{st.off, "stores the return address: " + exit.at(st.pc)}
		}
	}
	for _, st := range storesByRole(entry) {
		if st.role == roleSP {
			r.entrySP = &finding{st.off, "stores %rsp: " + entry.at(st.pc)}
		}
	}
	switch {
	case r.exitFP == nil:
		return nil, errors.New("wasm_to_host_trampoline stores no frame pointer")
	case r.exitPC == nil:
		return nil, errors.New("wasm_to_host_trampoline stores no return address")
	case r.entrySP == nil:
		return nil, errors.New("host_to_wasm_trampoline stores no stack pointer")
	}
	return r, nil
}

// What a trampoline stores into the runtime's state.
type storeRole int

const (
	roleCallerFP storeRole = iota + 1 // the caller's frame pointer (%rbp at entry)
	roleOwnFP                         // this function's frame pointer (after push %rbp; mov %rsp,%rbp)
	roleSP                            // a stack pointer
	roleRetAddr                       // the return address
)

type roleStore struct {
	role storeRole
	off  int64
	base int32
	pc   uint64
}

// storesByRole classifies the 8-byte stores of f through a pointer loaded
// from an argument (the VMRuntimeLimits or VMStoreContext pointer).
func storesByRole(f *fn) []roleStore {
	var out []roleStore
	for _, st := range f.stores {
		a := f.exprs[st.addr]
		if st.bytes != 8 || a.op != opAdd || f.exprs[a.a].op != opLoad {
			continue
		}
		for _, v := range st.vals {
			x := f.exprs[v]
			var role storeRole
			switch {
			case f.isEntry(v, regRBP):
				role = roleCallerFP
			case f.isEntry(v, regRetAddr):
				role = roleRetAddr
			case f.isEntry(v, regRSP):
				role = roleSP
			case x.op == opAdd && f.isEntry(x.a, regRSP):
				role = roleSP
				if x.off == -8 && f.ownFramePushed() {
					role = roleOwnFP
				}
			default:
				continue
			}
			out = append(out, roleStore{role: role, off: a.off, base: a.a, pc: st.pc})
		}
	}
	return out
}

// ownFramePushed reports whether f starts with push %rbp; mov %rsp,%rbp.
func (f *fn) ownFramePushed() bool {
	if len(f.insns) < 2 {
		return false
	}
	return f.text(f.insns[0].pc) == "push %rbp" && f.text(f.insns[1].pc) == "mov %rsp,%rbp"
}

// ---- thread-local slot ----

// tlsFinding is the slot of the CallThreadState pointer as the code
// addresses it: relative to the thread pointer (static TLS, in an
// executable), or, in a shared library, relative to the module's TLS block
// that __tls_get_addr returns (dynamic: index is the tls_index's address).
type tlsFinding struct {
	off     int64
	dynamic bool
	index   uint64
	how     string
	mask    uint64
	maskHow string
}

func (t *tlsFinding) where() string {
	if t.dynamic {
		return fmt.Sprintf("TLS block%+#x", t.off)
	}
	return fmt.Sprintf("fs%+#x", t.off)
}

// tlsFromCode decodes Wasmtime's TLS accessor: tls::raw::get (37, 39:
// loads the slot and masks bit 0) or tls::raw::PTR::__getit (3: returns
// the slot's address).
func tlsFromCode(b *exeFile) (*tlsFinding, error) {
	var found *tlsFinding
	for _, name := range []string{"traphandlers::tls::raw::get", "traphandlers::tls::raw::PTR::__getit"} {
		for _, s := range b.funcs([]string{lastIdent(name)}, suffix(name)) {
			f, err := b.decode(s)
			if err != nil {
				return nil, err
			}
			if len(f.tps) != 1 {
				return nil, &errPattern{short(f.name), fmt.Sprintf("%d thread-local values, want 1", len(f.tps))}
			}
			tp := f.tps[0]
			t := &tlsFinding{off: tp.off, how: "decoded from " + f.at(tp.pc), mask: ^uint64(0), maskHow: "the slot's address is returned, no tag bits: " + f.at(tp.pc)}
			if tp.index != 0 {
				t.dynamic, t.index = true, tp.index
				t.off += b.tlsIndexes[tp.index]
				t.how = fmt.Sprintf("decoded from %s, after __tls_get_addr(&tls_index at %#x)", f.at(tp.pc), tp.index)
			}
			if tp.load {
				t.maskHow = "loaded and used unmasked: " + f.at(tp.pc)
				for _, a := range f.ands {
					if len(a.vals) == 1 && f.exprs[a.vals[0]].op == opLoad && (f.isEntry(f.exprs[a.vals[0]].a, regTP) || f.isEntry(f.exprs[a.vals[0]].a, regTLS)) {
						t.mask = uint64(a.imm)
						t.maskHow = "masked after loading: " + f.at(a.pc)
					}
				}
			}
			if found != nil && (found.off != t.off || found.mask != t.mask || found.dynamic != t.dynamic) {
				return nil, fmt.Errorf("TLS accessors disagree: %s (%s) and %s (%s)", found.where(), found.how, t.where(), t.how)
			}
			if found == nil {
				found = t
			}
		}
	}
	if found == nil {
		return nil, errors.New("function tls::raw::get (or tls::raw::PTR::__getit) not found")
	}
	return found, nil
}

// tlsGetPattern is the start of Wasmtime 37/39's tls::raw::get, located
// without symbols: the thread pointer's load (its general-dynamic form,
// relaxed by the linker, carries three 0x66 prefixes).
var fsLoadRAX = []byte{0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0} // mov %fs:0,%rax

// tlsFromPattern scans executable code for the accessor's shape, mov
// %fs:0,%rax; mov d(%rax),%rax; and $-2,%rax, and returns d when all
// occurrences agree. It works on stripped binaries.
func tlsFromPattern(b *exeFile) (*tlsFinding, error) {
	var found *tlsFinding
	n := 0
	for _, s := range b.f.Sections {
		if s.Flags&elf.SHF_EXECINSTR == 0 || s.Type != elf.SHT_PROGBITS || s.Size > 1<<30 {
			continue
		}
		data, err := s.Data()
		if err != nil {
			continue
		}
		for i := 0; ; {
			j := indexFrom(data, fsLoadRAX, i)
			if j < 0 {
				break
			}
			i = j + 1
			f, err := decodeSnippet("tls::raw::get", s.Addr+uint64(j), data[j:], 3)
			if err != nil {
				continue
			}
			if len(f.tps) == 0 || !f.tps[0].load || len(f.ands) == 0 || f.ands[0].imm != -2 || f.insns[2].inst.Op != x86asm.AND {
				continue
			}
			n++
			t := &tlsFinding{off: f.tps[0].off, mask: ^uint64(1),
				how:     fmt.Sprintf("code pattern at %#x: mov %%fs:0,%%rax; %s; %s", f.insns[1].pc, f.text(f.insns[1].pc), f.text(f.insns[2].pc)),
				maskHow: fmt.Sprintf("code pattern at %#x: %s", f.insns[2].pc, f.text(f.insns[2].pc))}
			if found != nil && found.off != t.off {
				return nil, fmt.Errorf("the accessor's pattern occurs with different offsets (fs%+#x, fs%+#x)", found.off, t.off)
			}
			if found == nil {
				found = t
			}
		}
	}
	if found == nil {
		return nil, errors.New("the TLS accessor's code pattern (mov %fs:0,%rax; mov d(%rax),%rax; and $-2,%rax) was not found")
	}
	if n > 1 {
		found.how += fmt.Sprintf(" (%d occurrences, all agree)", n)
	}
	return found, nil
}

func indexFrom(data, sep []byte, from int) int {
	if from >= len(data) {
		return -1
	}
	k := bytes.Index(data[from:], sep)
	if k < 0 {
		return -1
	}
	return from + k
}
