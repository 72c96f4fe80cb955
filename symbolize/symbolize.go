// Package symbolize names the machine code Wasmtime generates, by reading
// the compiled modules it keeps in the target's memory.
//
// Wasmtime compiles every module into a complete ELF image (an ET_REL
// object) and keeps it in anonymous memory for as long as the module lives
// (or, deserialized from a file, in a mapping of that file):
//
//	base                           ELF header, then small sections
//	base + .text sh_offset         .text, page aligned, mapped r-x
//	after .text                    .eh_frame, .wasmtime.*, .name.wasm,
//	                               .symtab, .strtab, section headers
//
// Symbol st_value is an offset into .text (sh_addr is 0 in these images),
// so a function starts at base + text.sh_offset + (st_value - text.sh_addr).
//
// Finding images: every executable anonymous mapping is a candidate .text.
// Wasmtime 37 and later start the image at a mapping boundary right below
// the text; in Wasmtime 3 the header page can be merged by the kernel into
// a neighbouring anonymous mapping. Both are handled the same way: scan
// backwards page by page from the text mapping for "\x7fELF", parse, and
// keep the image only if its .text lands inside that mapping. An image
// can also be a file mapped whole (Module::deserialize_file maps the
// .cwasm file): an r-x mapping of a file whose offset 0, mapped right
// below, holds a Wasmtime ELF header; it is read from memory all the same
// (see file.go).
//
// A Symbolizer follows one process and is lazy: its Refresh establishes
// only what the kernel walker needs, each module's .text range (and a
// fingerprint to tell a module from another compiled at the same place),
// reading the headers of all new modules in two vectored reads; a module is
// parsed the first time it is used (lazy.go).
//
// Naming: Wasmtime 37 and later name symbols
// wasm[M]::function[I]::NAME, wasm[M]::function[I] (no name),
// wasm[M]::array_to_wasm_trampoline[I],
// signatures[S]::wasm_to_array_trampoline and wasmtime_builtin_X.
// Wasmtime 3 uses _wasm_function_I and _trampoline_S, plus one tiny image
// per host function holding host_to_wasm and wasm_to_host. Symbol names are
// cleaned by Wasmtime 37+ (non-graphic ASCII becomes '?', cut at 96
// bytes), so the exact names are taken from the .name.wasm pool indexed by
// the func_names table of .wasmtime.info whenever that table can be found
// and agrees with the symbols.
//
// Components (Wasmtime 37+) are one image holding the code of all their
// core modules, wasm[N] being core module N; see component.go.
package symbolize

import (
	"fmt"
	"sort"
)

// Kind says what a piece of JIT code is.
type Kind int

const (
	// Other is code that is neither a Wasm function nor a known trampoline.
	Other Kind = iota
	// WasmFunction is the compiled body of one Wasm function.
	WasmFunction
	// Trampoline is glue between host and Wasm: array_to_wasm and
	// wasm_to_array trampolines, builtin trampolines, Wasmtime 3's
	// _trampoline_N, host_to_wasm and wasm_to_host. A stack walker drops
	// these frames.
	Trampoline
	// Adapter is Wasm code that Wasmtime generated for a component's fused
	// adapter (see Component): a Wasm frame, named AdapterName.
	Adapter
)

func (k Kind) String() string {
	switch k {
	case WasmFunction:
		return "wasm"
	case Trampoline:
		return "trampoline"
	case Adapter:
		return "adapter"
	case Other:
		return "other"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Func is one symbol of JIT code.
type Func struct {
	Start, End uint64 // absolute addresses, End exclusive
	// Name is what to display: the Wasm function's own name when it has
	// one (exactly as in the module's name section, unsanitised), else
	// wasm[M]::function[I]; trampolines and other code keep their symbol.
	Name   string
	Symbol string // raw ELF symbol, "" for perf-map entries
	Kind   Kind
	Index  int // Wasm function index, or -1
	// Core is N of the symbol's wasm[N]: in a component image the index
	// of the core module the code belongs to (Module.CoreOf); 0 in a
	// module image and for code of no core module.
	Core int
}

// Module is one compiled-module image found in memory. A Module is never
// modified after it is returned, so it can be shared freely.
type Module struct {
	Base               uint64 // address of the ELF header
	TextStart, TextEnd uint64 // absolute range of .text, End exclusive
	// Name is the module's name from its name section, "" if it has none
	// or it could not be read.
	Name string
	// Version is the Wasmtime version recorded in .wasmtime.engine ("39",
	// "3.0.0", or an embedder's custom string), "" if unreadable.
	Version string
	// Funcs are sorted by Start and do not overlap.
	Funcs []Func
	// File is the file the image is mapped from, named as /proc/PID/maps
	// names it (with " (deleted)" once unlinked): Module::deserialize_file
	// maps a .cwasm file itself. "" for an image in anonymous memory:
	// compiled in process, deserialized from bytes or loaded from
	// Wasmtime's cache, which leave the same bytes in the same kind of
	// memory (see Origin).
	File string
	// Component is set for a component image: its core modules. Name is
	// then "" (Wasmtime keeps no name of the component), and
	// Symbolizer.Lookup answers for the code of core module N with a
	// Module that is this one but for Name, the core module's name.
	Component *Component

	size uint64 // bytes of the ELF image from Base
	fp   uint64 // hash of the ELF and section headers, to detect reuse
}

// Lookup returns the function containing pc. Padding between functions
// belongs to none.
func (m *Module) Lookup(pc uint64) (Func, bool) {
	if m == nil || pc < m.TextStart || pc >= m.TextEnd {
		return Func{}, false
	}
	return lookupFunc(m.Funcs, pc)
}

// lookupFunc finds pc in funcs sorted by Start and not overlapping.
func lookupFunc(funcs []Func, pc uint64) (Func, bool) {
	i := sort.Search(len(funcs), func(i int) bool { return funcs[i].Start > pc })
	if i == 0 {
		return Func{}, false
	}
	if f := funcs[i-1]; pc < f.End {
		return f, true
	}
	return Func{}, false
}
