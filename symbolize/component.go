package symbolize

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Components.
//
// Wasmtime 37 and 39 compile a component into one image like a module's
// (crates/wasmtime/src/compile.rs, build_component_artifacts), told apart
// by EF_WASMTIME_COMPONENT (1 << 1) in e_flags where a module has
// EF_WASMTIME_MODULE (crates/environ/src/obj.rs). Its .text holds the
// code of every core module of the component, each named by its
// StaticModuleIndex N:
//
//	wasm[N]::function[I](::NAME)   a core function, I its index in module N
//	wasm[N]::array_to_wasm_trampoline[I]
//	signatures[S]::wasm_to_array_trampoline
//	component-trampolines[T]-{wasm,array}-call-KIND   lowered imports,
//	                               resource.drop and the other intrinsics
//	resource_drop_trampoline, unsafe-intrinsics-…, wasmtime_builtin_…
//
// The static modules are the component's own core modules in the order
// they appear in the binary (nested components' modules included), then
// the adapter modules: core modules that Wasmtime's "fact" compiler
// generates for fused adapters, the code that copies arguments and
// results when a lowered import is a function lifted by another component
// instance (crates/environ/src/component/translate/adapt.rs,
// partition_adapter_modules). They have no name section; each adapter is
// the module's export "adapterK" and calls its callee, imported from
// module "callee", directly: an adapter is a Wasm frame between two Wasm
// frames of different component instances.
//
// .wasmtime.info is postcard(ComponentArtifacts) (crates/environ/src/
// component/artifacts.rs): ty, info (the Component), table, types, and
// last static_modules, a vector of CompiledModuleInfo whose first field
// is the core module's Module (crates/environ/src/module.rs), which begins
//
//	module_index: StaticModuleIndex   (Wasmtime 38 and later only)
//	name: Option<String>              the core module's own name section
//	initializers: Vec<Initializer>    Import { name, field, index: EntityIndex }
//	exports: IndexMap<String, EntityIndex>
//
// The Component's own structures are version specific and large, so the
// Module of each static module is found by its shape (findCores) and
// confirmed by the symbols. The component's own name section
// ("component-name", with names of core modules, instances and component
// functions) is not kept: Wasmtime skips custom sections of components.
// A core module that is defined in component text as `(core module $main
// ...)` does carry the name "main" in its own name section (wat and jco
// write it there too), and that is the name wasmtrace uses.

// efWasmtimeComponent is e_flags' EF_WASMTIME_COMPONENT.
const efWasmtimeComponent = 1 << 1

// AdapterName is the name of every function of a fused-adapter module:
// Wasm code that Wasmtime generated, not code of the component.
const AdapterName = "[adapter]"

// Component describes a component image.
type Component struct {
	// Cores are the core modules that have code in the image, by Index.
	Cores []*CoreModule
}

// CoreModule is one core module of a component.
type CoreModule struct {
	// Index is the module's StaticModuleIndex, N of wasm[N].
	Index int
	// Name is the module's own name (its name section), "" if it has
	// none or its description was not found.
	Name string
	// Adapter is set for a module Wasmtime generated for fused adapters.
	Adapter bool
	// Exports are the module's function exports, export name by function
	// index ("adapter0" for an adapter), when its description was found.
	Exports map[int]string
	// Funcs counts the module's compiled functions.
	Funcs int
	// Described reports whether the module's description (name, imports
	// and exports) was found in .wasmtime.info.
	Described bool

	// view is what Symbolizer.Lookup returns for the module's code: the
	// image's Module with Name set to this module's name.
	view *Module
}

// Core returns the core module of the component with index n, nil if
// none has code in the image.
func (c *Component) Core(n int) *CoreModule {
	if c == nil {
		return nil
	}
	for _, cm := range c.Cores {
		if cm.Index == n {
			return cm
		}
	}
	return nil
}

// CoreOf returns the core module that f, a function of m, belongs to: nil
// when m is not a component or f is code of no core module (trampolines).
func (m *Module) CoreOf(f Func) *CoreModule {
	if m == nil || m.Component == nil || (f.Kind != WasmFunction && f.Kind != Adapter) {
		return nil
	}
	return m.Component.Core(f.Core)
}

