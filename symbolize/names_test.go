package symbolize

import (
	"encoding/binary"
	"strings"
	"testing"
)

// postcardTable encodes a func_names vector the way Wasmtime 21+ does.
func postcardTable(entries ...nameEntry) []byte {
	b := binary.AppendUvarint(nil, uint64(len(entries)))
	for _, e := range entries {
		b = binary.AppendUvarint(b, uint64(e.idx))
		b = binary.AppendUvarint(b, uint64(e.off))
		b = binary.AppendUvarint(b, uint64(e.len))
	}
	return b
}

// bincodeTable encodes it the way Wasmtime up to 20 does.
func bincodeTable(entries ...nameEntry) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(entries)))
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint32(b, e.idx)
		b = binary.LittleEndian.AppendUint32(b, e.off)
		b = binary.LittleEndian.AppendUint32(b, e.len)
	}
	return b
}

func facts(syms ...string) *symbolFacts {
	sf := newSymbolFacts()
	for _, s := range syms {
		sf.add(classify(s))
	}
	return sf
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// A component's two modules share one pool; each has its own table. A
// look-alike whose name disagrees with a symbol is ignored.
func TestFindNamesComponent(t *testing.T) {
	pool := []byte("imp" + "foo bar" + "baz\n")
	sf := facts(
		"wasm[0]::function[1]::foo?bar",
		"wasm[1]::function[1]::baz?",
		"wasm[1]::function[2]",
	)
	info := cat(
		[]byte{7, 7},
		postcardTable(nameEntry{1, 0, 3}), // look-alike: "imp" is not foo?bar
		postcardTable(nameEntry{0, 0, 3}, nameEntry{1, 3, 7}), // module 0
		[]byte{0, 0, 0},
		postcardTable(nameEntry{1, 10, 4}), // module 1
	)
	n := findNames(info, pool, 39, sf)
	if len(n.tables) != 2 {
		t.Fatalf("%d tables, want 2", len(n.tables))
	}
	for _, c := range []struct {
		idx       int
		sym, want string
	}{{1, "foo?bar", "foo bar"}, {1, "baz?", "baz\n"}} {
		if got, ok := n.forSymbol(c.idx, c.sym); !ok || got != c.want {
			t.Errorf("forSymbol(%d, %q) = %q, %v; want %q", c.idx, c.sym, got, ok, c.want)
		}
	}
	if got, ok := n.forSymbol(2, "x"); ok {
		t.Errorf("forSymbol(2) = %q", got)
	}
}

// Wasmtime 3: symbols carry no names, so only a table covering the whole
// pool and naming a defined function counts; the longest wins.
func TestFindNamesWasmtime3(t *testing.T) {
	pool := []byte("hostab")
	sf := facts("_wasm_function_1", "_wasm_function_2", "_trampoline_0")
	real := bincodeTable(nameEntry{0, 0, 4}, nameEntry{1, 4, 1}, nameEntry{2, 5, 1})
	info := cat(
		bincodeTable(nameEntry{1, 0, 6}), // covers the pool, but shorter
		bincodeTable(nameEntry{9, 0, 6}), // names a function past the last
		bincodeTable(nameEntry{0, 0, 6}), // names only an import
		bincodeTable(nameEntry{1, 0, 4}), // does not cover the pool
		real,
		[]byte{1, 2, 3},
	)
	n := findNames(info, pool, 3, sf)
	for idx, want := range map[int]string{0: "host", 1: "a", 2: "b"} {
		if got, ok := n.forIndex(idx); !ok || got != want {
			t.Errorf("forIndex(%d) = %q, %v; want %q", idx, got, ok, want)
		}
	}
	if got, ok := n.forIndex(3); ok {
		t.Errorf("forIndex(3) = %q", got)
	}
}

// Corrupt tables: every check on its own.
func TestParseNameTableRejects(t *testing.T) {
	pool := []byte("abcdef\xff")
	for name, info := range map[string][]byte{
		"empty":       postcardTable(),
		"beyond pool": postcardTable(nameEntry{0, 0, 8}),
		"gap":         postcardTable(nameEntry{0, 0, 1}, nameEntry{1, 2, 1}),
		"unsorted":    postcardTable(nameEntry{1, 0, 1}, nameEntry{1, 1, 1}),
		"truncated":   postcardTable(nameEntry{0, 0, 1}, nameEntry{1, 1, 1})[:5],
		"long varint": {1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 1},
		"huge count":  {0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 1},
	} {
		budget := nameSearchBudget
		if tb, ok := parseNameTable(info, 0, pool, postcard, &budget); ok {
			t.Errorf("%s: accepted %+v", name, tb)
		}
	}
	budget := 5
	if _, ok := parseNameTable(postcardTable(nameEntry{0, 0, 1}, nameEntry{1, 1, 1}), 0, pool, postcard, &budget); ok {
		t.Errorf("table parsed past the budget")
	}
}

// Names that are not UTF-8 are rejected once a table is confirmed.
func TestValidNames(t *testing.T) {
	pool := []byte("abcdef\xff")
	budget := nameSearchBudget
	for _, c := range []struct {
		t    nameTable
		want bool
	}{
		{nameTable{entries: []nameEntry{{0, 0, 6}}, start: 0, end: 6}, true},
		{nameTable{entries: []nameEntry{{0, 0, 6}, {1, 6, 1}}, start: 0, end: 7}, false},
	} {
		if got := validNames(c.t, pool, &budget); got != c.want {
			t.Errorf("validNames(%+v) = %v", c.t, got)
		}
	}
	budget = 3
	if validNames(nameTable{entries: []nameEntry{{0, 0, 6}}, start: 0, end: 6}, pool, &budget) {
		t.Errorf("names checked past the budget")
	}
}

// CRuby for WASI (testdata/guest) on Wasmtime 37 and 39: 17,825 functions,
// whose .wasmtime.info has, before its func_names vector, a great many
// offsets where a one-entry look-alike spans most of the pool. Reading
// each look-alike's name before checking it against the symbols used up
// the search budget before the real vector, so names longer than a
// symbol keeps (Rust's hashbrown::...::reserve_rehash::h... (.llvm.N))
// came out cut at 96 characters.
func TestFindNamesManyLookalikes(t *testing.T) {
	long := "hashbrown::raw::RawTable$LT$T$C$A$GT$::reserve_rehash::h7973861bbde463d1 (.llvm.7530564025942901316)"
	filler := make([]byte, 300000)
	for i := range filler {
		filler[i] = 'a' + byte(i%26)
	}
	pool := cat([]byte("imp"), []byte(long), filler, []byte("tail"))
	sf := facts("wasm[0]::function[1]::"+cleanSymbolName(long), "wasm[0]::function[2]::"+cleanSymbolName(string(filler)), "wasm[0]::function[3]::tail")
	if len(cleanSymbolName(long)) != 96 {
		t.Fatalf("the long name's symbol is %q", cleanSymbolName(long))
	}
	// A look-alike: one entry naming function 2 with the bytes from 3
	// to the end of the pool (valid UTF-8, but not what symbol 2 says).
	lookalike := postcardTable(nameEntry{2, 3, uint32(len(pool) - 3)})
	var info []byte
	for i := 0; i < 5000; i++ {
		info = append(info, lookalike...)
	}
	info = cat(info, postcardTable(
		nameEntry{0, 0, 3},
		nameEntry{1, 3, uint32(len(long))},
		nameEntry{2, uint32(3 + len(long)), uint32(len(filler))},
		nameEntry{3, uint32(3 + len(long) + len(filler)), 4},
	))
	if cost := 5000 * 3 * len(pool); cost < nameSearchBudget {
		t.Fatalf("the look-alikes would cost %d of the budget %d if read: no test", cost, nameSearchBudget)
	}
	n := findNames(info, pool, 37, sf)
	if got, ok := n.forSymbol(1, cleanSymbolName(long)); !ok || got != long {
		t.Errorf("forSymbol(1) = %q, %v; want %q", got, ok, long)
	}
	if got, ok := n.forSymbol(3, "tail"); !ok || got != "tail" {
		t.Errorf("forSymbol(3) = %q, %v", got, ok)
	}
}

// cleanPrefixAgrees never rejects a name that cleans to the symbol.
func TestCleanPrefixAgrees(t *testing.T) {
	long := strings.Repeat("x", 120)
	for _, name := range []string{
		"", "a", "run", "foo bar", " lead", "?q", "??", "a??b", "a \t\nb", "\xff\xfe", "é", "aé",
		long, long[:96], long[:95] + " tail", long[:96] + " tail", "a" + strings.Repeat(" ", 200) + "b",
	} {
		sym := cleanSymbolName(name)
		if !cleanPrefixAgrees([]byte(name), sym) {
			t.Errorf("cleanPrefixAgrees(%q, %q) = false, but the name cleans to it", name, sym)
		}
	}
	for _, c := range [][2]string{
		{"run", "ran"}, {"run", "ru"}, {"ru", "run"}, {"a b", "b?c"}, {"a", "a?"}, {"", "?"},
		{"ab", "?b"}, {long, long[:95]}, {long[:97], long[:97]},
	} {
		if cleanPrefixAgrees([]byte(c[0]), c[1]) && cleanSymbolName(c[0]) != c[1] {
			// Not a bug (the check is only necessary), but these are
			// meant to be caught early.
			t.Errorf("cleanPrefixAgrees(%q, %q) = true", c[0], c[1])
		}
	}
}

func FuzzCleanPrefixAgrees(f *testing.F) {
	f.Add("foo bar", "foo?bar")
	f.Add("\x00\x01x", "?x")
	f.Fuzz(func(t *testing.T, name, sym string) {
		if !cleanPrefixAgrees([]byte(name), cleanSymbolName(name)) {
			t.Errorf("cleanPrefixAgrees(%q, its clean name %q) = false", name, cleanSymbolName(name))
		}
		if cleanSymbolName(name) == sym && !cleanPrefixAgrees([]byte(name), sym) {
			t.Errorf("cleanPrefixAgrees(%q, %q) = false", name, sym)
		}
	})
}

func TestModuleName(t *testing.T) {
	bincodeName := cat([]byte{1}, binary.LittleEndian.AppendUint64(nil, 3), []byte("abc"), []byte{9, 9})
	for _, c := range []struct {
		info  []byte
		major int
		want  string
	}{
		{bincodeName, 3, "abc"},
		{[]byte{1, 3, 'a', 'b', 'c', 0}, 37, "abc"},
		{[]byte{0, 1, 3, 'a', 'b', 'c'}, 39, "abc"},
		{[]byte{0x85, 0x01, 1, 1, 'x'}, 39, "x"},
		{[]byte{0, 0, 1, 1, 'x'}, 39, ""},
		{[]byte{1, 3, 'a', 'b', 'c'}, -1, ""},
		{[]byte{1, 9, 'a'}, 37, ""},
		{[]byte{1, 1, 0xff}, 37, ""},
		{nil, 39, ""},
	} {
		if got := moduleName(c.info, c.major); got != c.want {
			t.Errorf("moduleName(%x, %d) = %q, want %q", c.info, c.major, got, c.want)
		}
	}
}

func TestEngineVersion(t *testing.T) {
	for in, want := range map[string]string{
		"\x00\x0239\x18x86": "39",
		"\x00\x053.0.0xyz":  "3.0.0",
		"\x01\x0239":        "",
		"\x00\x0939":        "",
		"\x00\x00":          "",
		"":                  "",
	} {
		if got := engineVersion([]byte(in)); got != want {
			t.Errorf("engineVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
