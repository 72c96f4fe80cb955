package x86

// The matchers of Wasmtime's backtrace code: which values of an analysed
// function (interp.go) are the CallThreadState list, the store's fields
// and the saved ones, per generation. See the package comment for the
// shapes they recognise.

import (
	"errors"
	"fmt"
	"slices"
	"sort"
)

// errPattern wraps a reason why a function's code was not recognised.
type errPattern struct{ fn, why string }

func (e *errPattern) Error() string { return e.fn + ": pattern not recognised: " + e.why }

func stripFn(err error) string {
	var p *errPattern
	if errors.As(err, &p) {
		return p.why
	}
	return err.Error()
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

func matchEntryFP(f *fn) (*Offsets, error) {
	fail := func(format string, a ...any) (*Offsets, error) {
		return nil, &errPattern{f.name, fmt.Sprintf(format, a...)}
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
	d := &Offsets{Pattern: EntryFP}
	d.set(CTSStore, w.store, "compared with the store: "+f.at(cmpPC))
	prevPC := f.loadPC(chainsOf(f, cts, w.prev), w.prev)
	d.set(CTSPrev, w.prev, "followed as a list: "+f.at(prevPC))

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
	d.set(CTSOld, oldOff, "followed to the saved state: "+f.at(f.loadPC(cts, oldOff)))

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
	d.set(StoreExitFP, fp.store, "dereferenced, like the saved value at "+hex64(fp.saved)+": "+f.at(fp.storePC))
	d.set(SavedExitFP, fp.saved, "dereferenced, like VMStoreContext "+hex64(fp.store)+": "+f.at(fp.savedPC))
	pc := findPair(pairs, fp.store+8)
	if pc == nil {
		return fail("no paired field at exit trampoline FP + 8 (VMStoreContext's exit PC)")
	}
	d.set(StoreExitPC, pc.store, "the field after the exit trampoline FP (repr(C)), paired with the saved value at "+hex64(pc.saved)+": "+f.at(pc.storePC))
	d.set(SavedExitPC, pc.saved, "meets VMStoreContext "+hex64(pc.store)+" (exit PC) in one variable: "+f.at(pc.savedPC))

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
	d.set(StoreEntry, entry.store, entryHow)
	d.set(SavedEntry, entry.saved, "meets VMStoreContext "+hex64(entry.store)+" (entry FP) in one variable: "+f.at(entry.savedPC))
	d.How = fmt.Sprintf("%s at %#x saves the previous activation's state behind CallThreadState.old_state (entry-FP generation)", f.name, f.addr)
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

func matchSeed(f *fn, tramp Trampolines) (*Offsets, error) {
	fail := func(format string, a ...any) (*Offsets, error) {
		return nil, &errPattern{f.name, fmt.Sprintf(format, a...)}
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
	roles, err := seedRoles(tramp)
	if err != nil {
		return fail("%v", err)
	}
	d := &Offsets{Pattern: Seed}
	d.set(CTSPrev, sw.prev, "followed as a list: "+f.at(sw.prevPC))
	d.set(CTSStore, sw.limits, "its fields go to the same calls as the saved ones: "+f.at(sw.limitsPC0))
	for _, r := range []struct {
		store, saved Field
		off          *Found
		name         string
	}{{StoreExitFP, SavedExitFP, roles.exitFP, "exit FP"}, {StoreExitPC, SavedExitPC, roles.exitPC, "exit PC"}, {StoreEntry, SavedEntry, roles.entrySP, "entry SP"}} {
		d.Fields[r.store] = r.off
		for pk, a := range sw.limitsArgs {
			s, ok := sw.saved[pk]
			if !ok || a != r.off.Off {
				continue
			}
			if prev := d.Fields[r.saved]; prev != nil && prev.Off != s {
				return fail("VMRuntimeLimits' %s pairs with both %#x and %#x", r.name, prev.Off, s)
			}
			d.set(r.saved, s, fmt.Sprintf("passed in argument %d like VMRuntimeLimits %#x: %s", pk.pos+1, a, f.at(sw.savedPC[pk])))
		}
		if d.Fields[r.saved] == nil {
			return fail("no saved CallThreadState field pairs with VMRuntimeLimits' %s (%#x)", r.name, r.off.Off)
		}
	}
	d.How = fmt.Sprintf("%s at %#x passes values saved inline in CallThreadState (seed generation)", f.name, f.addr)
	return d, nil
}

// roles is what the trampolines say about VMRuntimeLimits.
type roles struct {
	exitFP, exitPC, entrySP *Found
}

// seedRoles reads the stores of Wasmtime 3's assembly trampolines.
func seedRoles(tramp Trampolines) (*roles, error) {
	if tramp == nil {
		return nil, errors.New("no trampolines to read VMRuntimeLimits' fields from")
	}
	toHost, toWasm, err := tramp()
	if err != nil {
		return nil, err
	}
	exit, err := decode(toHost, 0)
	if err != nil {
		return nil, err
	}
	entry, err := decode(toWasm, 0)
	if err != nil {
		return nil, err
	}
	r := &roles{}
	for _, st := range storesByRole(exit) {
		switch st.role {
		case CallerFP:
			r.exitFP = &Found{st.off, "stores %rbp: " + exit.at(st.pc)}
		case RetAddr:
			r.exitPC = &Found{st.off, "stores the return address: " + exit.at(st.pc)}
		}
	}
	for _, st := range storesByRole(entry) {
		if st.role == SP {
			r.entrySP = &Found{st.off, "stores %rsp: " + entry.at(st.pc)}
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
