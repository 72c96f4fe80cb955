package symbolize

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// The images in testdata were captured with TestCapture from live
// wasmtime-go embedders (v39.0.1, v37.0.0, v3.0.2) running testdata/demo.wat
// compiled to binary by Wasmtime 39's wat parser. Function 0 is the import
// env.tick, function 4 has no name, function 5's name has ';', '\n', spaces
// and a non-ASCII letter, and function 6's name is longer than the 96
// bytes Wasmtime 37+ keep in symbols.

const (
	weirdName = "weird;name\nwith space ü"
	longName  = "a_very_long_function_name_that_goes_on_and_on_beyond_the_ninety_six_character_limit_of_wasmtime_symbols_end"
)

type wantFunc struct {
	off, size uint64 // from TextStart
	name      string
	symbol    string
	kind      Kind
	index     int
}

type golden struct {
	file       string
	base       uint64 // where it was captured (any value works)
	textOff    uint64
	textSize   uint64
	version    string
	moduleName string
	funcs      []wantFunc
}

func modernFuncs(tramp [4][2]uint64) []wantFunc {
	return []wantFunc{
		{0x000, 46, "chain_a", "wasm[0]::function[1]::chain_a", WasmFunction, 1},
		{0x040, 46, "chain_b", "wasm[0]::function[2]::chain_b", WasmFunction, 2},
		{0x080, 113, "chain_c", "wasm[0]::function[3]::chain_c", WasmFunction, 3},
		{0x100, 12, "wasm[0]::function[4]", "wasm[0]::function[4]", WasmFunction, 4},
		{0x120, 40, weirdName, "wasm[0]::function[5]::weird;name?with?space?", WasmFunction, 5},
		{0x160, 15, longName, "wasm[0]::function[6]::" + longName[:96], WasmFunction, 6},
		{tramp[0][0], tramp[0][1], "wasm[0]::array_to_wasm_trampoline[1]", "wasm[0]::array_to_wasm_trampoline[1]", Trampoline, -1},
		{tramp[1][0], tramp[1][1], "wasm[0]::array_to_wasm_trampoline[5]", "wasm[0]::array_to_wasm_trampoline[5]", Trampoline, -1},
		{tramp[2][0], tramp[2][1], "wasm[0]::array_to_wasm_trampoline[6]", "wasm[0]::array_to_wasm_trampoline[6]", Trampoline, -1},
		{tramp[3][0], tramp[3][1], "signatures[0]::wasm_to_array_trampoline", "signatures[0]::wasm_to_array_trampoline", Trampoline, -1},
	}
}

var goldens = []golden{
	{
		file: "v39-module.elf", base: 0x7f11fac76000, textOff: 0x1000, textSize: 0x1000,
		version: "39", moduleName: "demo_mod",
		funcs: modernFuncs([4][2]uint64{{0x16f, 158}, {0x20d, 158}, {0x2ab, 158}, {0x349, 108}}),
	},
	{
		file: "v37-module.elf", base: 0x7f93153fd000, textOff: 0x1000, textSize: 0x1000,
		version: "37.0.0", moduleName: "demo_mod",
		funcs: modernFuncs([4][2]uint64{{0x16f, 59}, {0x1aa, 59}, {0x1e5, 59}, {0x220, 116}}),
	},
	{
		file: "v3-module.elf", base: 0x7f1a1dbd5000, textOff: 0x1000, textSize: 0x1000,
		version: "3.0.0", moduleName: "demo_mod",
		funcs: []wantFunc{
			{0x000, 41, "chain_a", "_wasm_function_1", WasmFunction, 1},
			{0x030, 41, "chain_b", "_wasm_function_2", WasmFunction, 2},
			{0x060, 115, "chain_c", "_wasm_function_3", WasmFunction, 3},
			{0x0e0, 15, "wasm[0]::function[4]", "_wasm_function_4", WasmFunction, 4},
			{0x0f0, 38, weirdName, "_wasm_function_5", WasmFunction, 5},
			{0x120, 15, longName, "_wasm_function_6", WasmFunction, 6},
			{0x130, 40, "_trampoline_0", "_trampoline_0", Trampoline, -1},
		},
	},
	{
		file: "v3-host.elf", base: 0x7f1a1dbd2000, textOff: 0x1000, textSize: 0x1000,
		version: "3.0.0", moduleName: "",
		funcs: []wantFunc{
			{0x00, 40, "host_to_wasm", "host_to_wasm", Trampoline, -1},
			{0x30, 54, "wasm_to_host", "wasm_to_host", Trampoline, -1},
		},
	},
}