// forFunc returns the module to report f with: its core module's view in a
// component, else m itself.
func (m *Module) forFunc(f Func) *Module {
	if cm := m.CoreOf(f); cm != nil && cm.view != nil {
		return cm.view
	}
	return m
}

// coreDesc is the start of one static module's Module in .wasmtime.info.
type coreDesc struct {
	at          int
	index       int // module_index, -1 when the version has none
	name        string
	hasName     bool
	funcImports int
	importMods  []string
	exports     map[int]string // function exports
	otherExport bool
}

// Bounds of the description parser.
const (
	maxDescString  = 1 << 12
	maxDescEntries = 1 << 16
)

// parseCoreDesc decodes a Module prefix at info[at:].
func parseCoreDesc(info []byte, at int, withIndex bool, budget *int) (coreDesc, bool) {
	r := &infoReader{b: info, p: at, enc: postcard}
	d := coreDesc{at: at, index: -1}
	str := func() (string, bool) {
		n := r.length()
		if r.bad || n > maxDescString || n > uint64(len(info)-r.p) {
			return "", false
		}
		s := info[r.p : r.p+int(n)]
		r.p += int(n)
		*budget -= int(n)
		return string(s), printable(s)
	}
	entity := func() (kind, index uint32, ok bool) {
		kind = r.u32()
		index = r.u32()
		return kind, index, !r.bad && kind <= 4
	}
	if withIndex {
		d.index = int(r.u32())
		if r.bad {
			return d, false
		}
	}
	if r.p >= len(info) {
		return d, false
	}
	switch info[r.p] {
	case 0:
		r.p++
	case 1:
		r.p++
		s, ok := str()
		if !ok || s == "" {
			return d, false
		}
		d.name, d.hasName = s, true
	default:
		return d, false
	}
	n := r.length()
	if r.bad || n > maxDescEntries || n > uint64(len(info)-r.p)/4 {
		return d, false
	}
	for i := uint64(0); i < n; i++ {
		*budget -= 4
		if *budget < 0 || r.u32() != 0 { // Initializer::Import
			return d, false
		}
		mod, ok1 := str()
		_, ok2 := str()
		kind, index, ok3 := entity()
		if !ok1 || !ok2 || !ok3 {
			return d, false
		}
		if kind == 0 { // EntityIndex::Function: imports are numbered in order
			if int(index) != d.funcImports {
				return d, false
			}
			d.funcImports++
		}
		d.importMods = append(d.importMods, mod)
	}
	n = r.length()
	if r.bad || n > maxDescEntries || n > uint64(len(info)-r.p)/3 {
		return d, false
	}
	for i := uint64(0); i < n; i++ {
		*budget -= 3
		name, ok := str()
		kind, index, ok2 := entity()
		// Export names are unique, and an empty one (valid, but never
		// seen) is what runs of zero bytes would decode to.
		if *budget < 0 || !ok || !ok2 || name == "" {
			return d, false
		}
		if kind != 0 {
			d.otherExport = true
			continue
		}
		if d.exports == nil {
			d.exports = make(map[int]string)
		}
		if _, dup := d.exports[int(index)]; !dup {
			d.exports[int(index)] = name
		}
	}
	return d, true
}

