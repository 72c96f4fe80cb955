package testtarget

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// CallGraph is the static call graph of a core Wasm module: which function
// may call which, as far as the module's code says. A direct call (call,
// return_call) names its callee; an indirect one (call_indirect,
// return_call_indirect) may reach any function placed in a table by an
// element segment whose signature is the call's type.
type CallGraph struct {
	// Imports is the number of imported functions (they come first in the
	// function index space).
	Imports int
	// Names maps a function index to its name from the name section.
	Names map[int]string
	// ByName maps a name of the name section to the functions carrying it
	// (several static functions may share one name).
	ByName map[string][]int
	// Direct maps a caller to the functions it calls directly.
	Direct map[int]map[int]bool
	// IndirectSigs maps a caller to the signatures (canonical type strings)
	// of its indirect calls.
	IndirectSigs map[int]map[string]bool
	// TailCalls counts return_call* instructions (a tail call replaces its
	// caller's frame, so the caller's caller then calls the callee).
	TailCalls int
	// InTable holds the functions that element segments (active or
	// passive) put into tables.
	InTable map[int]bool
	// funcSig is each function's signature (imports included).
	funcSig []string
}

// Edge classifies caller → callee: "direct", "indirect", or "" when the
// module's code cannot make that call.
func (g *CallGraph) Edge(caller, callee int) string {
	if g.Direct[caller][callee] {
		return "direct"
	}
	if g.InTable[callee] && callee < len(g.funcSig) && g.IndirectSigs[caller][g.funcSig[callee]] {
		return "indirect"
	}
	return ""
}

// WhyNot explains why caller → callee is not an edge.
func (g *CallGraph) WhyNot(caller, callee int) string {
	var why []string
	if len(g.Direct[caller]) == 0 && len(g.IndirectSigs[caller]) == 0 {
		why = append(why, "caller makes no calls")
	} else {
		why = append(why, "no direct call")
	}
	switch {
	case len(g.IndirectSigs[caller]) == 0:
	case !g.InTable[callee]:
		why = append(why, "callee in no table")
	case callee < len(g.funcSig) && !g.IndirectSigs[caller][g.funcSig[callee]]:
		why = append(why, "no indirect call of the callee's type "+g.funcSig[callee])
	}
	return strings.Join(why, ", ")
}

