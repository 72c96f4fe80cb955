package x86

// The interpreter: a small abstract interpreter for x86-64 functions,
// enough to read struct offsets out of Wasmtime's own code.
//
// Every register and every stack slot holds a set of symbolic values. A
// value is an expression over what the function received: a register at
// entry ("entry(rsi)"), the thread pointer, the return address, constants,
// and the loads and additions made from them ("load(load(entry(rsi),
// 0x28), 0)"). The interpreter runs over the function's control-flow graph
// until nothing changes, joining sets where paths meet, and records what
// the function did with those values: which fields it loaded, compared,
// stored and passed to calls, and which values meet in one variable (the
// same role reached on two paths). The matchers (backtrace.go, x86.go)
// read struct layouts from these records.
//
// A loop that follows a linked list (x = x->prev) would build ever deeper
// loads; where a set meets both v and load(v, p) the two are widened into
// chain(v, p): v followed by zero or more loads at offset p. That widening
// is also exactly how a self-linked field is recognised.
//
// The analysis is path-insensitive and ignores the heap (only the
// function's own stack slots are tracked), so it can see values that never
// meet at run time, but never invents a load or an offset: every fact it
// reports is an instruction of the binary.

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

type exprOp uint8

const (
	opTop   exprOp = iota // any value at all (a set that grew too large)
	opUnk                 // a value the interpreter does not model
	opEntry               // a register at function entry (a = register)
	opConst               // a constant (off)
	opLoad                // the 8 bytes at a + off
	opAdd                 // a + off
	opChain               // a, then zero or more loads at off
)

// Pseudo-registers for opEntry beyond the 16 GPRs.
const (
	regRetAddr = 16 // the return address: the word at the entry SP
	regTP      = 17 // the thread pointer (%fs:0)
	regTLS     = 18 // a module's TLS block, as __tls_get_addr returns it (off: its tls_index)
	numGPR     = 16
	regRSP     = 4
	regRBP     = 5
)

