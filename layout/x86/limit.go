package x86

// The stack-limit matcher: where EntryStoreContext keeps its
// stack_limit: Option<usize>, read from the code that restores it
// (EntryStoreContext::exit_wasm, inlined with enter_wasm and catch_traps
// into func::invoke_wasm_and_catch_traps in Wasmtime 37 and 39):
//
//	CallThreadState cts (a frame object): passed to a call (tls::raw::replace),
//	    cts.prev written, cts.old_state = &esc
//	EntryStoreContext esc (a frame object):
//	    esc.stack_limit = Some(prev limit) or None on entry (tag 0 or 1)
//	    on exit:  if esc.stack_limit.tag != 0 { vmsc.stack_limit = esc.stack_limit.value }
//	              vmsc.last_wasm_exit_pc = esc.last_wasm_exit_pc, ...
//
// as in 39: testb $0x1,0x110(%rsp); je skip; mov 0x118(%rsp),%r8;
// mov %r8,0x10(%rsi); skip: ... movdqu %xmm1,0x28(%rsi) (the exit
// trampoline FP and exit PC, at VMStoreContext+0x28 and +0x30).
//
// The EntryStoreContext is the frame object whose address the code stores
// into CallThreadState.old_state, which locates it; its tag word is the one
// tested, its value word the one loaded when the test says Some; the store
// of that value goes through the pointer that the same code also restores
// the exit PC through (VMStoreContext). Every offset needed for that is
// already known from the backtrace code (Offsets).

