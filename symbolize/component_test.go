package symbolize

import (
	"bytes"
	"encoding/binary"
	"maps"
	"testing"
)

// v39-component.elf and v37-component.elf were captured with TestCapture
// from testdata/component's embedder (component-v39, component-v37)
// running testdata/component/wat/wasmtrace_component.wat (export
// via-lib). Its static modules: 0 lib_core (in the nested component
// $lib), 1 main, 2 the adapter module Wasmtime generated for the fused
// adapter between main's import lib.work and $lib's lifted export work.

type wantComponentFunc struct {
	off    uint64 // from TextStart
	name   string
	symbol string
	kind   Kind
	index  int
	core   int
	module string // the module Symbolizer.Lookup reports
}

type wantCore struct {
	index   int
	name    string
	adapter bool
	exports map[int]string
	funcs   int
}

var componentCores = []wantCore{
	{0, "lib_core", false, map[int]string{0: "work"}, 2},
	{1, "main", false, map[int]string{1: "run", 4: "via_lib"}, 5},
	{2, "", true, map[int]string{1: "adapter0"}, 1},
}

func componentFuncs(tramp [5]uint64) []wantComponentFunc {
	return []wantComponentFunc{
		{0x000, "l_work", "wasm[0]::function[0]::l_work", WasmFunction, 0, 0, "lib_core"},
		{0x040, "l_leaf", "wasm[0]::function[1]::l_leaf", WasmFunction, 1, 0, "lib_core"},
		{0x0a0, "c_run", "wasm[1]::function[1]::c_run", WasmFunction, 1, 1, "main"},
		{0x100, "c_mid", "wasm[1]::function[2]::c_mid", WasmFunction, 2, 1, "main"},
		{0x140, "c_leaf", "wasm[1]::function[3]::c_leaf", WasmFunction, 3, 1, "main"},
		{0x1a0, "c_via_lib", "wasm[1]::function[4]::c_via_lib", WasmFunction, 4, 1, "main"},
		{0x200, "c_call_lib", "wasm[1]::function[5]::c_call_lib", WasmFunction, 5, 1, "main"},
		{0x240, AdapterName, "wasm[2]::function[1]", Adapter, 1, 2, ""},
		{tramp[0], "wasm[0]::array_to_wasm_trampoline[0]", "wasm[0]::array_to_wasm_trampoline[0]", Trampoline, -1, 0, ""},
		{tramp[1], "wasm[1]::array_to_wasm_trampoline[1]", "wasm[1]::array_to_wasm_trampoline[1]", Trampoline, -1, 1, ""},
		{tramp[2], "wasm[1]::array_to_wasm_trampoline[4]", "wasm[1]::array_to_wasm_trampoline[4]", Trampoline, -1, 1, ""},
		{tramp[3], "wasm[2]::array_to_wasm_trampoline[1]", "wasm[2]::array_to_wasm_trampoline[1]", Trampoline, -1, 2, ""},
		{tramp[4], "signatures[0]::wasm_to_array_trampoline", "signatures[0]::wasm_to_array_trampoline", Trampoline, -1, 0, ""},
	}
}

var componentGoldens = []struct {
	file    string
	version string
	funcs   []wantComponentFunc
}{
	{"v39-component.elf", "39", componentFuncs([5]uint64{0x2ed, 0x386, 0x41f, 0x4b8, 0x551})},
	{"v37-component.elf", "37.0.0", componentFuncs([5]uint64{0x2ed, 0x324, 0x35b, 0x392, 0x3c9})},
}

func TestParseComponentGolden(t *testing.T) {
	for _, g := range componentGoldens {
		t.Run(g.file, func(t *testing.T) {
			img := readGolden(t, g.file)
			const base = 0x7f0000040000
			m, err := ParseImage(bytes.NewReader(img), int64(len(img)), base)
			if err != nil {
				t.Fatal(err)
			}
			if m.Version != g.version || m.Name != "" || m.Component == nil {
				t.Fatalf("version %q name %q component %v; want %q, \"\", a component", m.Version, m.Name, m.Component, g.version)
			}
			if m.TextStart != base+0x1000 || m.size != uint64(len(img)) {
				t.Errorf("text at %#x, size %#x; want %#x, %#x", m.TextStart, m.size, base+0x1000, len(img))
			}
			checkCores(t, m.Component, componentCores)
			if len(m.Funcs) != len(g.funcs) {
				t.Errorf("%d funcs, want %d", len(m.Funcs), len(g.funcs))
			}
			for i, w := range g.funcs {
				if i >= len(m.Funcs) {
					break
				}
				f := m.Funcs[i]
				if f.Start != m.TextStart+w.off || f.Name != w.name || f.Symbol != w.symbol || f.Kind != w.kind || f.Index != w.index || f.Core != w.core {
					t.Errorf("func %d: got %+v (text+%#x)\nwant %+v", i, f, f.Start-m.TextStart, w)
				}
				// What a frame at this function is reported with.
				if got := m.forFunc(f); got.Name != w.module || got.Base != m.Base || got.TextStart != m.TextStart || got.Component != m.Component {
					t.Errorf("func %s reported in module %q (%+v), want %q", w.name, got.Name, got, w.module)
				}
				cm := m.CoreOf(f)
				if (f.Kind == WasmFunction || f.Kind == Adapter) != (cm != nil) || (cm != nil && cm.Index != w.core) {
					t.Errorf("CoreOf(%s) = %+v, want core %d for Wasm code only", w.name, cm, w.core)
				}
			}
		})
	}
}

