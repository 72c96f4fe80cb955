package layout

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/wasmtrace/wasmtrace/proc"
)

// Errors a caller can tell apart.
var (
	ErrNotWasmtime   = errors.New("no Wasmtime in this process")
	ErrStripped      = errors.New("binary has no symbol table")
	ErrUnknownBuild  = errors.New("Wasmtime layout could not be established")
	ErrTableConflict = errors.New("decoded layout disagrees with the table of verified builds")
	ErrSharedLibrary = errors.New("Wasmtime in a shared library")
	ErrLive          = errors.New("layout contradicted by the live process")
)

// TableEnv is the environment variable that turns the table of verified
// builds off: WASMTRACE_LAYOUT_TABLE=off. Offsets are always decoded from
// the binary; the table only cross-checks them, and with it off a build is
// accepted on the decoded offsets alone.
const TableEnv = "WASMTRACE_LAYOUT_TABLE"

// Options say how a layout is established.
type Options struct {
	// Version names the Wasmtime version when the binary does not (for
	// example from a compiled module's .wasmtime.engine section).
	Version string
	// Table cross-checks the decoded offsets with the built-in table of
	// builds verified live (known.go): a disagreement refuses the build.
	Table bool
	// Live checks a process's layout against its memory (ForProcess only).
	Live bool
}

// DefaultOptions has the table on unless WASMTRACE_LAYOUT_TABLE=off, and
// live checks on.
func DefaultOptions(version string) Options {
	return Options{Version: version, Table: TableEnabled(), Live: true}
}

// TableEnabled reports whether the environment leaves the table on.
func TableEnabled() bool {
	switch strings.ToLower(os.Getenv(TableEnv)) {
	case "off", "0", "false", "no":
		return false
	}
	return true
}

// tlsSymbols are the thread-locals that hold the innermost CallThreadState
// pointer, by generation of Wasmtime's tls module, with how to read them.
var tlsSymbols = []struct {
	name string
	mask uint64
	gen  Generation
}{
	// 37, 39: a const #[thread_local] Cell<usize>, bit 0 = initialised.
	{"wasmtime::runtime::vm::sys::unix::TLS::{{constant}}::{{closure}}::VAL", ^uint64(1), EntryFP},
	// 3: thread_local! with lazy state; VAL's first word is the pointer
	// (zero until set), the "initialised" state lives in a separate STATE.
	{"wasmtime_runtime::traphandlers::tls::raw::PTR::__getit::VAL", ^uint64(0), Seed},
}

// FromBinary establishes the layout of the Wasmtime linked into the
// executable at path (usually /proc/PID/exe), with DefaultOptions.
// version overrides the version when the binary does not name it; pass ""
// to rely on the binary.
func FromBinary(path, version string) (*Layout, error) {
	return Establish(path, DefaultOptions(version))
}