import (
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// Limit is where an EntryStoreContext keeps the stack_limit it restores.
type Limit struct {
	Tag   Found // the Option's tag word (1 = Some), from the EntryStoreContext
	Value Found // its value word
	Store Found // the VMStoreContext field the value is restored into
	How   string
	// Entry-side evidence, where the interpreter sees it ("" otherwise):
	// the instruction that sets the tag to 0 or 1, and the one that reads
	// the value saved from the VMStoreContext field it is restored to.
	TagSet, ValueSaved string
}

// StackLimit reads EntryStoreContext.stack_limit from a function into
// which EntryStoreContext::exit_wasm is inlined (invoke_wasm_and_catch_traps),
// given the offsets already decoded from the backtrace code
// (CallThreadState.prev and .old_state, VMStoreContext.last_wasm_exit_pc).
// An error says which part of the shape is missing.
func StackLimit(c Code, known *Offsets) (*Limit, error) {
	if known == nil || known.Pattern != EntryFP || known.Fields[CTSPrev] == nil || known.Fields[CTSOld] == nil || known.Fields[StoreExitPC] == nil {
		return nil, errors.New("the stack limit is read only with the entry-FP generation's CallThreadState and VMStoreContext offsets")
	}
	f, err := decode(c, 0)
	if err != nil {
		return nil, err
	}
	fail := func(format string, a ...any) (*Limit, error) {
		return nil, &errPattern{f.name, fmt.Sprintf(format, a...)}
	}
	esc, err := f.frameESC(known.Fields[CTSPrev].Off, known.Fields[CTSOld].Off)
	if err != nil {
		return fail("%v", err)
	}
	var found []*Limit
	var whyNot string
	for _, t := range f.mems {
		k, ok := f.slotAddr(t.addrs)
		if !ok || t.write || k < esc.off || k >= esc.off+maxESC {
			continue
		}
		lim, why := f.limitRestore(t, esc, known)
		if lim == nil {
			if why != "" && whyNot == "" {
				whyNot = why
			}
			continue
		}
		if len(found) > 0 && (found[0].Tag.Off != lim.Tag.Off || found[0].Value.Off != lim.Value.Off || found[0].Store.Off != lim.Store.Off) {
			return fail("two different stack-limit restores (tag +%#x, value +%#x; tag +%#x, value +%#x)",
				found[0].Tag.Off, found[0].Value.Off, lim.Tag.Off, lim.Value.Off)
		}
		found = append(found, lim)
	}
	if len(found) == 0 {
		if whyNot == "" {
			whyNot = "no word of the EntryStoreContext is tested and then, when set, stored into the store's VMStoreContext"
		}
		return fail("%s (the EntryStoreContext: %s)", whyNot, f.at(esc.oldPC))
	}
	return found[0], nil
}

// maxESC bounds an EntryStoreContext's size (it is about 0x50 bytes).
const maxESC = 0x100

// frameObj is the EntryStoreContext in the function's frame, found through
// the CallThreadState that points to it.
type frameObj struct {
	off           int64 // from the SP at function entry
	cts           int64
	oldPC, prevPC uint64
	callPC        uint64
}

// slotAddr reports whether addrs is the one stack slot entry SP + k.
func (f *fn) slotAddr(addrs vset) (int64, bool) {
	if len(addrs) != 1 {
		return 0, false
	}
	return f.slotOf(addrs[0])
}

// frameESC finds the frame object whose address is stored into a
// CallThreadState's old_state, where the CallThreadState is a frame object
// too: passed to a call by address, with its prev field written.
func (f *fn) frameESC(prev, old int64) (*frameObj, error) {
	var found *frameObj
	for _, m := range f.mems {
		k, ok := f.slotAddr(m.addrs)
		if !ok || !m.write || m.bytes != 8 {
			continue
		}
		for _, v := range m.vals {
			e, ok := f.slotOf(v)
			if !ok || e == 0 {
				continue
			}
			o := &frameObj{off: e, cts: k - old, oldPC: m.pc}
			for _, c := range f.calls {
				for _, a := range c.args[0] {
					if s, ok := f.slotOf(a); ok && s == o.cts && o.callPC == 0 {
						o.callPC = c.pc
					}
				}
			}
			for _, p := range f.mems {
				if s, ok := f.slotAddr(p.addrs); ok && p.write && p.bytes == 8 && s == o.cts+prev && o.prevPC == 0 {
					o.prevPC = p.pc
				}
			}
			if o.callPC == 0 || o.prevPC == 0 {
				continue
			}
			if found != nil && (found.off != o.off || found.cts != o.cts) {
				return nil, fmt.Errorf("two CallThreadStates in the frame point to saved states (%s; %s)", f.at(found.oldPC), f.at(o.oldPC))
			}
			if found == nil {
				found = o
			}
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no frame object whose address is stored into CallThreadState.old_state (+%#x) of a CallThreadState in the frame (passed to a call, its prev at +%#x written)", old, prev)
	}
	return found, nil
}

// limitRestore checks whether the memory operand t, a word of
// the EntryStoreContext esc, is the stack limit's tag: tested against 0 or
// 1 by a conditional jump whose Some side loads another word of esc and
// stores it through the VMStoreContext pointer. why says what was missing
// once t was tested.
func (f *fn) limitRestore(t memRec, esc *frameObj, known *Offsets) (lim *Limit, why string) {
	idx := f.index[t.pc]
	in := f.insns[idx].inst
	imm, isImm := in.Args[1].(x86asm.Imm)
	if (in.Op != x86asm.TEST && in.Op != x86asm.CMP) || !isImm || (imm != 0 && imm != 1) || idx+1 >= len(f.insns) {
		return nil, ""
	}
	if in.Op == x86asm.TEST && imm != 1 {
		return nil, ""
	}
	jcc := f.insns[idx+1]
	if jcc.inst.Op != x86asm.JE && jcc.inst.Op != x86asm.JNE {
		return nil, ""
	}
	// The side of the jump taken when the tag is 1 (Some).
	someTaken := (jcc.inst.Op == x86asm.JNE) != (in.Op == x86asm.CMP && imm == 1)
	next := idx + 2
	if someTaken {
		target, ok := relTarget(jcc)
		if !ok {
			return nil, ""
		}
		if next, ok = f.index[target]; !ok {
			return nil, ""
		}
	}
	// In that block: mov VALUE(esc),%r ... mov %r,OFF(%vmsc).
	load, store := -1, -1
	var reg int
	b := f.blocks[f.blockOfInsn(next)]
	for i := next; i < b.end; i++ {
		x := f.insns[i].inst
		_, memDst := x.Args[0].(x86asm.Mem)
		_, memSrc := x.Args[1].(x86asm.Mem)
		dst, w, regDst := gpr(asReg(x.Args[0]))
		if src, _, ok := gpr(asReg(x.Args[1])); load >= 0 && x.Op == x86asm.MOV && memDst && x.MemBytes == 8 && ok && src == reg {
			store = i
			break
		}
		if x.Op == x86asm.MOV && memSrc && x.MemBytes == 8 && regDst && w == 8 {
			if k, ok := f.slotAddr(f.memRecAt(f.insns[i].pc, false).addrs); ok && k >= esc.off && k < esc.off+maxESC {
				load, reg = i, dst
				continue
			}
		}
		if load >= 0 && (x.Op == x86asm.CALL || regDst && dst == reg) {
			load = -1 // overwritten before it is stored
		}
	}
	tagOff := mustSlot(f, t.addrs) - esc.off
	if load < 0 || store < 0 {
		return nil, fmt.Sprintf("%s tests the word at +%#x, but its Some side loads no other word of the EntryStoreContext into a register stored to memory", f.at(t.pc), tagOff)
	}
	lm := f.memRecAt(f.insns[load].pc, false)
	sm := f.memRecAt(f.insns[store].pc, true)
	valOff := mustSlot(f, lm.addrs) - esc.off
	if valOff == tagOff {
		return nil, ""
	}
	if _, ok := f.slotAddr(sm.addrs); ok || sm.bytes != 8 {
		return nil, fmt.Sprintf("%s stores the value word into the frame, not into the VMStoreContext", f.at(sm.pc))
	}
	// The store goes through the pointer the exit PC is restored through.
	exitPC := known.Fields[StoreExitPC].Off
	exitAt := f.storeCovering(sm.base, exitPC)
	if exitAt == 0 {
		return nil, fmt.Sprintf("%s stores the value word through a pointer that no store of last_wasm_exit_pc (VMStoreContext+%#x) goes through", f.at(sm.pc), exitPC)
	}
	for _, fl := range []Field{StoreExitPC, StoreExitFP, StoreEntry} {
		if d := known.Fields[fl]; d != nil && d.Off == sm.disp {
			return nil, fmt.Sprintf("%s stores the value word into VMStoreContext+%#x, a known exit or entry field", f.at(sm.pc), sm.disp)
		}
	}
	// Evidence from the entry side, where the interpreter sees it (the
	// slots may be reused for other values elsewhere in the function): the
	// tag written as 0 or 1, the value read from the same VMStoreContext
	// field.
	var setAt, savedAt string
	for _, m := range f.mems {
		if k, ok := f.slotAddr(m.addrs); !ok || k != esc.off+tagOff || !m.write || len(m.vals) == 0 || setAt != "" {
			continue
		}
		bits := true
		for _, v := range m.vals {
			if x := f.exprs[v]; x.op != opConst || x.off != 0 && x.off != 1 {
				bits = false
			}
		}
		if bits {
			setAt = f.at(m.pc)
		}
	}
	for _, m := range f.mems {
		if k, ok := f.slotAddr(m.addrs); !ok || k != esc.off+valOff || !m.write {
			continue
		}
		for _, v := range m.vals {
			if x := f.exprs[v]; x.op == opLoad && savedAt == "" && f.sameField(x.a, x.off, sm.base, sm.disp) {
				savedAt = f.at(f.origin[v])
			}
		}
	}
	side := "falls through"
	if someTaken {
		side = "jumps"
	}
	return &Limit{
		Tag: Found{tagOff, fmt.Sprintf("tested before the stack limit is restored (Some when it %s): %s; in the EntryStoreContext stored into CallThreadState.old_state: %s",
			side, f.at(t.pc), f.at(esc.oldPC))},
		Value: Found{valOff, fmt.Sprintf("restored into VMStoreContext+%#x when the tag is set: %s; %s", sm.disp, f.at(lm.pc), f.at(sm.pc))},
		Store: Found{sm.disp, "the pointer that also restores last_wasm_exit_pc: " + f.at(exitAt)},
		How: fmt.Sprintf("%s at %#x restores VMStoreContext.stack_limit (+%#x) from an EntryStoreContext's stack_limit",
			f.name, f.addr, sm.disp),
		TagSet:     setAt,
		ValueSaved: savedAt,
	}, ""
}

func mustSlot(f *fn, addrs vset) int64 {
	k, _ := f.slotAddr(addrs)
	return k
}

// blockOfInsn returns the block holding instruction index i.
func (f *fn) blockOfInsn(i int) int {
	for bi, b := range f.blocks {
		if b.start <= i && i < b.end {
			return bi
		}
	}
	return 0
}

// memRecAt returns the record of the memory operand of the instruction at
// pc (the written one with write), or nil.
func (f *fn) memRecAt(pc uint64, write bool) *memRec {
	for i := range f.mems {
		if f.mems[i].pc == pc && f.mems[i].write == write {
			return &f.mems[i]
		}
	}
	return nil
}

// rootOff splits an address expression into what it is based on and an
// offset.
func (f *fn) rootOff(a int32) (int32, int64) {
	if x := f.exprs[a]; x.op == opAdd {
		return x.a, x.off
	}
	return a, 0
}

// sameField reports whether base a + off is the field at one of the
// pointers bases + disp.
func (f *fn) sameField(a int32, off int64, bases vset, disp int64) bool {
	ra, oa := f.rootOff(a)
	for _, b := range f.concrete(bases) {
		rb, ob := f.rootOff(b)
		if ra == rb && oa+off == ob+disp {
			return true
		}
	}
	return false
}

// storeCovering returns the address of a store that writes the field at
// one of the pointers bases + off (a wider store covering it counts), or 0.
func (f *fn) storeCovering(bases vset, off int64) uint64 {
	for _, b := range f.concrete(bases) {
		rb, ob := f.rootOff(b)
		for _, m := range f.mems {
			if !m.write {
				continue
			}
			for _, a := range m.addrs {
				if ra, oa := f.rootOff(a); ra == rb && oa <= ob+off && ob+off < oa+int64(max(m.bytes, 1)) {
					return m.pc
				}
			}
		}
	}
	return 0
}
