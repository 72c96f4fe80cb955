package symbolize

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// A perf map as Wasmtime 39 writes it (ProfilingStrategy 3, captured live
// from the same demo module as the golden images), plus lines a tolerant
// reader must survive.
const perfMap = `0x7fb0ac251000 2e chain_a
0x7fb0ac251040 2e chain_b
0x7fb0ac251080 71 chain_c
0x7fb0ac251100 c wasm[0]::function[4]
0x7fb0ac251120 28 weird;name_with space ü
0x7fb0ac25116f 9e wasm[0]::array_to_wasm_trampoline[1]
0x7fb0ac251349 6c signatures[0]::wasm_to_array_trampoline
7fb0ac260000 10 no_0x_prefix
7fb0ac260100 10 crlf_line` + "\r" + `
7fb0ac260200 20 first_at_same_start
7fb0ac260200 10 second_at_same_start
7fb0ac260300 100 overlapping_next
7fb0ac260380 10 _wasm_function_7
7fb0ac260400 0 zero_size
ffffffffffffffff 10 wraps
zz 10 bad_start
7fb0ac260500 zz bad_size
7fb0ac260600 10
justoneword
`

func TestParsePerfMap(t *testing.T) {
	in := perfMap + "7fb0ac261000 10 " + strings.Repeat("x", 5000) + "\n7fb0ac262000 10 after_long_line"
	funcs, err := ParsePerfMap(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Func{
		{0x7fb0ac251000, 0x7fb0ac25102e, "chain_a", "", WasmFunction, -1, 0},
		{0x7fb0ac251040, 0x7fb0ac25106e, "chain_b", "", WasmFunction, -1, 0},
		{0x7fb0ac251080, 0x7fb0ac2510f1, "chain_c", "", WasmFunction, -1, 0},
		{0x7fb0ac251100, 0x7fb0ac25110c, "wasm[0]::function[4]", "", WasmFunction, 4, 0},
		{0x7fb0ac251120, 0x7fb0ac251148, "weird;name_with space ü", "", WasmFunction, -1, 0},
		{0x7fb0ac25116f, 0x7fb0ac25120d, "wasm[0]::array_to_wasm_trampoline[1]", "", Trampoline, -1, 0},
		{0x7fb0ac251349, 0x7fb0ac2513b5, "signatures[0]::wasm_to_array_trampoline", "", Trampoline, -1, 0},
		{0x7fb0ac260000, 0x7fb0ac260010, "no_0x_prefix", "", WasmFunction, -1, 0},
		{0x7fb0ac260100, 0x7fb0ac260110, "crlf_line", "", WasmFunction, -1, 0},
		{0x7fb0ac260200, 0x7fb0ac260210, "second_at_same_start", "", WasmFunction, -1, 0},
		{0x7fb0ac260300, 0x7fb0ac260380, "overlapping_next", "", WasmFunction, -1, 0},
		{0x7fb0ac260380, 0x7fb0ac260390, "wasm[0]::function[7]", "", WasmFunction, 7, 0},
		{0x7fb0ac262000, 0x7fb0ac262010, "after_long_line", "", WasmFunction, -1, 0},
	}
	if len(funcs) != len(want) {
		t.Errorf("%d entries, want %d", len(funcs), len(want))
	}
	for i := range min(len(funcs), len(want)) {
		if funcs[i] != want[i] {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, funcs[i], want[i])
		}
	}
	if f, ok := lookupFunc(funcs, 0x7fb0ac251090); !ok || f.Name != "chain_c" {
		t.Errorf("lookup = %+v, %v", f, ok)
	}
}

func TestParsePerfMapReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("1000 10 a\n2000 10 b\n"), iotest.ErrReader(boom))
	funcs, err := ParsePerfMap(r)
	if !errors.Is(err, boom) || len(funcs) != 2 {
		t.Errorf("got %d entries, %v; want 2 and the read error", len(funcs), err)
	}
}

func TestParsePerfMapLineLimit(t *testing.T) {
	in := strings.Repeat("1000 1 f\n", 11)
	funcs, err := parsePerfMap(strings.NewReader(in), 10)
	if err == nil || len(funcs) != 1 {
		t.Errorf("got %d entries, %v; want 1 and a line-count error", len(funcs), err)
	}
}
