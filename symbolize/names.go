package symbolize

import (
	"cmp"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// symbolInfo is what a symbol name says about the code it names.
type symbolInfo struct {
	kind   Kind
	module int    // wasm[M], 0 for Wasmtime 3 names
	index  int    // Wasm function index, -1 when not a function
	name   string // name part of wasm[M]::function[I]::NAME ("" if none)
}

// classify parses the symbol names Wasmtime gives JIT code.
func classify(sym string) symbolInfo {
	if m, rest, ok := cutIndex(sym, "wasm["); ok {
		if i, rest, ok := cutIndex(rest, "::function["); ok {
			switch {
			case rest == "":
				return symbolInfo{kind: WasmFunction, module: m, index: i}
			case strings.HasPrefix(rest, "::"):
				return symbolInfo{kind: WasmFunction, module: m, index: i, name: rest[2:]}
			}
		}
		if _, rest, ok := cutIndex(rest, "::array_to_wasm_trampoline["); ok && rest == "" {
			return symbolInfo{kind: Trampoline, module: m, index: -1}
		}
	}
	if n, ok := strings.CutPrefix(sym, "_wasm_function_"); ok {
		if i, err := strconv.ParseUint(n, 10, 31); err == nil {
			return symbolInfo{kind: WasmFunction, index: int(i)}
		}
	}
	if sym == "host_to_wasm" || sym == "wasm_to_host" ||
		strings.Contains(sym, "trampoline") || strings.HasPrefix(sym, "wasmtime_builtin_") ||
		strings.HasPrefix(sym, "unsafe-intrinsics-") {
		return symbolInfo{kind: Trampoline, index: -1}
	}
	return symbolInfo{kind: Other, index: -1}
}

// cutIndex parses prefix, a decimal number and "]" at the start of s.
func cutIndex(s, prefix string) (n int, rest string, ok bool) {
	s, ok = strings.CutPrefix(s, prefix)
	if !ok {
		return 0, "", false
	}
	end := strings.IndexByte(s, ']')
	if end <= 0 {
		return 0, "", false
	}
	v, err := strconv.ParseUint(s[:end], 10, 31)
	if err != nil {
		return 0, "", false
	}
	return int(v), s[end+1:], true
}

// unnamedFunction is the display name of a Wasm function without a name.
func unnamedFunction(module, index int) string {
	return "wasm[" + strconv.Itoa(module) + "]::function[" + strconv.Itoa(index) + "]"
}

// maxSymbolLen is the length, in characters, at which Wasmtime 37 and 39
// cut a function name in a symbol.
const maxSymbolLen = 96

// cleanSymbolName is what Wasmtime 37 and 39 put into a symbol for a
// function name (Compiler::clean_symbol in crates/wasmtime/src/compile.rs):
// characters that are not graphic ASCII become '?', runs of '?' collapse
// to one, and the result is cut at 96 characters. It is used only to check
// that a name found in .wasmtime.info belongs to a symbol.
func cleanSymbolName(name string) string {
	graphic := func(r rune) bool { return r > ' ' && r < 0x7f }
	clean := true
	for _, r := range name {
		if !graphic(r) {
			clean = false
			break
		}
	}
	if clean {
		if len(name) > maxSymbolLen {
			return name[:maxSymbolLen]
		}
		return name
	}
	var b strings.Builder
	n := 0
	last := rune(0)
	for _, r := range name {
		if n == maxSymbolLen {
			break
		}
		if !graphic(r) {
			r = '?'
		}
		if last == '?' && r == '?' {
			continue
		}
		last = r
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// engineVersion reads the version string at the start of .wasmtime.engine:
// a format byte 0, a length byte, then the version ("3.0.0" up to Wasmtime
// 37, only the major "39" since 38).
func engineVersion(sec []byte) string {
	if len(sec) < 2 || sec[0] != 0 {
		return ""
	}
	n := int(sec[1])
	if n == 0 || len(sec) < 2+n || !utf8.Valid(sec[2:2+n]) {
		return ""
	}
	return string(sec[2 : 2+n])
}

// majorVersion is the leading number of a version string, or -1.
func majorVersion(v string) int {
	end := 0
	for end < len(v) && end < 6 && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	if end == 0 || (end < len(v) && v[end] != '.') {
		return -1
	}
	n, _ := strconv.Atoi(v[:end])
	return n
}

// infoEncoding is how .wasmtime.info was serialised.
type infoEncoding int

const (
	// bincode (Wasmtime up to 20): fixed-width little-endian integers,
	// u64 lengths.
	bincode infoEncoding = iota
	// postcard (Wasmtime 21 and later): LEB128 varints.
	postcard
)

// infoEncodings returns the encodings to try for a Wasmtime major version.
// The switch happened in Wasmtime 21 (source: serialize_info).
func infoEncodings(major int) []infoEncoding {
	switch {
	case major < 0:
		return []infoEncoding{postcard, bincode}
	case major <= 20:
		return []infoEncoding{bincode}
	default:
		return []infoEncoding{postcard}
	}
}

// infoReader decodes the two encodings. Every read checks bounds; errors
// are sticky.
type infoReader struct {
	b   []byte
	p   int
	enc infoEncoding
	bad bool
}

func (r *infoReader) u32() uint32 {
	if r.enc == bincode {
		if r.bad || len(r.b)-r.p < 4 {
			r.bad = true
			return 0
		}
		v := binary.LittleEndian.Uint32(r.b[r.p:])
		r.p += 4
		return v
	}
	v := r.varint(5)
	if v > 1<<32-1 {
		r.bad = true
	}
	return uint32(v)
}

// length reads a sequence length (u64 in bincode, varint usize in postcard).
func (r *infoReader) length() uint64 {
	if r.enc == bincode {
		if r.bad || len(r.b)-r.p < 8 {
			r.bad = true
			return 0
		}
		v := binary.LittleEndian.Uint64(r.b[r.p:])
		r.p += 8
		return v
	}
	return r.varint(10)
}

func (r *infoReader) varint(maxBytes int) uint64 {
	var v uint64
	for i := 0; i < maxBytes; i++ {
		if r.bad || r.p >= len(r.b) {
			r.bad = true
			return 0
		}
		c := r.b[r.p]
		r.p++
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v
		}
	}
	r.bad = true
	return 0
}

// maxModuleNameLen bounds the module name read from .wasmtime.info.
const maxModuleNameLen = 1024

// moduleName reads Module::name, an Option<String>, from the start of the
// .wasmtime.info of a core module. The field is first in Module; since
// Wasmtime 38 it follows a module_index varint.
func moduleName(info []byte, major int) string {
	if major < 0 {
		return ""
	}
	enc := infoEncodings(major)[0]
	r := &infoReader{b: info, enc: enc}
	if major >= 38 {
		r.varint(5)
	}
	if r.bad || r.p >= len(info) || info[r.p] != 1 {
		return ""
	}
	r.p++
	n := r.length()
	if r.bad || n == 0 || n > maxModuleNameLen || n > uint64(len(info)-r.p) {
		return ""
	}
	s := info[r.p : r.p+int(n)]
	if !utf8.Valid(s) {
		return ""
	}
	return string(s)
}

// nameEntry is one FunctionName of .wasmtime.info: the name of function
// idx is pool[off:off+len] of .name.wasm.
type nameEntry struct {
	idx, off, len uint32
}

// nameTable is one decoded func_names vector.
type nameTable struct {
	entries    []nameEntry
	start, end uint32 // range of the pool it covers
}

// Bounds of the search for func_names tables.
const (
	maxNames         = 1 << 20
	maxNameTables    = 1024
	nameSearchBudget = 1 << 26 // integers decoded plus name bytes checked
)

// symbolFacts is what an image's symbols say about its Wasm functions,
// against which candidate name tables are checked.
type symbolFacts struct {
	// named maps a function index to the cleaned names symbols give it
	// (Wasmtime 37+; one per module of a component).
	named map[int][]string
	// defined holds every function index a symbol names.
	defined map[int]bool
	maxIdx  int
}

func newSymbolFacts() *symbolFacts {
	return &symbolFacts{named: make(map[int][]string), defined: make(map[int]bool), maxIdx: -1}
}

func (sf *symbolFacts) add(si symbolInfo) {
	if si.kind != WasmFunction {
		return
	}
	sf.defined[si.index] = true
	sf.maxIdx = max(sf.maxIdx, si.index)
	if si.name != "" {
		sf.named[si.index] = append(sf.named[si.index], si.name)
	}
}

// names resolves Wasm function names for one image.
type names struct {
	pool   []byte
	tables []nameTable
}

// findNames searches .wasmtime.info for the func_names vectors.
//
// Decoding the whole structure would mean mirroring Wasmtime's Module type
// for every version, so the vector is found by its shape instead: a count,
// then (idx, offset, len) triples with strictly increasing idx whose names
// lie back to back in the pool and are valid UTF-8 (Wasmtime appends a
// module's names to .name.wasm in index order). Small look-alikes are
// common, so a candidate is kept only if the symbols confirm it:
//   - when symbols carry names (Wasmtime 37+), every entry for a function
//     with a named symbol must clean to that symbol's name, and at least
//     one must; this also finds the tables of a component's modules;
//   - otherwise (Wasmtime 3), the table must cover the whole pool, name no
//     function past the last defined one (imports come first) and name at
//     least one defined function; of several, the longest, then the last
//     wins (the vector follows the bulk of Module's data).
//
// Every offset of .wasmtime.info is a candidate start, so the work per
// candidate is kept small and bounded by the search budget: the shape is
// checked first (a few integers per entry), then, for a table that has
// the shape, the names' first characters against the symbols, and only a
// table that passes that has its names cleaned and checked in full. Name
// bytes are thus read in full only for real tables, whose names are back
// to back and so cost the pool's size at most: a look-alike's offset and
// length, which may span most of the pool, cost nothing more (they used
// to be checked as UTF-8 first, which exhausted the budget on CRuby's
// 17,825 functions before the real table was reached).
func findNames(info, pool []byte, major int, sf *symbolFacts) *names {
	n := &names{pool: pool}
	if len(pool) == 0 || len(info) == 0 || len(info) > maxSectionRead {
		return n
	}
	budget := nameSearchBudget
	for _, enc := range infoEncodings(major) {
		for at := 0; at < len(info) && budget > 0 && len(n.tables) < maxNameTables; at++ {
			t, ok := parseNameTable(info, at, pool, enc, &budget)
			if ok && sf.confirms(t, pool, &budget) && validNames(t, pool, &budget) {
				n.tables = append(n.tables, t)
			}
		}
		if len(n.tables) > 0 {
			break
		}
	}
	if len(sf.named) == 0 && len(n.tables) > 1 {
		best := n.tables[0]
		for _, t := range n.tables[1:] {
			if len(t.entries) >= len(best.entries) {
				best = t
			}
		}
		n.tables = []nameTable{best}
	}
	return n
}

// confirms checks a table of the right shape against the symbols (see
// findNames), charging the bytes it reads to budget.
func (sf *symbolFacts) confirms(t nameTable, pool []byte, budget *int) bool {
	if len(sf.named) > 0 {
		// First the cheap necessary condition on every entry, so that a
		// look-alike is rejected having read little of the pool.
		matches := 0
		for _, e := range t.entries {
			want, ok := sf.named[int(e.idx)]
			if !ok {
				continue
			}
			name := pool[e.off : e.off+e.len]
			found := false
			for _, w := range want {
				*budget -= len(w) + 1
				found = found || cleanPrefixAgrees(name, w)
			}
			if !found || *budget < 0 {
				return false
			}
			matches++
		}
		if matches == 0 {
			return false
		}
		for _, e := range t.entries {
			want, ok := sf.named[int(e.idx)]
			if !ok {
				continue
			}
			*budget -= int(e.len)
			clean := cleanSymbolName(string(pool[e.off : e.off+e.len]))
			found := false
			for _, w := range want {
				found = found || w == clean
			}
			if !found || *budget < 0 {
				return false
			}
		}
		return true
	}
	if t.start != 0 || int(t.end) != len(pool) || int64(t.entries[len(t.entries)-1].idx) > int64(sf.maxIdx) {
		return false
	}
	for _, e := range t.entries {
		if sf.defined[int(e.idx)] {
			return true
		}
	}
	return false
}

// cleanPrefixAgrees is a necessary condition for cleanSymbolName(name) ==
// sym that reads at most len(sym)+1 bytes of name: up to the first '?' of
// sym (where cleaning may have replaced or collapsed characters), the
// cleaned name is the name itself, graphic ASCII; and a name that starts
// with a character that is not graphic ASCII cleans to a leading '?'.
func cleanPrefixAgrees(name []byte, sym string) bool {
	if len(sym) == 0 || len(sym) > maxSymbolLen {
		return len(name) == 0 && len(sym) == 0
	}
	i := strings.IndexByte(sym, '?')
	if i < 0 {
		i = len(sym)
	}
	if len(name) < i || string(name[:i]) != sym[:i] {
		return false
	}
	if i == len(sym) {
		// sym has no '?': the name is sym, or longer and cut at
		// maxSymbolLen characters (graphic ones, as sym's are).
		return len(name) == i || i == maxSymbolLen
	}
	if len(name) == i {
		return false // sym's '?' stands for a character of the name
	}
	if i == 0 {
		return name[0] == '?' || name[0] <= ' ' || name[0] >= 0x7f
	}
	return true
}

// validNames checks that every name of a confirmed table is UTF-8.
func validNames(t nameTable, pool []byte, budget *int) bool {
	if *budget -= int(t.end - t.start); *budget < 0 {
		return false
	}
	for _, e := range t.entries {
		if !utf8.Valid(pool[e.off : e.off+e.len]) {
			return false
		}
	}
	return true
}

func parseNameTable(info []byte, at int, pool []byte, enc infoEncoding, budget *int) (nameTable, bool) {
	r := &infoReader{b: info, p: at, enc: enc}
	n := r.length()
	minEntry := uint64(3)
	if enc == bincode {
		minEntry = 12
	}
	if r.bad || n == 0 || n > maxNames || n > uint64(len(info)-r.p)/minEntry {
		return nameTable{}, false
	}
	var entries []nameEntry
	var next uint64
	for i := uint64(0); i < n; i++ {
		e := nameEntry{idx: r.u32(), off: r.u32(), len: r.u32()}
		*budget -= 3
		if r.bad || *budget < 0 {
			return nameTable{}, false
		}
		end := uint64(e.off) + uint64(e.len)
		if end > uint64(len(pool)) || (i > 0 && (e.idx <= entries[i-1].idx || uint64(e.off) != next)) {
			return nameTable{}, false
		}
		next = end
		entries = append(entries, e)
	}
	return nameTable{entries: entries, start: entries[0].off, end: uint32(next)}, true
}

func (t nameTable) lookup(idx uint32, pool []byte) (string, bool) {
	i, found := slices.BinarySearchFunc(t.entries, idx, func(e nameEntry, idx uint32) int {
		return cmp.Compare(e.idx, idx)
	})
	if !found {
		return "", false
	}
	e := t.entries[i]
	return string(pool[e.off : e.off+e.len]), true
}

// forSymbol returns the exact name of function idx whose symbol carries
// the cleaned name symName (Wasmtime 37+). It answers only when the
// tables agree on one name that cleans to symName.
func (n *names) forSymbol(idx int, symName string) (string, bool) {
	found := ""
	ok := false
	for _, t := range n.tables {
		name, hit := t.lookup(uint32(idx), n.pool)
		if !hit || cleanSymbolName(name) != symName {
			continue
		}
		if ok && name != found {
			return "", false
		}
		found, ok = name, true
	}
	return found, ok
}

// forIndex returns the name of function idx for images whose symbols
// carry no names (Wasmtime 3).
func (n *names) forIndex(idx int) (string, bool) {
	if len(n.tables) != 1 {
		return "", false
	}
	return n.tables[0].lookup(uint32(idx), n.pool)
}