// printable reports UTF-8 without control characters. Names of modules,
// imports and exports may be any UTF-8, but ones with control characters
// are not seen in practice while byte runs decoding to them are common:
// such a module just stays undescribed.
func printable(s []byte) bool {
	if !utf8.Valid(s) {
		return false
	}
	for _, r := range string(s) {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// coreFacts is what the symbols say about one core module of a component.
type coreFacts struct {
	funcs       int
	minFunc     int
	defined     map[int]bool
	trampolined map[int]bool // functions with an array_to_wasm trampoline
}

// confirms reports whether d describes the module with these symbols:
// its function imports come right before its first defined function, and
// it exports at least one function, and every function it exports that it
// defines is compiled and has an entry trampoline (exports escape).
func (cf *coreFacts) confirms(d coreDesc) bool {
	if cf.funcs == 0 || d.funcImports != cf.minFunc {
		return false
	}
	// A component uses a core module through its exports, and a
	// description without any is too easily matched by chance.
	if len(d.exports) == 0 {
		return false
	}
	for idx := range d.exports {
		if idx >= d.funcImports && (!cf.defined[idx] || !cf.trampolined[idx]) {
			return false
		}
	}
	return true
}

// isAdapterModule reports a module shaped like the ones Wasmtime's fact
// compiler generates: nameless, importing from "callee", exporting only
// functions named adapterK.
func isAdapterModule(d coreDesc) bool {
	if d.hasName || d.otherExport || len(d.exports) == 0 {
		return false
	}
	callee := false
	for _, m := range d.importMods {
		callee = callee || m == "callee"
	}
	if !callee {
		return false
	}
	for _, name := range d.exports {
		k, ok := strings.CutPrefix(name, "adapter")
		if _, err := strconv.ParseUint(k, 10, 32); !ok || err != nil {
			return false
		}
	}
	return true
}

// findCores finds the description of each core module with code in the
// image. Static modules are serialised in index order, so module N's
// description is looked for after module N-1's; Wasmtime 38 and later
// also record the index itself.
func findCores(info []byte, major int, cores map[int]*coreFacts) map[int]coreDesc {
	out := make(map[int]coreDesc)
	if len(info) == 0 || len(cores) == 0 || major < 21 {
		return out
	}
	withIndex := major >= 38
	order := make([]int, 0, len(cores))
	for n := range cores {
		order = append(order, n)
	}
	sortInts(order)
	budget := nameSearchBudget
	from := 0
	for _, n := range order {
		cf := cores[n]
		for at := from; at < len(info) && budget > 0; at++ {
			if withIndex && int(info[at]) != n && n < 0x80 {
				continue // fast path: the varint's first byte
			}
			d, ok := parseCoreDesc(info, at, withIndex, &budget)
			if !ok || (withIndex && d.index != n) || !cf.confirms(d) {
				continue
			}
			out[n] = d
			from = at + 1
			break
		}
	}
	return out
}

func sortInts(s []int) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// buildComponent fills in m.Component from the functions' module indices
// and the descriptions found, marks adapter code and makes the views.
func buildComponent(m *Module, info []byte, major int) {
	cores := make(map[int]*coreFacts)
	get := func(n int) *coreFacts {
		cf := cores[n]
		if cf == nil {
			cf = &coreFacts{minFunc: -1, defined: map[int]bool{}, trampolined: map[int]bool{}}
			cores[n] = cf
		}
		return cf
	}
	for _, f := range m.Funcs {
		switch {
		case f.Kind == WasmFunction:
			cf := get(f.Core)
			cf.funcs++
			cf.defined[f.Index] = true
			if cf.minFunc < 0 || f.Index < cf.minFunc {
				cf.minFunc = f.Index
			}
		case f.Kind == Trampoline:
			if n, i, ok := entryTrampoline(f.Symbol); ok {
				get(n).trampolined[i] = true
			}
		}
	}
	descs := findCores(info, major, cores)
	c := &Component{}
	for n, cf := range cores {
		if cf.funcs == 0 {
			continue
		}
		cm := &CoreModule{Index: n, Funcs: cf.funcs}
		if d, ok := descs[n]; ok {
			cm.Described = true
			cm.Name = d.name
			cm.Exports = d.exports
			cm.Adapter = isAdapterModule(d)
		}
		c.Cores = append(c.Cores, cm)
	}
	for i := 1; i < len(c.Cores); i++ {
		for j := i; j > 0 && c.Cores[j].Index < c.Cores[j-1].Index; j-- {
			c.Cores[j], c.Cores[j-1] = c.Cores[j-1], c.Cores[j]
		}
	}
	m.Component = c
	for i := range m.Funcs {
		f := &m.Funcs[i]
		if f.Kind != WasmFunction {
			continue
		}
		if cm := c.Core(f.Core); cm != nil && cm.Adapter {
			f.Kind = Adapter
			f.Name = AdapterName
		}
	}
	for _, cm := range c.Cores {
		v := *m
		v.Name = cm.Name
		cm.view = &v
	}
}

// entryTrampoline parses wasm[N]::array_to_wasm_trampoline[I].
func entryTrampoline(sym string) (n, i int, ok bool) {
	n, rest, ok := cutIndex(sym, "wasm[")
	if !ok {
		return 0, 0, false
	}
	i, rest, ok = cutIndex(rest, "::array_to_wasm_trampoline[")
	return n, i, ok && rest == ""
}