var gprNames = [...]string{"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
	"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "retaddr", "tp", "tlsblock"}

// argRegs are the System V integer argument registers, in order.
var argRegs = [6]int{7, 6, 2, 1, 8, 9} // rdi, rsi, rdx, rcx, r8, r9

type expr struct {
	op  exprOp
	a   int32 // operand expression, or register for opEntry
	off int64
}

const (
	idTop = int32(0)
	idUnk = int32(1)
)

// vset is a sorted set of expression ids, at most maxSet long; {idTop}
// stands for every value.
type vset []int32

const (
	maxSet   = 12
	maxDepth = 6
)

type insn struct {
	pc   uint64
	inst x86asm.Inst
}

type block struct {
	start, end int // instruction indexes [start, end)
	succs      []int
}

type frame struct {
	regs  [numGPR]vset
	slots map[int64]vset // by offset from the SP at function entry
}

// Records of what a function does, filled in by the final pass.
type (
	loadRec struct {
		pc   uint64
		base int32 // expression loaded from
		off  int64
		val  int32 // resulting expression
	}
	cmpRec struct {
		pc   uint64
		a, b vset
	}
	callRec struct {
		pc     uint64
		target uint64 // 0: indirect
		args   [6]vset
	}
	storeRec struct {
		pc    uint64
		addr  int32 // address expression (never a stack slot)
		vals  vset
		src   int // GPR the value came from, or -1
		bytes int
	}
	// tpRec is a value computed from the thread pointer, or from a TLS
	// block returned by __tls_get_addr (index != 0: the address of its
	// tls_index): its address plus off (lea) or the word there (load).
	tpRec struct {
		pc    uint64
		off   int64
		load  bool
		index uint64
	}
	andRec struct {
		pc   uint64
		vals vset
		imm  int64
	}
	// meetRec is a set of values that one variable holds: where paths
	// join, or the result of one instruction.
	meetRec struct {
		pc   uint64
		vals vset
	}
	// memRec is one memory operand of an instruction, stack slots
	// included: where it points (addrs), the register it is based on
	// (base, disp), how many bytes it covers, whether the instruction
	// writes it and, for an 8-byte mov from a register or an immediate,
	// the value written.
	memRec struct {
		pc    uint64
		addrs vset
		base  vset // nil: no register base
		disp  int64
		bytes int
		write bool
		vals  vset
	}
)

// fn is one analysed function.
type fn struct {
	name  string // as descriptions name it
	addr  uint64
	insns []insn
	index map[uint64]int // pc -> instruction index

	exprs []expr
	ids   map[expr]int32
	depth []int

	blocks  []block
	blockAt map[int]int // first instruction index -> block

	loads  []loadRec
	cmps   []cmpRec
	calls  []callRec
	stores []storeRec
	ands   []andRec
	tps    []tpRec
	meets  []meetRec
	mems   []memRec
	origin map[int32]uint64 // first instruction that produced an expression

	// tlsIndex reports whether addr holds a tls_index (a GOT entry with an
	// R_X86_64_DTPMOD64 relocation): a call with it in %rdi is
	// __tls_get_addr, returning the module's TLS block. Nil: none.
	tlsIndex func(addr uint64) bool
}

// decode decodes the instructions of one function and runs the
// interpreter over them. With n > 0 only the first n instructions are
// decoded, as a straight-line snippet, and they must all decode.
func decode(c Code, n int) (*fn, error) {
	f := &fn{name: c.Name, addr: c.Addr, index: map[uint64]int{}, ids: map[expr]int32{}, origin: map[int32]uint64{}, tlsIndex: c.TLSIndex}
	f.intern(expr{op: opTop})
	f.intern(expr{op: opUnk})
	for off := 0; off < len(c.Bytes) && (n <= 0 || len(f.insns) < n); {
		in, err := x86asm.Decode(c.Bytes[off:], 64)
		if err != nil {
			// Padding or data after the last instruction is harmless;
			// an undecodable instruction in the middle is not.
			if n <= 0 && allPadding(c.Bytes[off:]) {
				break
			}
			return nil, fmt.Errorf("%s: cannot decode the instruction at %#x: %v", c.Name, c.Addr+uint64(off), err)
		}
		f.index[c.Addr+uint64(off)] = len(f.insns)
		f.insns = append(f.insns, insn{pc: c.Addr + uint64(off), inst: in})
		off += in.Len
	}
	if n > 0 && len(f.insns) < n {
		return nil, fmt.Errorf("%s: %d instructions, want %d", c.Name, len(f.insns), n)
	}
	return f.analyse()
}

func (f *fn) analyse() (*fn, error) {
	if len(f.insns) == 0 {
		return nil, fmt.Errorf("%s: no instructions", f.name)
	}
	f.buildCFG()
	f.run()
	return f, nil
}

func allPadding(b []byte) bool {
	for _, c := range b {
		if c != 0xcc && c != 0x90 && c != 0 {
			return false
		}
	}
	return true
}

func (f *fn) intern(e expr) int32 {
	if id, ok := f.ids[e]; ok {
		return id
	}
	id := int32(len(f.exprs))
	f.exprs = append(f.exprs, e)
	f.ids[e] = id
	d := 0
	if e.op == opLoad || e.op == opAdd || e.op == opChain {
		d = f.depth[e.a] + 1
	}
	f.depth = append(f.depth, d)
	return id
}

func (f *fn) entry(r int) int32   { return f.intern(expr{op: opEntry, a: int32(r)}) }
func (f *fn) konst(c int64) int32 { return f.intern(expr{op: opConst, off: c}) }
func (f *fn) e(id int32) expr     { return f.exprs[id] }
func (f *fn) isEntry(id int32, r int) bool {
	x := f.exprs[id]
	return x.op == opEntry && x.a == int32(r)
}

func (f *fn) add(b int32, k int64) int32 {
	x := f.exprs[b]
	switch {
	case k == 0:
		return b
	case x.op == opTop || x.op == opUnk:
		return idUnk
	case x.op == opConst:
		return f.konst(x.off + k)
	case x.op == opAdd:
		return f.add(x.a, x.off+k)
	}
	if f.depth[b] >= maxDepth {
		return idUnk
	}
	return f.intern(expr{op: opAdd, a: b, off: k})
}

// load is the value of the 8 bytes at b+off, for a base that is not a
// stack slot.
func (f *fn) load(b int32, off int64) int32 {
	x := f.exprs[b]
	switch x.op {
	case opTop, opUnk, opConst:
		return idUnk
	case opAdd:
		return f.load(x.a, x.off+off)
	case opChain:
		if x.off == off {
			return b
		}
	}
	if f.depth[b] >= maxDepth {
		return idUnk
	}
	return f.intern(expr{op: opLoad, a: b, off: off})
}

// chain is a followed by zero or more loads at off. A list already
// reached through loads at off starts earlier: chain(load(x, p), p) is
// widened to chain(x, p).
func (f *fn) chain(a int32, off int64) int32 {
	for {
		x := f.exprs[a]
		if (x.op == opLoad || x.op == opChain) && x.off == off {
			a = x.a
			continue
		}
		break
	}
	return f.intern(expr{op: opChain, a: a, off: off})
}

// slotOf reports whether address expression a is entry SP + k.
func (f *fn) slotOf(a int32) (int64, bool) {
	x := f.exprs[a]
	if x.op == opEntry && x.a == regRSP {
		return 0, true
	}
	if x.op == opAdd && f.isEntry(x.a, regRSP) {
		return x.off, true
	}
	return 0, false
}

func (f *fn) String(id int32) string {
	x := f.exprs[id]
	switch x.op {
	case opTop:
		return "⊤"
	case opUnk:
		return "?"
	case opEntry:
		return "entry(" + gprNames[x.a] + ")"
	case opConst:
		return fmt.Sprintf("%#x", x.off)
	case opLoad:
		return fmt.Sprintf("[%s%+#x]", f.String(x.a), x.off)
	case opAdd:
		return fmt.Sprintf("(%s%+#x)", f.String(x.a), x.off)
	case opChain:
		return fmt.Sprintf("chain(%s, %#x)", f.String(x.a), x.off)
	}
	return "?"
}

// ---- sets ----

func one(id int32) vset { return vset{id} }

func (f *fn) union(a, b vset) vset {
	if len(a) == 1 && a[0] == idTop || len(b) == 1 && b[0] == idTop {
		return vset{idTop}
	}
	out := make(vset, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	return f.normalize(out)
}

// normalize sorts, dedups, widens list walks into chains and caps the size.
func (f *fn) normalize(s vset) vset {
	slices.Sort(s)
	s = slices.Compact(s)
	if len(s) > 1 && s[0] == idTop {
		return vset{idTop}
	}
	for {
		// Where v and load(v, p) meet, a list is being walked.
		widened := false
		for _, x := range s {
			e := f.exprs[x]
			if e.op == opLoad && slices.Contains(s, e.a) && f.depth[e.a] < maxDepth {
				s = append(s, f.chain(e.a, e.off))
				widened = true
				break
			}
		}
		// Drop what a chain of the set covers.
		var out vset
		for _, v := range s {
			drop := false
			for _, w := range s {
				if w != v && f.exprs[w].op == opChain && f.covers(w, v) {
					drop = true
					break
				}
			}
			if !drop {
				out = append(out, v)
			}
		}
		slices.Sort(out)
		s = slices.Compact(out)
		if !widened {
			break
		}
	}
	if len(s) > maxSet {
		return vset{idTop}
	}
	return s
}

// covers reports whether chain ch includes the value v: its start, or a
// value reached from it by loads at its offset.
func (f *fn) covers(ch, v int32) bool {
	c := f.exprs[ch]
	for {
		if v == c.a || v == ch {
			return true
		}
		y := f.exprs[v]
		if (y.op == opLoad || y.op == opChain) && y.off == c.off {
			v = y.a
			continue
		}
		return false
	}
}

func (f *fn) frameUnion(a, b *frame) (frame, bool) {
	var out frame
	changed := false
	for r := range numGPR {
		out.regs[r] = f.union(a.regs[r], b.regs[r])
		if !slices.Equal(out.regs[r], a.regs[r]) {
			changed = true
		}
	}
	out.slots = map[int64]vset{}
	for k, v := range a.slots {
		w, ok := b.slots[k]
		if !ok {
			w = one(idUnk)
		}
		out.slots[k] = f.union(v, w)
		if !slices.Equal(out.slots[k], v) {
			changed = true
		}
	}
	for k, w := range b.slots {
		if _, ok := a.slots[k]; !ok {
			out.slots[k] = f.union(w, one(idUnk))
			changed = true
		}
	}
	return out, changed
}

func (fr *frame) clone() frame {
	out := frame{regs: fr.regs, slots: make(map[int64]vset, len(fr.slots))}
	for k, v := range fr.slots {
		out.slots[k] = v
	}
	return out
}

// ---- control flow ----

func relTarget(in insn) (uint64, bool) {
	for _, a := range in.inst.Args {
		if r, ok := a.(x86asm.Rel); ok {
			return uint64(int64(in.pc) + int64(in.inst.Len) + int64(r)), true
		}
	}
	return 0, false
}

func isCondJump(op x86asm.Op) bool {
	switch op {
	case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JNE,
		x86asm.JG, x86asm.JGE, x86asm.JL, x86asm.JLE, x86asm.JO, x86asm.JNO,
		x86asm.JP, x86asm.JNP, x86asm.JS, x86asm.JNS, x86asm.JCXZ, x86asm.JECXZ,
		x86asm.JRCXZ, x86asm.LOOP, x86asm.LOOPE, x86asm.LOOPNE:
		return true
	}
	return false
}

func endsFlow(op x86asm.Op) bool {
	switch op {
	case x86asm.RET, x86asm.JMP, x86asm.UD2, x86asm.HLT, x86asm.INT:
		return true
	}
	return false
}

func (f *fn) buildCFG() {
	leader := map[int]bool{0: true}
	for i, in := range f.insns {
		op := in.inst.Op
		if isCondJump(op) || op == x86asm.JMP {
			if t, ok := relTarget(in); ok {
				if j, ok := f.index[t]; ok {
					leader[j] = true
				}
			}
		}
		if isCondJump(op) || endsFlow(op) {
			if i+1 < len(f.insns) {
				leader[i+1] = true
			}
		}
	}
	starts := make([]int, 0, len(leader))
	for i := range leader {
		starts = append(starts, i)
	}
	sort.Ints(starts)
	f.blockAt = map[int]int{}
	for bi, s := range starts {
		e := len(f.insns)
		if bi+1 < len(starts) {
			e = starts[bi+1]
		}
		f.blockAt[s] = bi
		f.blocks = append(f.blocks, block{start: s, end: e})
	}
	for bi := range f.blocks {
		b := &f.blocks[bi]
		last := f.insns[b.end-1]
		op := last.inst.Op
		if isCondJump(op) || op == x86asm.JMP {
			if t, ok := relTarget(last); ok {
				if j, ok := f.index[t]; ok {
					b.succs = append(b.succs, f.blockAt[j])
				}
			}
		}
		if !endsFlow(op) && b.end < len(f.insns) {
			b.succs = append(b.succs, f.blockAt[b.end])
		}
	}
}

// run iterates the blocks to a fixed point, then makes one recording pass.
func (f *fn) run() {
	in := make([]*frame, len(f.blocks))
	start := frame{slots: map[int64]vset{0: one(f.entry(regRetAddr))}}
	for r := range numGPR {
		start.regs[r] = one(f.entry(r))
	}
	in[0] = &start
	work := []int{0}
	queued := map[int]bool{0: true}
	budget := 400 * len(f.blocks)
	for len(work) > 0 && budget > 0 {
		budget--
		bi := work[0]
		work = work[1:]
		queued[bi] = false
		out := in[bi].clone()
		for i := f.blocks[bi].start; i < f.blocks[bi].end; i++ {
			f.step(&out, f.insns[i], false)
		}
		for _, s := range f.blocks[bi].succs {
			if in[s] == nil {
				c := out.clone()
				in[s] = &c
			} else {
				j, changed := f.frameUnion(in[s], &out)
				if !changed {
					continue
				}
				in[s] = &j
			}
			if !queued[s] {
				queued[s] = true
				work = append(work, s)
			}
		}
	}
	for bi, b := range f.blocks {
		if in[bi] == nil {
			continue // not reached (jump tables): nothing known there
		}
		st := in[bi].clone()
		pc := f.insns[b.start].pc
		for r := range numGPR {
			f.meet(pc, st.regs[r])
		}
		for _, v := range st.slots {
			f.meet(pc, v)
		}
		for i := b.start; i < b.end; i++ {
			f.recordMem(&st, f.insns[i])
			f.step(&st, f.insns[i], true)
		}
	}
}

// recordMem records the memory operands of in, with the state before it.
func (f *fn) recordMem(st *frame, in insn) {
	i := in.inst
	for k, a := range i.Args {
		m, ok := a.(x86asm.Mem)
		if !ok || i.Op == x86asm.LEA || i.Op == x86asm.NOP {
			continue
		}
		r := memRec{pc: in.pc, addrs: f.addrs(st, m, in), disp: disp(m), bytes: i.MemBytes}
		if g, w, ok := gpr(m.Base); ok && w == 8 && m.Segment == 0 {
			r.base = st.regs[g]
		}
		if k == 0 {
			switch i.Op {
			case x86asm.CMP, x86asm.TEST, x86asm.BT, x86asm.PUSH, x86asm.CALL, x86asm.JMP,
				x86asm.PREFETCHT0, x86asm.PREFETCHT1, x86asm.PREFETCHT2, x86asm.PREFETCHNTA,
				x86asm.UCOMISD, x86asm.UCOMISS, x86asm.COMISD, x86asm.COMISS, x86asm.PTEST:
			default:
				r.write = true
			}
			if i.Op == x86asm.MOV && i.MemBytes == 8 {
				r.vals = f.read(st, i.Args[1], in, false)
			}
		}
		f.mems = append(f.mems, r)
	}
}

func (f *fn) meet(pc uint64, s vset) {
	if len(s) > 1 {
		f.meets = append(f.meets, meetRec{pc: pc, vals: s})
	}
}

// gpr maps an x86asm register to a GPR index and its width in bytes.
func gpr(r x86asm.Reg) (int, int, bool) {
	switch {
	case r >= x86asm.RAX && r <= x86asm.R15:
		return int(r - x86asm.RAX), 8, true
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return int(r - x86asm.EAX), 4, true
	case r >= x86asm.AX && r <= x86asm.R15W:
		return int(r - x86asm.AX), 2, true
	case r >= x86asm.AL && r <= x86asm.BL:
		return int(r - x86asm.AL), 1, true
	case r >= x86asm.AH && r <= x86asm.BH:
		return int(r - x86asm.AH), 1, true
	case r >= x86asm.SPB && r <= x86asm.DIB:
		return int(r-x86asm.SPB) + 4, 1, true
	case r >= x86asm.R8B && r <= x86asm.R15B:
		return int(r-x86asm.R8B) + 8, 1, true
	}
	return 0, 0, false
}

// disp32 undoes x86asm's zero extension of 32-bit displacements.
func disp(m x86asm.Mem) int64 { return int64(int32(m.Disp)) }

// addrs returns the address expressions of memory operand m.
func (f *fn) addrs(st *frame, m x86asm.Mem, in insn) vset {
	if m.Index != 0 {
		return one(idUnk)
	}
	d := disp(m)
	switch {
	case m.Segment == x86asm.FS:
		if m.Base != 0 {
			return one(idUnk)
		}
		return one(f.add(f.entry(regTP), d))
	case m.Segment == x86asm.GS:
		return one(idUnk)
	case m.Base == x86asm.RIP:
		return one(f.konst(int64(in.pc) + int64(in.inst.Len) + d))
	case m.Base == 0:
		return one(f.konst(d))
	}
	r, w, ok := gpr(m.Base)
	if !ok || w != 8 {
		return one(idUnk)
	}
	var out vset
	for _, b := range st.regs[r] {
		out = append(out, f.add(b, d))
	}
	return f.normalize(out)
}

// read evaluates operand a as a 64-bit value.
func (f *fn) read(st *frame, a x86asm.Arg, in insn, record bool) vset {
	switch a := a.(type) {
	case x86asm.Reg:
		r, w, ok := gpr(a)
		if !ok || w != 8 {
			return one(idUnk)
		}
		return st.regs[r]
	case x86asm.Imm:
		return one(f.konst(int64(a)))
	case x86asm.Mem:
		if in.inst.MemBytes != 8 && in.inst.Op != x86asm.LEA {
			return one(idUnk)
		}
		// %fs:0 holds the thread pointer itself.
		if a.Segment == x86asm.FS && a.Base == 0 && a.Index == 0 && disp(a) == 0 {
			return one(f.entry(regTP))
		}
		var out vset
		for _, ad := range f.addrs(st, a, in) {
			if ad == idTop {
				return one(idTop)
			}
			if k, ok := f.slotOf(ad); ok {
				if v, ok := st.slots[k]; ok {
					out = append(out, v...)
				} else {
					out = append(out, idUnk)
				}
				continue
			}
			x := f.exprs[ad]
			base, off := ad, int64(0)
			if x.op == opAdd {
				base, off = x.a, x.off
			}
			v := f.load(base, off)
			if record && v != idUnk {
				f.loads = append(f.loads, loadRec{pc: in.pc, base: base, off: off, val: v})
				if _, ok := f.origin[v]; !ok {
					f.origin[v] = in.pc
				}
			}
			out = append(out, v)
		}
		return f.normalize(out)
	}
	return one(idUnk)
}

func (f *fn) setReg(st *frame, a x86asm.Arg, v vset, in insn, record bool) {
	r, w, ok := gpr(asReg(a))
	if !ok {
		return
	}
	if w != 8 {
		v = one(idUnk)
	}
	st.regs[r] = v
	if record {
		f.meet(in.pc, v)
		for _, x := range v {
			e := f.exprs[x]
			if e.op != opAdd && e.op != opLoad {
				continue
			}
			if f.isEntry(e.a, regTP) {
				f.tps = append(f.tps, tpRec{pc: in.pc, off: e.off, load: e.op == opLoad})
			}
			if b := f.exprs[e.a]; f.isEntry(e.a, regTLS) {
				f.tps = append(f.tps, tpRec{pc: in.pc, off: e.off, load: e.op == opLoad, index: uint64(b.off)})
			}
		}
	}
}

func asReg(a x86asm.Arg) x86asm.Reg {
	r, _ := a.(x86asm.Reg)
	return r
}

// write stores v (a 64-bit value, or unknown bytes) to memory operand m.
func (f *fn) write(st *frame, m x86asm.Mem, v vset, src, bytes int, in insn, record bool) {
	ads := f.addrs(st, m, in)
	strong := len(ads) == 1
	for _, ad := range ads {
		if k, ok := f.slotOf(ad); ok {
			if bytes != 8 {
				for kk := range st.slots {
					if kk > k-8 && kk < k+int64(max(bytes, 1)) {
						st.slots[kk] = one(idUnk)
					}
				}
				continue
			}
			if strong {
				st.slots[k] = v
			} else {
				st.slots[k] = f.union(st.slots[k], v)
			}
			continue
		}
		if record && ad != idUnk && ad != idTop {
			f.stores = append(f.stores, storeRec{pc: in.pc, addr: ad, vals: v, src: src, bytes: bytes})
		}
	}
}

var callerSaved = []int{0, 1, 2, 6, 7, 8, 9, 10, 11}

// step interprets one instruction.
func (f *fn) step(st *frame, in insn, record bool) {
	i := in.inst
	args := i.Args
	dstMem, dstIsMem := args[0].(x86asm.Mem)
	switch i.Op {
	case x86asm.MOV:
		if dstIsMem {
			v := one(idUnk)
			if i.MemBytes == 8 {
				v = f.read(st, args[1], in, record)
			}
			src := -1
			if r, w, ok := gpr(asReg(args[1])); ok && w == 8 {
				src = r
			}
			f.write(st, dstMem, v, src, i.MemBytes, in, record)
			return
		}
		r, w, _ := gpr(asReg(args[0]))
		switch {
		case w == 8:
			f.setReg(st, args[0], f.read(st, args[1], in, record), in, record)
		case w == 4:
			if imm, ok := args[1].(x86asm.Imm); ok {
				st.regs[r] = one(f.konst(int64(uint32(imm))))
			} else {
				if _, ok := args[1].(x86asm.Mem); ok {
					f.read(st, args[1], in, record)
				}
				st.regs[r] = one(idUnk)
			}
		default:
			f.setReg(st, args[0], one(idUnk), in, record)
		}
		return
	case x86asm.LEA:
		m, _ := args[1].(x86asm.Mem)
		f.setReg(st, args[0], f.addrs(st, m, in), in, record)
		return
	case x86asm.ADD, x86asm.SUB:
		if r, w, ok := gpr(asReg(args[0])); ok && w == 8 {
			if imm, ok := args[1].(x86asm.Imm); ok {
				k := int64(imm)
				if i.Op == x86asm.SUB {
					k = -k
				}
				var out vset
				for _, b := range st.regs[r] {
					out = append(out, f.add(b, k))
				}
				f.setReg(st, args[0], f.normalize(out), in, record)
				return
			}
		}
	case x86asm.XOR:
		if a, ok := args[0].(x86asm.Reg); ok && args[1] == x86asm.Arg(a) {
			if r, w, _ := gpr(a); w >= 4 {
				st.regs[r] = one(f.konst(0))
				return
			}
		}
	case x86asm.CMOVA, x86asm.CMOVAE, x86asm.CMOVB, x86asm.CMOVBE, x86asm.CMOVE, x86asm.CMOVNE,
		x86asm.CMOVG, x86asm.CMOVGE, x86asm.CMOVL, x86asm.CMOVLE, x86asm.CMOVO, x86asm.CMOVNO,
		x86asm.CMOVP, x86asm.CMOVNP, x86asm.CMOVS, x86asm.CMOVNS:
		if r, w, ok := gpr(asReg(args[0])); ok && w == 8 {
			f.setReg(st, args[0], f.union(st.regs[r], f.read(st, args[1], in, record)), in, record)
			return
		}
	case x86asm.PUSH:
		v := f.read(st, args[0], in, record)
		f.moveSP(st, -8)
		f.write(st, x86asm.Mem{Base: x86asm.RSP}, v, -1, 8, in, record)
		return
	case x86asm.POP:
		v := f.read(st, x86asm.Mem{Base: x86asm.RSP}, insn{pc: in.pc, inst: x86asm.Inst{MemBytes: 8, Len: in.inst.Len}}, false)
		f.moveSP(st, 8)
		f.setReg(st, args[0], v, in, record)
		return
	case x86asm.CALL:
		if record {
			c := callRec{pc: in.pc}
			if t, ok := relTarget(in); ok {
				c.target = t
			}
			for k, r := range argRegs {
				c.args[k] = st.regs[r]
			}
			f.calls = append(f.calls, c)
		}
		var block int32 = idUnk
		if a := st.regs[argRegs[0]]; f.tlsIndex != nil && len(a) == 1 && f.exprs[a[0]].op == opConst && f.tlsIndex(uint64(f.exprs[a[0]].off)) {
			block = f.intern(expr{op: opEntry, a: regTLS, off: f.exprs[a[0]].off})
		}
		for _, r := range callerSaved {
			st.regs[r] = one(idUnk)
		}
		st.regs[0] = one(block)
		return
	case x86asm.CMP:
		if i.MemBytes == 8 || i.DataSize == 64 {
			a, b := f.read(st, args[0], in, record), f.read(st, args[1], in, record)
			if record {
				f.cmps = append(f.cmps, cmpRec{pc: in.pc, a: a, b: b})
			}
		}
		return
	case x86asm.TEST:
		if a, ok := args[0].(x86asm.Reg); ok && args[1] == x86asm.Arg(a) && record {
			if _, w, _ := gpr(a); w == 8 {
				f.cmps = append(f.cmps, cmpRec{pc: in.pc, a: f.read(st, a, in, false), b: one(f.konst(0))})
			}
		}
		return
	case x86asm.BT, x86asm.NOP, x86asm.JMP, x86asm.RET, x86asm.UD2,
		x86asm.PREFETCHT0, x86asm.PREFETCHT1, x86asm.PREFETCHT2, x86asm.PREFETCHNTA,
		x86asm.UCOMISD, x86asm.UCOMISS, x86asm.COMISD, x86asm.COMISS, x86asm.PTEST:
		for _, a := range args {
			if _, ok := a.(x86asm.Mem); ok {
				f.read(st, a, in, record)
			}
		}
		return
	case x86asm.AND:
		if r, w, ok := gpr(asReg(args[0])); ok && w == 8 {
			if imm, ok := args[1].(x86asm.Imm); ok && record {
				f.ands = append(f.ands, andRec{pc: in.pc, vals: st.regs[r], imm: int64(imm)})
			}
		}
	case x86asm.XCHG:
		ra, wa, oka := gpr(asReg(args[0]))
		rb, wb, okb := gpr(asReg(args[1]))
		if oka && okb && wa == 8 && wb == 8 {
			st.regs[ra], st.regs[rb] = st.regs[rb], st.regs[ra]
			return
		}
		if okb {
			st.regs[rb] = one(idUnk)
		}
	}
	if isCondJump(i.Op) {
		return
	}
	// Anything else: loads are still recorded, and whatever is written
	// becomes unknown.
	for k, a := range args {
		if m, ok := a.(x86asm.Mem); ok && k > 0 {
			f.read(st, m, in, record)
		}
	}
	if dstIsMem {
		f.write(st, dstMem, one(idUnk), -1, max(i.MemBytes, 1), in, false)
	} else if r, _, ok := gpr(asReg(args[0])); ok {
		st.regs[r] = one(idUnk)
	}
	switch i.Op {
	case x86asm.MUL, x86asm.IMUL, x86asm.DIV, x86asm.IDIV, x86asm.CQO, x86asm.CDQ, x86asm.CWD,
		x86asm.RDTSC, x86asm.RDTSCP, x86asm.CPUID, x86asm.CMPXCHG, x86asm.CMPXCHG16B, x86asm.CDQE,
		x86asm.SYSCALL, x86asm.XADD, x86asm.MOVSB, x86asm.MOVSW, x86asm.MOVSD, x86asm.MOVSQ,
		x86asm.STOSB, x86asm.STOSW, x86asm.STOSD, x86asm.STOSQ, x86asm.LODSB, x86asm.LODSW,
		x86asm.LODSD, x86asm.LODSQ, x86asm.SCASB, x86asm.SCASW, x86asm.SCASD, x86asm.SCASQ,
		x86asm.CMPSB, x86asm.CMPSW, x86asm.CMPSD, x86asm.CMPSQ:
		for _, r := range []int{0, 1, 2, 6, 7, 11} {
			st.regs[r] = one(idUnk)
		}
		if i.Op == x86asm.XADD {
			if r, _, ok := gpr(asReg(args[1])); ok {
				st.regs[r] = one(idUnk)
			}
		}
	}
}

func (f *fn) moveSP(st *frame, k int64) {
	var out vset
	for _, b := range st.regs[regRSP] {
		out = append(out, f.add(b, k))
	}
	st.regs[regRSP] = f.normalize(out)
}

// text renders the instruction at pc in AT&T syntax, as objdump does.
func (f *fn) text(pc uint64) string {
	i, ok := f.index[pc]
	if !ok {
		return "?"
	}
	in := f.insns[i].inst
	for k, a := range in.Args {
		if m, ok := a.(x86asm.Mem); ok {
			m.Disp = disp(m) // x86asm leaves 32-bit displacements zero-extended
			in.Args[k] = m
		}
	}
	return strings.ReplaceAll(x86asm.GNUSyntax(in, pc, nil), ",%riz)", ")")
}

// at describes the instruction at pc for a provenance line.
func (f *fn) at(pc uint64) string {
	return fmt.Sprintf("%s at %#x: %s", f.name, pc, f.text(pc))
}
