package layout

import (
	"debug/elf"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/wasmtrace/wasmtrace/proc"
)

// Errors a caller can tell apart.
var (
	ErrNotWasmtime   = errors.New("no Wasmtime in this process")
	ErrStripped      = errors.New("binary has no symbol table")
	ErrUnknownBuild  = errors.New("Wasmtime build not known")
	ErrSharedLibrary = errors.New("Wasmtime in a shared library")
)

// tlsSymbols are the thread-locals that hold the innermost CallThreadState
// pointer, by generation of Wasmtime's tls module, with how to read them.
var tlsSymbols = []struct {
	name string
	mask uint64
}{
	// 37, 39: a const #[thread_local] Cell<usize>, bit 0 = initialised.
	{"wasmtime::runtime::vm::sys::unix::TLS::{{constant}}::{{closure}}::VAL", ^uint64(1)},
	// 3: thread_local! with lazy state; VAL's first word is the pointer
	// (zero until set), the "initialised" state lives in a separate STATE.
	{"wasmtime_runtime::traphandlers::tls::raw::PTR::__getit::VAL", ^uint64(0)},
}

// versionedExport matches the exports that wasmtime-versioned-export-macros
// suffix with the crate version, e.g. set_vmctx_memory_39_0_0.
var versionedExport = regexp.MustCompile(`^(?:set_vmctx_memory|resolve_vmctx_memory_ptr|wasmtime_jit_debug_descriptor|wasmtime_debug_builtins_init)_(\d+)_(\d+)_(\d+)$`)