func readGolden(t testing.TB, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseImageGolden(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.file, func(t *testing.T) {
			img := readGolden(t, g.file)
			m, err := ParseImage(bytes.NewReader(img), int64(len(img)), g.base)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, g, g.base, m)
			if m.size != uint64(len(img)) {
				t.Errorf("image size %#x, want %#x (the captured length)", m.size, len(img))
			}
		})
	}
}

// checkGolden compares a module parsed from golden image g at base.
func checkGolden(t *testing.T, g golden, base uint64, m *Module) {
	t.Helper()
	if m.Base != base || m.TextStart != base+g.textOff || m.TextEnd != base+g.textOff+g.textSize {
		t.Errorf("base %#x text %#x-%#x, want %#x text %#x-%#x", m.Base, m.TextStart, m.TextEnd,
			base, base+g.textOff, base+g.textOff+g.textSize)
	}
	if m.Version != g.version || m.Name != g.moduleName {
		t.Errorf("version %q name %q, want %q %q", m.Version, m.Name, g.version, g.moduleName)
	}
	if len(m.Funcs) != len(g.funcs) {
		t.Errorf("%d funcs, want %d", len(m.Funcs), len(g.funcs))
	}
	for i, w := range g.funcs {
		want := Func{Start: m.TextStart + w.off, End: m.TextStart + w.off + w.size,
			Name: w.name, Symbol: w.symbol, Kind: w.kind, Index: w.index}
		if i < len(m.Funcs) && m.Funcs[i] != want {
			t.Errorf("func %d:\n got %+v\nwant %+v", i, m.Funcs[i], want)
		}
		for _, pc := range []uint64{want.Start, want.Start + w.size/2, want.End - 1} {
			if f, ok := m.Lookup(pc); !ok || f != want {
				t.Errorf("Lookup(text+%#x) = %+v, %v; want %s", pc-m.TextStart, f, ok, w.name)
			}
		}
	}
	for _, pc := range []uint64{m.TextStart - 1, m.TextEnd, m.TextEnd - 1, 0} {
		if f, ok := m.Lookup(pc); ok {
			t.Errorf("Lookup(%#x) = %+v, want nothing", pc, f)
		}
	}
}