func checkCores(t *testing.T, c *Component, want []wantCore) {
	t.Helper()
	if len(c.Cores) != len(want) {
		t.Fatalf("%d core modules, want %d", len(c.Cores), len(want))
	}
	for i, w := range want {
		cm := c.Cores[i]
		if cm.Index != w.index || cm.Name != w.name || cm.Adapter != w.adapter || cm.Funcs != w.funcs ||
			!cm.Described || !maps.Equal(cm.Exports, w.exports) {
			t.Errorf("core module %d: got %+v\nwant %+v", i, *cm, w)
		}
		if c.Core(w.index) != cm {
			t.Errorf("Core(%d) = %+v", w.index, c.Core(w.index))
		}
	}
	if c.Core(len(want)) != nil {
		t.Errorf("Core(%d) found a module", len(want))
	}
}

// A component in a process: Lookup reports each core module's code with
// the core module's name, the same Module every time.
func TestSymbolizerComponent(t *testing.T) {
	img := readGolden(t, "v39-component.elf")
	const base = 0x7f0000040000
	var f fakeProcess
	f.placeImage(base, img, 0x1000, 0x1000)
	s := fakeSymbolizer(&f)
	if _, err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		off          uint64
		name, module string
		kind         Kind
	}{
		{0x150, "c_leaf", "main", WasmFunction},
		{0x050, "l_leaf", "lib_core", WasmFunction},
		{0x250, AdapterName, "", Adapter},
		{0x560, "signatures[0]::wasm_to_array_trampoline", "", Trampoline},
	} {
		fn, m, ok := s.Lookup(base + 0x1000 + c.off)
		if !ok || fn.Name != c.name || fn.Kind != c.kind || m == nil || m.Name != c.module {
			t.Errorf("Lookup(text+%#x) = %+v, %+v, %v; want %s (%s) in %q", c.off, fn, m, ok, c.name, c.kind, c.module)
			continue
		}
		if _, m2, _ := s.Lookup(base + 0x1000 + c.off); m2 != m {
			t.Errorf("Lookup(text+%#x): a new Module each time", c.off)
		}
	}
	if mods := s.Modules(); len(mods) != 1 || mods[0].Component == nil || mods[0].Name != "" {
		t.Errorf("Modules() = %+v, want the one component", mods)
	}
}

// appendString appends a postcard String.
func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// The shape search: a description confirmed by the symbols is found after
// look-alikes, and only in index order; one the symbols contradict is not.
func TestFindCores(t *testing.T) {
	desc := func(index int, name string, imports []string, exports map[string]int) []byte {
		b := binary.AppendUvarint(nil, uint64(index))
		if name == "" {
			b = append(b, 0)
		} else {
			b = appendString(append(b, 1), name)
		}
		b = binary.AppendUvarint(b, uint64(len(imports)))
		for i, mod := range imports {
			b = appendString(appendString(append(b, 0), mod), "f")
			b = append(b, 0, byte(i)) // EntityIndex::Function(i)
		}
		b = binary.AppendUvarint(b, uint64(len(exports)))
		for _, name := range []string{"run", "adapter0", "work"} { // fixed order
			if idx, ok := exports[name]; ok {
				b = append(appendString(b, name), 0, byte(idx))
			}
		}
		return b
	}
	cores := map[int]*coreFacts{
		0: {funcs: 2, minFunc: 0, defined: map[int]bool{0: true, 1: true}, trampolined: map[int]bool{0: true}},
		1: {funcs: 1, minFunc: 1, defined: map[int]bool{1: true}, trampolined: map[int]bool{1: true}},
	}
	info := cat(
		desc(1, "early", nil, map[string]int{"run": 1}),                // module 1 before module 0: skipped
		desc(0, "wrong", nil, map[string]int{"run": 1}),                // exports 1, which has no trampoline
		desc(0, "bad\x01", nil, map[string]int{"work": 0}),             // control character
		desc(0, "lib", nil, map[string]int{"work": 0}),                 // module 0
		desc(1, "", []string{"callee"}, map[string]int{"adapter0": 1}), // module 1
	)
	got := findCores(info, 39, cores)
	if d := got[0]; d.name != "lib" || !maps.Equal(d.exports, map[int]string{0: "work"}) {
		t.Errorf("module 0: %+v", d)
	}
	if d := got[1]; d.name != "" || d.hasName || !isAdapterModule(d) || d.funcImports != 1 {
		t.Errorf("module 1: %+v", d)
	}
	// Wasmtime 37 has no module_index: the same, less the index bytes.
	strip := func(b []byte) []byte { return b[1:] }
	info37 := cat(
		strip(desc(0, "lib", nil, map[string]int{"work": 0})),
		strip(desc(1, "", []string{"callee"}, map[string]int{"adapter0": 1})),
	)
	got = findCores(info37, 37, cores)
	if got[0].name != "lib" || !isAdapterModule(got[1]) {
		t.Errorf("Wasmtime 37: %+v", got)
	}
	if got := findCores(info37, 3, cores); len(got) != 0 {
		t.Errorf("Wasmtime 3 (bincode, no components here): %+v", got)
	}
}