// Bridges lists the functions X such that caller → X → callee are both
// edges (up to max): the frames that a stack missing one frame between
// caller and callee would have skipped.
func (g *CallGraph) Bridges(caller, callee, max int) []int {
	var out []int
	try := func(x int) {
		if len(out) < max && !slices.Contains(out, x) && g.Edge(x, callee) != "" {
			out = append(out, x)
		}
	}
	for x := range g.Direct[caller] {
		try(x)
	}
	if len(g.IndirectSigs[caller]) > 0 {
		for x := range g.InTable {
			if g.Edge(caller, x) != "" {
				try(x)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Bounds of ParseCallGraph.
const (
	maxModuleSize = 1 << 30
	maxCount      = 1 << 24 // any vector length
)

// cgReader reads a Wasm binary; every read checks bounds and the first
// error sticks.
type cgReader struct {
	b   []byte
	p   int
	err error
}

func (r *cgReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("offset %#x: %s", r.p, fmt.Sprintf(format, args...))
	}
}

func (r *cgReader) byte() byte {
	if r.err != nil || r.p >= len(r.b) {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[r.p]
	r.p++
	return c
}

func (r *cgReader) bytes(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b)-r.p {
		r.fail("unexpected end (need %d bytes)", n)
		return nil
	}
	s := r.b[r.p : r.p+n]
	r.p += n
	return s
}

// uleb reads an unsigned LEB128 of at most bits bits.
func (r *cgReader) uleb(bits int) uint64 {
	var v uint64
	for shift := 0; shift < bits+7; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			if bits < 64 && v>>bits != 0 {
				r.fail("LEB128 too large for u%d", bits)
			}
			return v
		}
	}
	r.fail("LEB128 too long")
	return 0
}

// sleb skips a signed LEB128 of at most bits bits.
func (r *cgReader) sleb(bits int) int64 {
	var v int64
	shift := 0
	for ; shift < bits+7; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= int64(c&0x7f) << shift
		if c < 0x80 {
			shift += 7
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
	r.fail("signed LEB128 too long")
	return 0
}

func (r *cgReader) u32() int { return int(r.uleb(32)) }

func (r *cgReader) count() int {
	n := r.u32()
	if n > maxCount || n > len(r.b)-r.p { // every element takes a byte at least
		r.fail("implausible count %d", n)
		return 0
	}
	return n
}

func (r *cgReader) name() string { return string(r.bytes(r.u32())) }

// valType reads a value type (number, vector or reference type).
func (r *cgReader) valType() string {
	c := r.byte()
	switch c {
	case 0x7f:
		return "i32"
	case 0x7e:
		return "i64"
	case 0x7d:
		return "f32"
	case 0x7c:
		return "f64"
	case 0x7b:
		return "v128"
	case 0x70:
		return "funcref"
	case 0x6f:
		return "externref"
	case 0x63, 0x64: // (ref null ht), (ref ht)
		return fmt.Sprintf("ref%x:%d", c, r.sleb(33))
	}
	r.fail("unsupported value type %#x", c)
	return ""
}

// heapType skips a heap type (a type index or an abstract heap type).
func (r *cgReader) heapType() { r.sleb(33) }

// blockType skips a block type.
func (r *cgReader) blockType() {
	if r.p < len(r.b) {
		switch r.b[r.p] {
		case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
			r.p++
			return
		case 0x63, 0x64:
			r.p++
			r.heapType()
			return
		}
	}
	r.sleb(33)
}

// memArg skips a memory argument (align with the multi-memory bit, an
// optional memory index, offset).
func (r *cgReader) memArg() {
	align := r.u32()
	if align&0x40 != 0 {
		r.u32()
	}
	r.uleb(64)
}

// constExpr reads a constant expression up to its end, returning the
// functions it references with ref.func.
func (r *cgReader) constExpr() []int {
	var funcs []int
	for r.err == nil {
		op := r.byte()
		switch op {
		case 0x0b:
			return funcs
		case 0x41:
			r.sleb(32)
		case 0x42:
			r.sleb(64)
		case 0x43:
			r.bytes(4)
		case 0x44:
			r.bytes(8)
		case 0x23: // global.get
			r.u32()
		case 0xd0: // ref.null
			r.heapType()
		case 0xd2: // ref.func
			funcs = append(funcs, r.u32())
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constant expressions
		default:
			r.fail("unsupported constant expression opcode %#x", op)
		}
	}
	return funcs
}

// ParseCallGraph parses a core Wasm module's types, imports, functions,
// element segments, code and name section into its static call graph.
// Instructions are decoded one by one, immediates skipped by their
// encoding, so a byte that looks like a call inside an immediate is never
// taken for one; an unknown opcode is an error, never skipped.
func ParseCallGraph(wasm []byte) (*CallGraph, error) {
	if len(wasm) > maxModuleSize {
		return nil, errors.New("module too large")
	}
	r := &cgReader{b: wasm}
	if string(r.bytes(4)) != "\x00asm" || string(r.bytes(4)) != "\x01\x00\x00\x00" {
		return nil, errors.New("not a core Wasm module (version 1)")
	}
	g := &CallGraph{
		Names:        map[int]string{},
		ByName:       map[string][]int{},
		Direct:       map[int]map[int]bool{},
		IndirectSigs: map[int]map[string]bool{},
		InTable:      map[int]bool{},
	}
	var types []string // signature of each type index ("" for non-function types)
	var codeSeen bool
	for r.err == nil && r.p < len(r.b) {
		id := r.byte()
		size := r.u32()
		body := r.bytes(size)
		if r.err != nil {
			break
		}
		s := &cgReader{b: body}
		switch id {
		case 1:
			types = parseTypes(s)
		case 2:
			for n := s.count(); n > 0 && s.err == nil; n-- {
				s.name()
				s.name()
				switch kind := s.byte(); kind {
				case 0x00:
					g.funcSig = append(g.funcSig, typeSig(s, types, s.u32()))
					g.Imports++
				case 0x01:
					s.byte()
					s.limits()
				case 0x02:
					s.limits()
				case 0x03:
					s.valType()
					s.byte()
				case 0x04:
					s.byte()
					s.u32()
				default:
					s.fail("unsupported import kind %#x", kind)
				}
			}
		case 3:
			for n := s.count(); n > 0 && s.err == nil; n-- {
				g.funcSig = append(g.funcSig, typeSig(s, types, s.u32()))
			}
		case 9:
			parseElems(s, g)
		case 10:
			codeSeen = true
			n := s.count()
			if s.err == nil && g.Imports+n != len(g.funcSig) {
				s.fail("code section has %d bodies for %d functions", n, len(g.funcSig)-g.Imports)
			}
			for i := 0; i < n && s.err == nil; i++ {
				b := &cgReader{b: s.bytes(s.u32())}
				parseBody(b, g, g.Imports+i, types)
				if b.err != nil {
					return nil, fmt.Errorf("function %d: %w", g.Imports+i, b.err)
				}
			}
		case 0:
			if s.name() == "name" {
				parseNames(s, g)
			}
		}
		if s.err != nil {
			return nil, fmt.Errorf("section %d: %w", id, s.err)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if !codeSeen && len(g.funcSig) > g.Imports {
		return nil, errors.New("no code section")
	}
	return g, nil
}

func (r *cgReader) limits() {
	flags := r.byte()
	if flags&1 != 0 {
		r.uleb(64)
		r.uleb(64)
	} else {
		r.uleb(64)
	}
}

// parseTypes reads the type section: each function type's signature as a
// canonical string such as "(i32 i32)->(i32)".
func parseTypes(s *cgReader) []string {
	var types []string
	for n := s.count(); n > 0 && s.err == nil; n-- {
		form := s.byte()
		if form != 0x60 {
			s.fail("unsupported type form %#x (only plain function types)", form)
			return nil
		}
		var params, results []string
		for k := s.count(); k > 0 && s.err == nil; k-- {
			params = append(params, s.valType())
		}
		for k := s.count(); k > 0 && s.err == nil; k-- {
			results = append(results, s.valType())
		}
		types = append(types, "("+strings.Join(params, " ")+")->("+strings.Join(results, " ")+")")
	}
	return types
}

func typeSig(s *cgReader, types []string, idx int) string {
	if idx >= len(types) {
		s.fail("type index %d out of range", idx)
		return ""
	}
	return types[idx]
}

// parseElems reads the element section: every function that an active or
// passive segment puts into a table (declarative segments only declare
// functions for ref.func and fill no table).
func parseElems(s *cgReader, g *CallGraph) {
	for n := s.count(); n > 0 && s.err == nil; n-- {
		flags := s.u32()
		if flags > 7 {
			s.fail("unsupported element segment flags %d", flags)
			return
		}
		declarative := flags&3 == 3
		if flags&1 == 0 { // active
			if flags&2 != 0 {
				s.u32() // table index
			}
			s.constExpr()
		}
		var funcs []int
		if flags&4 == 0 { // function indices
			if flags&3 != 0 {
				if kind := s.byte(); kind != 0 {
					s.fail("unsupported element kind %#x", kind)
				}
			}
			for k := s.count(); k > 0 && s.err == nil; k-- {
				funcs = append(funcs, s.u32())
			}
		} else { // expressions
			if flags&3 != 0 {
				s.valType()
			}
			for k := s.count(); k > 0 && s.err == nil; k-- {
				funcs = append(funcs, s.constExpr()...)
			}
		}
		if !declarative {
			for _, f := range funcs {
				g.InTable[f] = true
			}
		}
	}
}

// parseNames reads the function names subsection (1) of the name section.
func parseNames(s *cgReader, g *CallGraph) {
	for s.err == nil && s.p < len(s.b) {
		id := s.byte()
		sub := &cgReader{b: s.bytes(s.u32())}
		if s.err != nil || id != 1 {
			continue
		}
		for n := sub.count(); n > 0 && sub.err == nil; n-- {
			idx, name := sub.u32(), sub.name()
			if sub.err == nil {
				g.Names[idx] = name
				g.ByName[name] = append(g.ByName[name], idx)
			}
		}
		if sub.err != nil {
			s.fail("function names: %v", sub.err)
		}
	}
}

// parseBody decodes one function body and records its calls.
func parseBody(b *cgReader, g *CallGraph, fn int, types []string) {
	for n := b.count(); n > 0 && b.err == nil; n-- {
		b.u32()
		b.valType()
	}
	direct := func(callee int) {
		if callee >= len(g.funcSig) {
			b.fail("call of function %d out of range", callee)
			return
		}
		if g.Direct[fn] == nil {
			g.Direct[fn] = map[int]bool{}
		}
		g.Direct[fn][callee] = true
	}
	indirect := func(typeIdx int) {
		sig := typeSig(b, types, typeIdx)
		if g.IndirectSigs[fn] == nil {
			g.IndirectSigs[fn] = map[string]bool{}
		}
		g.IndirectSigs[fn][sig] = true
	}
	depth := 1
	for depth > 0 && b.err == nil {
		op := b.byte()
		switch {
		case op == 0x02 || op == 0x03 || op == 0x04 || op == 0x06: // block loop if try
			b.blockType()
			depth++
		case op == 0x0b: // end
			depth--
		case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0a || op == 0x0f || op == 0x19 ||
			op == 0x1a || op == 0x1b || op == 0xd1 || op == 0xd3 || op == 0xd4 || (op >= 0x45 && op <= 0xc4):
			// no immediates: unreachable nop else throw_ref return catch_all
			// drop select ref.is_null ref.eq ref.as_non_null, numeric
		case op == 0x0c || op == 0x0d || op == 0x09 || op == 0x18 || op == 0xd5 || op == 0xd6:
			b.u32() // br br_if rethrow delegate br_on_null br_on_non_null: label
		case op == 0x07 || op == 0x08: // catch throw: tag
			b.u32()
		case op == 0x0e: // br_table
			for k := b.count(); k >= 0 && b.err == nil; k-- {
				b.u32()
			}
		case op == 0x10: // call
			direct(b.u32())
		case op == 0x12: // return_call
			direct(b.u32())
			g.TailCalls++
		case op == 0x11 || op == 0x13: // call_indirect return_call_indirect: type, table
			indirect(b.u32())
			b.u32()
			if op == 0x13 {
				g.TailCalls++
			}
		case op == 0x14 || op == 0x15: // call_ref return_call_ref
			b.fail("call_ref is not supported")
		case op == 0x1c: // select t*
			for k := b.count(); k > 0 && b.err == nil; k-- {
				b.valType()
			}
		case op >= 0x20 && op <= 0x26: // local.* global.* table.get table.set
			b.u32()
		case op == 0x1f: // try_table
			b.blockType()
			depth++
			for k := b.count(); k > 0 && b.err == nil; k-- {
				if kind := b.byte(); kind <= 1 {
					b.u32()
				}
				b.u32()
			}
		case op >= 0x28 && op <= 0x3e: // loads and stores
			b.memArg()
		case op == 0x3f || op == 0x40: // memory.size memory.grow
			b.u32()
		case op == 0x41:
			b.sleb(32)
		case op == 0x42:
			b.sleb(64)
		case op == 0x43:
			b.bytes(4)
		case op == 0x44:
			b.bytes(8)
		case op == 0xd0: // ref.null
			b.heapType()
		case op == 0xd2: // ref.func
			b.u32()
		case op == 0xfc:
			miscOp(b)
		case op == 0xfd:
			simdOp(b)
		case op == 0xfe:
			atomicOp(b)
		default:
			b.fail("unsupported opcode %#x", op)
		}
	}
	if b.err == nil && b.p != len(b.b) {
		b.fail("%d bytes after the body's end", len(b.b)-b.p)
	}
}

func miscOp(b *cgReader) {
	switch sub := b.u32(); {
	case sub <= 7: // saturating truncations
	case sub == 8: // memory.init data mem
		b.u32()
		b.u32()
	case sub == 9: // data.drop
		b.u32()
	case sub == 10: // memory.copy mem mem
		b.u32()
		b.u32()
	case sub == 11: // memory.fill mem
		b.u32()
	case sub == 12 || sub == 14: // table.init elem table, table.copy table table
		b.u32()
		b.u32()
	case sub == 13 || (sub >= 15 && sub <= 17): // elem.drop table.grow table.size table.fill
		b.u32()
	default:
		b.fail("unsupported 0xfc opcode %d", sub)
	}
}

func simdOp(b *cgReader) {
	switch sub := b.u32(); {
	case sub <= 11 || sub == 92 || sub == 93: // loads, stores, load zero
		b.memArg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		b.bytes(16)
	case sub >= 21 && sub <= 34: // extract and replace lane
		b.byte()
	case sub >= 84 && sub <= 91: // load and store lane
		b.memArg()
		b.byte()
	case sub <= 0x113: // no immediates (relaxed SIMD included)
	default:
		b.fail("unsupported 0xfd opcode %d", sub)
	}
}

func atomicOp(b *cgReader) {
	switch sub := b.u32(); {
	case sub == 3: // atomic.fence
		b.byte()
	case sub <= 0x4e:
		b.memArg()
	default:
		b.fail("unsupported 0xfe opcode %d", sub)
	}
}

// Pair is a caller → callee pair of adjacent Wasm frames, by name.
type Pair struct{ Caller, Callee string }

// StackCheck is the result of checking folded stacks against a call graph.
type StackCheck struct {
	// Samples counts the samples with at least one Wasm frame; Valid
	// those whose every pair of adjacent Wasm frames is an edge.
	Samples, Valid int
	// Invalid counts the samples of each pair that is no edge.
	Invalid map[Pair]int
	// Unknown counts the samples of each frame name that is in no name
	// section entry (after display).
	Unknown map[string]int
	// Edges counts how adjacent pairs were justified.
	Edges map[string]int
	// shown maps a displayed name to its functions.
	shown map[string][]int
}

// IsMarker reports whether a folded frame is one of wasmtrace's markers
// ([host], [no Wasm], [unwind failed: ...], ...), which no Wasm name is.
func IsMarker(frame string) bool {
	return strings.HasPrefix(frame, "[") && strings.HasSuffix(frame, "]")
}

// CheckStacks checks folded stacks (root first, frame names as displayed,
// i.e. through display) against g: every frame not a marker must be a name
// of the name section, and every two adjacent such frames must be an edge
// for some pair of functions with those names. A marker breaks adjacency.
func (g *CallGraph) CheckStacks(stacks map[string]int, display func(string) string) StackCheck {
	byShown := map[string][]int{}
	for name, idx := range g.ByName {
		shown := display(name)
		byShown[shown] = append(byShown[shown], idx...)
	}
	c := StackCheck{Invalid: map[Pair]int{}, Unknown: map[string]int{}, Edges: map[string]int{}, shown: byShown}
	memo := map[Pair]string{}
	edge := func(p Pair) string {
		if e, ok := memo[p]; ok {
			return e
		}
		e := ""
		for _, a := range byShown[p.Caller] {
			for _, b := range byShown[p.Callee] {
				if e = g.Edge(a, b); e != "" {
					break
				}
			}
			if e != "" {
				break
			}
		}
		memo[p] = e
		return e
	}
	for stack, n := range stacks {
		frames := strings.Split(stack, ";")
		wasm, ok := false, true
		for i, f := range frames {
			if IsMarker(f) {
				continue
			}
			wasm = true
			if byShown[f] == nil {
				c.Unknown[f] += n
				ok = false
				continue
			}
			if i == 0 || IsMarker(frames[i-1]) || byShown[frames[i-1]] == nil {
				continue
			}
			p := Pair{frames[i-1], f}
			if e := edge(p); e != "" {
				c.Edges[e] += n
			} else {
				c.Invalid[p] += n
				ok = false
			}
		}
		if wasm {
			c.Samples += n
			if ok {
				c.Valid += n
			}
		}
	}
	return c
}

// Rate is Valid / Samples (1 with no samples).
func (c StackCheck) Rate() float64 {
	if c.Samples == 0 {
		return 1
	}
	return float64(c.Valid) / float64(c.Samples)
}

// Report lists the invalid pairs and unknown names, most samples first.
func (c StackCheck) Report(g *CallGraph) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d samples with Wasm frames valid (%.3f%%); edges by kind %v\n",
		c.Valid, c.Samples, 100*c.Rate(), c.Edges)
	pairs := make([]Pair, 0, len(c.Invalid))
	for p := range c.Invalid {
		pairs = append(pairs, p)
	}
	slices.SortFunc(pairs, func(x, y Pair) int {
		if d := c.Invalid[y] - c.Invalid[x]; d != 0 {
			return d
		}
		return strings.Compare(x.Caller+";"+x.Callee, y.Caller+";"+y.Callee)
	})
	for _, p := range pairs {
		why := ""
		if a, b := c.shown[p.Caller], c.shown[p.Callee]; len(a) > 0 && len(b) > 0 {
			why = " (" + g.WhyNot(a[0], b[0])
			if x := g.Bridges(a[0], b[0], 4); len(x) > 0 {
				var via []string
				for _, f := range x {
					via = append(via, g.Names[f])
				}
				why += "; a frame skipped? both calls exist via " + strings.Join(via, ", ")
			}
			why += ")"
		}
		fmt.Fprintf(&b, "  invalid %6d  %s;%s%s\n", c.Invalid[p], p.Caller, p.Callee, why)
	}
	names := make([]string, 0, len(c.Unknown))
	for f := range c.Unknown {
		names = append(names, f)
	}
	slices.Sort(names)
	for _, f := range names {
		fmt.Fprintf(&b, "  unknown name %6d  %q\n", c.Unknown[f], f)
	}
	return b.String()
}