// The image is parsed only up to its own extent: trailing bytes (the rest
// of its last page, or the next mapping) do not matter, a cut image fails.
func TestParseImageBounds(t *testing.T) {
	img := readGolden(t, "v39-module.elf")
	padded := append(append([]byte(nil), img...), make([]byte, 5000)...)
	if _, err := ParseImage(bytes.NewReader(padded), int64(len(padded)), 0x10000); err != nil {
		t.Errorf("padded image: %v", err)
	}
	for _, n := range []int{0, 3, 64, 0x1000, len(img) - 1} {
		if _, err := ParseImage(bytes.NewReader(img[:n]), int64(n), 0x10000); !errors.Is(err, ErrNotImage) {
			t.Errorf("image cut at %d: %v, want ErrNotImage", n, err)
		}
	}
	if _, err := ParseImage(bytes.NewReader(img), int64(len(img)), ^uint64(0)-100); err == nil {
		t.Errorf("image wrapping the address space: no error")
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		sym  string
		want symbolInfo
	}{
		{"wasm[0]::function[3]::chain_c", symbolInfo{WasmFunction, 0, 3, "chain_c"}},
		{"wasm[2]::function[17]", symbolInfo{WasmFunction, 2, 17, ""}},
		{"wasm[0]::function[1]::a::b::<c as d>", symbolInfo{WasmFunction, 0, 1, "a::b::<c as d>"}},
		{"wasm[0]::function[1]:x", symbolInfo{Other, 0, -1, ""}},
		{"wasm[0]::function[]::x", symbolInfo{Other, 0, -1, ""}},
		{"wasm[0]::function[99999999999]::x", symbolInfo{Other, 0, -1, ""}},
		{"_wasm_function_12", symbolInfo{WasmFunction, 0, 12, ""}},
		{"_wasm_function_x", symbolInfo{Other, 0, -1, ""}},
		{"_trampoline_0", symbolInfo{Trampoline, 0, -1, ""}},
		{"host_to_wasm", symbolInfo{Trampoline, 0, -1, ""}},
		{"wasm_to_host", symbolInfo{Trampoline, 0, -1, ""}},
		{"wasm[0]::array_to_wasm_trampoline[5]", symbolInfo{Trampoline, 0, -1, ""}},
		{"signatures[0]::wasm_to_array_trampoline", symbolInfo{Trampoline, 0, -1, ""}},
		{"wasmtime_builtin_memory_grow", symbolInfo{Trampoline, 0, -1, ""}},
		{"component-trampolines[0]-wasm-call", symbolInfo{Trampoline, 0, -1, ""}},
		{"component-trampolines[3]-array-call-component-lower-import[3]", symbolInfo{Trampoline, 0, -1, ""}},
		{"wasm[2]::array_to_wasm_trampoline[1]", symbolInfo{Trampoline, 2, -1, ""}},
		{"wasm[2]::array_to_wasm_trampoline[1]x", symbolInfo{Trampoline, 0, -1, ""}},
		{"resource_drop_trampoline", symbolInfo{Trampoline, 0, -1, ""}},
		{"unsafe-intrinsics-wasm-call-u8-native-load", symbolInfo{Trampoline, 0, -1, ""}},
		{"something_else", symbolInfo{Other, 0, -1, ""}},
	} {
		if got := classify(c.sym); got != c.want {
			t.Errorf("classify(%q) = %+v, want %+v", c.sym, got, c.want)
		}
	}
}

func TestCleanSymbolName(t *testing.T) {
	for in, want := range map[string]string{
		"chain_c":          "chain_c",
		weirdName:          "weird;name?with?space?",
		"a  b":             "a?b",
		"a??  b":           "a?b", // runs collapse across original '?' too
		"?x":               "?x",
		longName:           longName[:96],
		"é" + longName:     "?" + longName[:95],
		"tab\there\u00a0!": "tab?here?!",
	} {
		if got := cleanSymbolName(in); got != want {
			t.Errorf("cleanSymbolName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMajorVersion(t *testing.T) {
	for in, want := range map[string]int{"39": 39, "3.0.0": 3, "37.0.0": 37, "": -1, "custom": -1, "39x": -1, "1234567": -1} {
		if got := majorVersion(in); got != want {
			t.Errorf("majorVersion(%q) = %d, want %d", in, got, want)
		}
	}
}

// Found by FuzzParseImage: debug/elf gives compressed sections no
// ReaderAt (and would inflate them). Wasmtime never compresses.
func TestParseImageCompressedSection(t *testing.T) {
	img := append([]byte(nil), readGolden(t, "v39-module.elf")...)
	shoff := binary.LittleEndian.Uint64(img[0x28:])
	flags := img[shoff+1*shdrSize+8:] // section 1, .wasmtime.engine
	binary.LittleEndian.PutUint64(flags, binary.LittleEndian.Uint64(flags)|uint64(elf.SHF_COMPRESSED))
	if _, err := parseImage(bytes.NewReader(img), int64(len(img)), 0x10000); !errors.Is(err, ErrNotImage) {
		t.Errorf("err = %v, want ErrNotImage", err)
	}
}