// FromBinary establishes the layout of the Wasmtime linked into the
// executable at path (usually /proc/PID/exe). version overrides the version
// when the binary does not name it (for example, taken from a compiled
// module's .wasmtime.engine section); pass "" to rely on the binary.
func FromBinary(path, version string) (*Layout, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil || len(syms) == 0 {
		if mentionsWasmtime(f) {
			return nil, fmt.Errorf("%s contains Wasmtime but %w (it was stripped); wasmtrace needs the symbols to find Wasmtime's thread-local state", path, ErrStripped)
		}
		return nil, fmt.Errorf("%s: %w (no symbol table, and no Wasmtime strings)", path, ErrNotWasmtime)
	}

	l := &Layout{}
	var tlsSym *elf.Symbol
	for i := range syms {
		s := &syms[i]
		if m := versionedExport.FindStringSubmatch(s.Name); m != nil && l.Version == "" {
			l.Version = m[1] + "." + m[2] + "." + m[3]
			l.fact("version", l.Version, "symbol "+s.Name)
		}
		if elf.ST_TYPE(s.Info) != elf.STT_TLS || tlsSym != nil {
			continue
		}
		name := demangle(s.Name)
		for _, t := range tlsSymbols {
			if name == t.name {
				tlsSym = s
				l.TLSSymbol = name
				l.TLSMask = t.mask
			}
		}
	}
	if tlsSym == nil {
		if hasWasmtimeSymbols(syms) {
			return nil, fmt.Errorf("%s links Wasmtime, but none of its thread-locals is one wasmtrace knows (%w)", path, ErrUnknownBuild)
		}
		return nil, fmt.Errorf("%s: %w", path, ErrNotWasmtime)
	}
	if version != "" && l.Version == "" {
		l.Version = version
		l.fact("version", version, "compiled module's .wasmtime.engine section")
	}

	off, how, err := staticTLSOffset(f, tlsSym)
	if err != nil {
		return nil, fmt.Errorf("%s: locate %s: %w", path, l.TLSSymbol, err)
	}
	l.TLSOffset = off
	l.fact("thread-local slot", fmt.Sprintf("fs%+#x", off), how)
	l.fact("thread-local tag mask", fmt.Sprintf("%#x", l.TLSMask), "symbol "+l.TLSSymbol)

	known, ok := knownBuilds[l.Version]
	if !ok {
		return nil, fmt.Errorf("%s: Wasmtime %s: %w: its field offsets have not been established (known builds: %s)",
			path, orUnknown(l.Version), ErrUnknownBuild, strings.Join(KnownVersions(), ", "))
	}
	l.applyTable(known)
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// staticTLSOffset computes where a thread-local of the main executable
// lives relative to the thread pointer. On x86-64 (TLS variant II) the
// executable's TLS block ends at the thread pointer and starts
// roundup(memsz, align) below it; st_value is the offset into the block.
func staticTLSOffset(f *elf.File, sym *elf.Symbol) (int64, string, error) {
	if f.Machine != elf.EM_X86_64 {
		return 0, "", fmt.Errorf("thread-local offsets on %s are not supported yet", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_TLS {
			continue
		}
		align := p.Align
		if align == 0 {
			align = 1
		}
		block := (p.Memsz + align - 1) / align * align
		if sym.Value >= p.Memsz {
			return 0, "", fmt.Errorf("symbol offset %#x outside the TLS segment (%#x bytes)", sym.Value, p.Memsz)
		}
		return int64(sym.Value) - int64(block),
			fmt.Sprintf("st_value %#x - roundup(PT_TLS memsz %#x, align %#x)", sym.Value, p.Memsz, p.Align), nil
	}
	return 0, "", errors.New("no PT_TLS segment")
}

func (l *Layout) applyTable(k Layout) {
	l.Generation = k.Generation
	l.CTSStore, l.CTSPrev, l.CTSOld = k.CTSStore, k.CTSPrev, k.CTSOld
	l.SavedExitPC, l.SavedExitFP, l.SavedEntry = k.SavedExitPC, k.SavedExitFP, k.SavedEntry
	l.StoreExitPC, l.StoreExitFP, l.StoreEntry = k.StoreExitPC, k.StoreExitFP, k.StoreEntry
	how := "table: build verified live"
	l.fact("generation", fmt.Sprint(int(l.Generation)), how)
	l.fact("CallThreadState.store", hex(l.CTSStore), how)
	l.fact("CallThreadState.prev", hex(l.CTSPrev), how)
	if l.Generation == EntryFP {
		l.fact("CallThreadState.old_state", hex(l.CTSOld), how)
	}
	l.fact("saved exit pc", hex(l.SavedExitPC), how)
	l.fact("saved exit fp", hex(l.SavedExitFP), how)
	l.fact("saved entry", hex(l.SavedEntry), how)
	l.fact("store exit pc", hex(l.StoreExitPC), how)
	l.fact("store exit fp", hex(l.StoreExitFP), how)
	l.fact("store entry", hex(l.StoreEntry), how)
}

func (l *Layout) fact(what, value, how string) {
	l.Provenance = append(l.Provenance, Fact{What: what, Value: value, How: how})
}

func hex(v uint32) string { return fmt.Sprintf("%#x", v) }

// KnownVersions lists the builds of the table.
func KnownVersions() []string { return []string{"3.0.0", "37.0.0", "39.0.0"} }

func hasWasmtimeSymbols(syms []elf.Symbol) bool {
	for _, s := range syms {
		if strings.Contains(s.Name, "wasmtime") {
			return true
		}
	}
	return false
}

// mentionsWasmtime looks for Wasmtime's error strings in a binary without
// symbols, to tell "stripped Wasmtime" from "not Wasmtime".
func mentionsWasmtime(f *elf.File) bool {
	sec := f.Section(".rodata")
	if sec == nil || sec.Size > 1<<30 {
		return false
	}
	data, err := sec.Data()
	if err != nil {
		return false
	}
	return strings.Contains(string(data), "Module was compiled with incompatible Wasmtime version")
}

// ForProcess establishes the layout of a running process's Wasmtime.
func ForProcess(pid int, version string) (*Layout, error) {
	if !proc.Exists(pid) {
		return nil, fmt.Errorf("no process with pid %d", pid)
	}
	l, err := FromBinary(proc.ExePath(pid), version)
	if err == nil || !errors.Is(err, ErrNotWasmtime) {
		return l, err
	}
	// Not in the executable: say so precisely if a library has it.
	maps, merr := proc.ReadMaps(pid)
	if merr != nil {
		return nil, err
	}
	for _, m := range maps {
		if strings.Contains(m.Path, "wasmtime") && strings.HasSuffix(strings.Fields(m.Path)[0], ".so") ||
			strings.Contains(m.Path, "libwasmtime.so") {
			return nil, fmt.Errorf("pid %d loads Wasmtime from the shared library %s: %w; wasmtrace supports Wasmtime linked into the executable for now", pid, m.Path, ErrSharedLibrary)
		}
	}
	return nil, fmt.Errorf("pid %d: %w", pid, err)
}