// Establish reads the layout of the Wasmtime linked into the executable at
// path from its code (see discover.go), and refuses it, saying what is
// missing, when that is not possible with confidence.
func Establish(path string, opt Options) (*Layout, error) {
	l, err := establish(path, opt, false)
	if err != nil {
		return nil, err
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// establish does Establish's work for an executable or, with library, a
// shared library, whose thread-local slot is then left relative to its
// TLS block (TLSModuleOffset) and not validated.
func establish(path string, opt Options, library bool) (*Layout, error) {
	b, err := openBinary(path)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if b.f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%s is a %s binary; wasmtrace reads Wasmtime's layout from x86-64 code only", path, b.f.Machine)
	}
	isWasmtime, engineVersion := b.mentionsWasmtime()
	if len(b.syms) == 0 {
		return nil, refuseStripped(b, isWasmtime, engineVersion, opt)
	}
	if !isWasmtime && !b.hasWasmtimeSymbols() {
		return nil, fmt.Errorf("%s: %w (no Wasmtime symbols or strings)", path, ErrNotWasmtime)
	}

	l := &Layout{}
	switch v, how := b.versionFromSymbols(); {
	case v != "":
		l.Version = v
		l.fact("version", v, srcSymbol, how)
	case opt.Version != "":
		l.Version = opt.Version
		l.fact("version", opt.Version, srcProcess, "a compiled module's .wasmtime.engine section")
	case engineVersion != "":
		l.Version = engineVersion
		l.fact("version", engineVersion, srcBinary, "the engine version string next to Wasmtime's version-check messages in .rodata")
	}

	symGen, err := l.establishTLS(b, library)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}

	d, err := discoverOffsets(b)
	if err != nil {
		return nil, fmt.Errorf("%s: Wasmtime %s: %w: %v", path, orUnknown(l.Version), ErrUnknownBuild, err)
	}
	if symGen != 0 && symGen != d.gen {
		return nil, fmt.Errorf("%s: %w: the thread-local %s belongs to the %s generation, but %s", path, ErrUnknownBuild, l.TLSSymbol, symGen.Short(), d.genHow)
	}
	if wantMask := d.gen.tlsMask(); l.TLSMask != wantMask {
		return nil, fmt.Errorf("%s: %w: the thread-local slot is read with mask %#x, but the %s generation tags it with %#x", path, ErrUnknownBuild, l.TLSMask, d.gen.Short(), wantMask)
	}
	l.Generation = d.gen
	l.fact("generation", d.gen.Short(), srcDecoded, d.genHow)
	for _, fl := range d.gen.fields() {
		fd := d.fields[fl]
		if fd == nil {
			return nil, fmt.Errorf("%s: %w: %s was not found", path, ErrUnknownBuild, d.gen.fieldName(fl))
		}
		*l.ptr(fl) = uint32(fd.off)
		l.fact(d.gen.fieldName(fl), hex(uint32(fd.off)), srcDecoded, fd.how)
	}
	if err := l.crossCheckTable(opt.Table); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// establishTLS finds the thread-local slot from the TLS symbol and from
// the accessor's code; where both exist they must agree. It returns the
// generation the TLS symbol belongs to (0 when there is none). For a
// library the slot is found relative to the library's TLS block.
func (l *Layout) establishTLS(b *exeFile, library bool) (Generation, error) {
	var gen Generation
	var tlsSym *elf.Symbol
	for i := range b.syms {
		s := &b.syms[i]
		if elf.ST_TYPE(s.Info) != elf.STT_TLS {
			continue
		}
		for _, t := range tlsSymbols {
			if b.name(i) == t.name {
				tlsSym, l.TLSSymbol, l.TLSMask, gen = s, t.name, t.mask, t.gen
			}
		}
		if tlsSym != nil {
			break
		}
	}
	var symOff int64
	var symHow string
	if tlsSym != nil {
		if library {
			symOff, symHow = int64(tlsSym.Value), fmt.Sprintf("symbol %s: st_value %#x in the library's TLS block", short(l.TLSSymbol), tlsSym.Value)
		} else {
			off, how, err := staticTLSOffset(b.f, tlsSym)
			if err != nil {
				return 0, fmt.Errorf("locate %s: %w", l.TLSSymbol, err)
			}
			symOff, symHow = off, "symbol "+short(l.TLSSymbol)+": "+how
		}
	}
	code, codeErr := tlsFromCode(b)
	if code != nil && code.dynamic != library {
		if library {
			return 0, fmt.Errorf("%w: the library's TLS accessor uses the thread pointer directly (%s), not __tls_get_addr", ErrUnknownBuild, code.how)
		}
		return 0, fmt.Errorf("%w: the executable's TLS accessor calls __tls_get_addr (%s)", ErrUnknownBuild, code.how)
	}
	where := func(off int64) string {
		if library {
			return fmt.Sprintf("block%+#x", off)
		}
		return fmt.Sprintf("fs%+#x", off)
	}
	var off int64
	switch {
	case tlsSym != nil && code != nil:
		if code.off != symOff {
			return 0, fmt.Errorf("%w: the thread-local slot is at %s by %s, but %s by %s", ErrUnknownBuild, where(symOff), symHow, where(code.off), code.how)
		}
		if code.mask != l.TLSMask {
			return 0, fmt.Errorf("%w: %s is tagged with mask %#x, but %s", ErrUnknownBuild, l.TLSSymbol, l.TLSMask, code.maskHow)
		}
		off = symOff
		l.fact("thread-local slot", where(symOff), srcSymbol, symHow).Check = "agrees with " + code.how
		l.fact("thread-local tag mask", fmt.Sprintf("%#x", l.TLSMask), srcDecoded, code.maskHow)
	case tlsSym != nil:
		off = symOff
		l.fact("thread-local slot", where(symOff), srcSymbol, symHow).Check = "not cross-checked: " + codeErr.Error()
		l.fact("thread-local tag mask", fmt.Sprintf("%#x", l.TLSMask), srcSymbol, "the kind of thread-local "+short(l.TLSSymbol)+" is")
	case code != nil:
		off, l.TLSMask = code.off, code.mask
		l.fact("thread-local slot", where(code.off), srcDecoded, code.how).Check = "no TLS symbol to cross-check"
		l.fact("thread-local tag mask", fmt.Sprintf("%#x", code.mask), srcDecoded, code.maskHow)
	default:
		return 0, fmt.Errorf("%w: the thread-local holding the CallThreadState pointer was not found: no known TLS symbol (%s), and %v",
			ErrUnknownBuild, short(tlsSymbols[0].name)+" or "+short(tlsSymbols[1].name), codeErr)
	}
	if library {
		if code == nil {
			return 0, fmt.Errorf("%w: the library's tls_index (which names its TLS module) was not found: %v", ErrUnknownBuild, codeErr)
		}
		l.TLSModuleOffset, l.tlsIndex = off, code.index
	} else {
		l.TLSOffset = off
	}
	return gen, nil
}

// refuseStripped explains what a binary without symbols still shows, and
// what is missing.
func refuseStripped(b *exeFile, isWasmtime bool, engineVersion string, opt Options) error {
	if !isWasmtime {
		return fmt.Errorf("%s: %w (no symbol table, and no Wasmtime strings)", b.path, ErrNotWasmtime)
	}
	v := engineVersion
	if v == "" {
		v = opt.Version
	}
	found := ""
	if t, err := tlsFromPattern(b); err == nil {
		found = fmt.Sprintf(" Without symbols wasmtrace still found the thread-local slot (fs%+#x, %s),", t.off, t.how)
	}
	return fmt.Errorf("%s contains Wasmtime %s but %w (it was stripped).%s but Wasmtime's struct offsets are decoded from functions it finds by name (Backtrace::new_with_trap_state, tls::raw::get): rebuild without -s/strip, or keep .symtab",
		b.path, orUnknown(v), ErrStripped, found)
}

// staticTLSOffset computes where a thread-local of the main executable
// lives relative to the thread pointer. On x86-64 (TLS variant II) the
// executable's TLS block ends at the thread pointer and starts
// roundup(memsz, align) below it; st_value is the offset into the block.
func staticTLSOffset(f *elf.File, sym *elf.Symbol) (int64, string, error) {
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

// crossCheckTable compares the decoded layout with the table entry for its
// version, if any, and records the outcome on each fact.
func (l *Layout) crossCheckTable(use bool) error {
	k, key, ok := tableEntry(l.Version)
	for i := range l.Provenance {
		f := &l.Provenance[i]
		if f.Source != srcDecoded || f.What == "thread-local tag mask" {
			continue
		}
		switch {
		case !use:
			f.Check = "table not consulted (" + TableEnv + "=off)"
		case !ok:
			f.Check = "no table entry for Wasmtime " + orUnknown(l.Version)
		}
	}
	if !use || !ok {
		return nil
	}
	if k.Generation != l.Generation {
		return fmt.Errorf("%w: the code follows the %s generation, but the table says %s for Wasmtime %s",
			ErrTableConflict, l.Generation.Short(), k.Generation.Short(), key)
	}
	for _, fl := range l.Generation.fields() {
		name := l.Generation.fieldName(fl)
		got, want := *l.ptr(fl), *k.ptr(fl)
		if got != want {
			return fmt.Errorf("%w: %s is %#x in the code (%s) but %#x in the table for Wasmtime %s; refusing rather than guessing",
				ErrTableConflict, name, got, l.factHow(name), want, key)
		}
		l.factNamed(name).Check = "table for " + key + " agrees"
	}
	if f := l.factNamed("generation"); f != nil {
		f.Check = "table for " + key + " agrees"
	}
	return nil
}

func (l *Layout) factNamed(what string) *Fact {
	for i := range l.Provenance {
		if l.Provenance[i].What == what {
			return &l.Provenance[i]
		}
	}
	return nil
}

func (l *Layout) factHow(what string) string {
	if f := l.factNamed(what); f != nil {
		return f.How
	}
	return "?"
}

// Sources of a fact.
const (
	srcSymbol  = "symbol"
	srcDecoded = "decoded"
	srcBinary  = "binary"
	srcProcess = "process"
	srcLive    = "live"
)

func (l *Layout) fact(what, value, source, how string) *Fact {
	l.Provenance = append(l.Provenance, Fact{What: what, Value: value, Source: source, How: how})
	return &l.Provenance[len(l.Provenance)-1]
}

func hex(v uint32) string { return fmt.Sprintf("%#x", v) }

// ForProcess establishes the layout of a running process's Wasmtime with
// DefaultOptions.
func ForProcess(pid int, version string) (*Layout, error) {
	return EstablishProcess(pid, DefaultOptions(version))
}

// EstablishProcess establishes the layout of the Wasmtime in process pid:
// from its executable, or from the shared library that holds Wasmtime,
// then checked against its memory (live.go).
func EstablishProcess(pid int, opt Options) (*Layout, error) {
	if !proc.Exists(pid) {
		return nil, fmt.Errorf("no process with pid %d", pid)
	}
	l, err := Establish(proc.ExePath(pid), opt)
	if err != nil && errors.Is(err, ErrNotWasmtime) {
		lib, m := wasmtimeLibrary(pid)
		if lib == "" {
			return nil, fmt.Errorf("pid %d: %w", pid, err)
		}
		if l, err = establishLibrary(pid, lib, m, opt); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	if opt.Live {
		if err := l.checkLive(pid); err != nil {
			return nil, fmt.Errorf("pid %d: %w", pid, err)
		}
	}
	return l, nil
}

// wasmtimeLibrary returns the path of a mapped shared library that holds
// Wasmtime, and its mapping at file offset 0; "" if there is none.
func wasmtimeLibrary(pid int) (string, proc.Mapping) {
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		return "", proc.Mapping{}
	}
	seen := map[string]bool{}
	for _, m := range maps {
		if m.Path == "" || m.Path[0] != '/' || m.Offset != 0 || seen[m.Path] || !strings.Contains(m.Path, ".so") {
			continue
		}
		seen[m.Path] = true
		b, err := openBinary(procPath(pid, m.Path))
		if err != nil {
			continue
		}
		ok, _ := b.mentionsWasmtime()
		ok = ok || b.hasWasmtimeSymbols()
		b.Close()
		if ok {
			return m.Path, m
		}
	}
	return "", proc.Mapping{}
}

// procPath reaches a path of the process's mount namespace.
func procPath(pid int, path string) string { return fmt.Sprintf("/proc/%d/root%s", pid, path) }
