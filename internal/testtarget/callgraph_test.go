package testtarget

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// leb is the unsigned LEB128 of n.
func leb(n int) []byte {
	var b []byte
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func section(id byte, body ...[]byte) []byte {
	var b []byte
	for _, p := range body {
		b = append(b, p...)
	}
	return append(append([]byte{id}, leb(len(b))...), b...)
}

func vec(items ...[]byte) []byte {
	b := leb(len(items))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

func str(s string) []byte { return append(leb(len(s)), s...) }

func body(code ...byte) []byte {
	b := append([]byte{0}, code...) // no locals
	return append(leb(len(b)), b...)
}

// testModule: import 0 imp () -> (); a () -> (), b (i32) -> (i32),
// c (i32) -> (i32), d () -> (). The table holds b and d; c is only
// declared (for ref.func). a calls b directly and calls indirectly with
// type (i32) -> (i32); c's only immediate is the byte of a call opcode.
func testModule() []byte {
	m := []byte("\x00asm\x01\x00\x00\x00")
	m = append(m, section(1, vec([]byte{0x60, 0, 0}, []byte{0x60, 1, 0x7f, 1, 0x7f}))...)
	m = append(m, section(2, vec(append(append(str("env"), str("imp")...), 0x00, 0)))...)
	m = append(m, section(3, vec([]byte{0}, []byte{1}, []byte{1}, []byte{0}))...)
	m = append(m, section(4, vec([]byte{0x70, 0x00, 2}))...)
	m = append(m, section(9, vec(
		[]byte{0, 0x41, 0, 0x0b, 2, 2, 4}, // active, table 0 at 0: b d
		[]byte{3, 0, 1, 3},                // declarative: c
	))...)
	m = append(m, section(10, vec(
		body(0x41, 0x10, 0x10, 2, 0x1a, // i32.const 16, call b, drop
			0x41, 1, 0x41, 0, 0x11, 1, 0, 0x1a, // call_indirect (type 1) table 0, drop
			0x10, 0, 0x0b), // call imp, end
		body(0x20, 0, 0x0b),
		body(0x41, 0x10, 0x0b),
		body(0x02, 0x40, 0x0c, 0, 0x0b, 0x0b),
	))...)
	names := vec(
		append(leb(0), str("imp")...), append(leb(1), str("a")...), append(leb(2), str("b")...),
		append(leb(3), str("c;x")...), append(leb(4), str("d")...))
	m = append(m, section(0, str("name"), []byte{1}, leb(len(names)), names)...)
	return m
}

func TestParseCallGraph(t *testing.T) {
	g, err := ParseCallGraph(testModule())
	if err != nil {
		t.Fatal(err)
	}
	if g.Imports != 1 || len(g.Names) != 5 || g.ByName["c;x"][0] != 3 {
		t.Fatalf("imports %d, names %v", g.Imports, g.Names)
	}
	for _, tc := range []struct {
		caller, callee int
		want           string
	}{
		{1, 2, "direct"}, {1, 0, "direct"},
		{1, 3, ""}, // the right type, but in no table
		{1, 4, ""}, // in the table, but not of the indirect call's type
		{3, 2, ""}, // c's immediate 0x10 is no call
		{4, 1, ""},
	} {
		if got := g.Edge(tc.caller, tc.callee); got != tc.want {
			t.Errorf("Edge(%d, %d) = %q, want %q", tc.caller, tc.callee, got, tc.want)
		}
	}
	if !g.InTable[2] || !g.InTable[4] || g.InTable[3] {
		t.Errorf("in table: %v", g.InTable)
	}

	display := func(s string) string { return strings.ReplaceAll(s, ";", ":") }
	c := g.CheckStacks(map[string]int{
		"a;b":                1,
		"a;imp":              2,
		"a;c:x":              4,  // c;x shown as c:x: invalid pair
		"a;[host];d":         8,  // a marker breaks adjacency
		"[no Wasm]":          16, // no Wasm frame
		"a;wasm[0]::func[9]": 32, // not a name of the name section
	}, display)
	if c.Samples != 47 || c.Valid != 11 {
		t.Errorf("samples %d, valid %d; want 47, 11", c.Samples, c.Valid)
	}
	if c.Invalid[Pair{"a", "c:x"}] != 4 || len(c.Invalid) != 1 {
		t.Errorf("invalid %v", c.Invalid)
	}
	if c.Unknown["wasm[0]::func[9]"] != 32 || len(c.Unknown) != 1 {
		t.Errorf("unknown %v", c.Unknown)
	}
	if r := c.Report(g); !strings.Contains(r, "invalid      4  a;c:x (no direct call, callee in no table)") {
		t.Errorf("report:\n%s", r)
	}
	c = g.CheckStacks(map[string]int{"imp;b": 1, "a;b": 1}, display)
	if r := c.Report(g); !strings.Contains(r, "invalid      1  imp;b (caller makes no calls)\n") {
		t.Errorf("report:\n%s", r)
	}
	if x := g.Bridges(1, 2, 4); len(x) != 0 {
		t.Errorf("Bridges(a, b) = %v", x)
	}
}

func TestParseCallGraphRejects(t *testing.T) {
	m := testModule()
	boundary := map[int]bool{}
	for p := 8; p < len(m); {
		boundary[p] = true
		r := &cgReader{b: m, p: p + 1}
		size := r.u32()
		p = r.p + size
	}
	for i := 8; i < len(m); i++ {
		if boundary[i] {
			continue // a module with fewer sections
		}
		if _, err := ParseCallGraph(m[:i]); err == nil {
			t.Errorf("a module cut at %d bytes parsed", i)
		}
	}
	bad := testModule()
	i := strings.Index(string(bad), "\x20\x00\x0b") // b's local.get 0
	bad[i] = 0xff
	if _, err := ParseCallGraph(bad); err == nil || !strings.Contains(err.Error(), "unsupported opcode 0xff") {
		t.Errorf("unknown opcode: %v", err)
	}
}

// The real guest of testdata/guest, when downloaded: CRuby's call graph.
func TestParseCallGraphRuby(t *testing.T) {
	wasm, err := os.ReadFile(filepath.Join(Root(), "testdata/guest/cache/ruby.debug+stdlib.wasm"))
	if err != nil {
		t.Skip("testdata/guest/cache not downloaded (make targets)")
	}
	g, err := ParseCallGraph(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if g.Imports != 59 || len(g.Names) != 17884 || len(g.InTable) < 8000 {
		t.Errorf("imports %d, names %d, in table %d", g.Imports, len(g.Names), len(g.InTable))
	}
	fn := func(name string) int {
		if f := g.ByName[name]; len(f) == 1 {
			return f[0]
		}
		t.Fatalf("no single function %s", name)
		return -1
	}
	for _, e := range [][2]string{{"rb_protect", "rb_eval_string_value_protect_thunk"}, {"ruby_xmalloc", "rb_gc_impl_malloc"}} {
		if g.Edge(fn(e[0]), fn(e[1])) == "" {
			t.Errorf("%s;%s: no edge", e[0], e[1])
		}
	}
	// issue 12: rb_reg_search0;rb_reg_onig_match is no call, the frame
	// between them is rb_reg_search_set_match.
	if e := g.Edge(fn("rb_reg_search0"), fn("rb_reg_onig_match")); e != "" {
		t.Errorf("rb_reg_search0;rb_reg_onig_match: %s edge", e)
	}
	if x := g.Bridges(fn("rb_reg_search0"), fn("rb_reg_onig_match"), 4); len(x) != 1 || g.Names[x[0]] != "rb_reg_search_set_match" {
		t.Errorf("bridges of rb_reg_search0;rb_reg_onig_match: %v", x)
	}
}
