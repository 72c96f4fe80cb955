package symbolize

import (
	"encoding/binary"
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
		"empty":         postcardTable(),
		"beyond pool":   postcardTable(nameEntry{0, 0, 8}),
		"gap":           postcardTable(nameEntry{0, 0, 1}, nameEntry{1, 2, 1}),
		"unsorted":      postcardTable(nameEntry{1, 0, 1}, nameEntry{1, 1, 1}),
		"invalid utf-8": postcardTable(nameEntry{0, 6, 1}),
		"truncated":     postcardTable(nameEntry{0, 0, 1}, nameEntry{1, 1, 1})[:5],
		"long varint":   {1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 1},
		"huge count":    {0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 1},
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
