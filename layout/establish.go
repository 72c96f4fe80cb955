package layout

// Establishing a layout, top-down in the order it happens (see the
// package comment): for a process, its executable or the shared library
// holding Wasmtime; in that binary, the version, the thread-local slot,
// the generation and struct offsets (decoded by package x86 from the
// functions found here by symbol) and the table's cross-check; then, for
// a process, the live checks.

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/wasmtrace/wasmtrace/layout/x86"
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

// ForProcess establishes the layout of a running process's Wasmtime with
// DefaultOptions.
func ForProcess(pid int, version string) (*Layout, error) {
	return EstablishProcess(pid, DefaultOptions(version))
}

// EstablishProcess establishes the layout of the Wasmtime in process pid:
// from its executable (Establish), or from the shared library that holds
// Wasmtime (library.go), then checked against its memory (live.go).
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

// FromBinary establishes the layout of the Wasmtime linked into the
// executable at path (usually /proc/PID/exe), with DefaultOptions.
// version overrides the version when the binary does not name it; pass ""
// to rely on the binary.
func FromBinary(path, version string) (*Layout, error) {
	return Establish(path, DefaultOptions(version))
}

// Establish reads the layout of the Wasmtime linked into the executable at
// path from its code, and refuses it, saying what is missing, when that is
// not possible with confidence.
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
	// 0. An x86-64 binary holding Wasmtime, with symbols.
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

	// 1. The version, when the binary names it.
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

	// 2. The thread-local slot.
	symGen, err := l.establishTLS(b, library)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}

	// 3. The generation and the struct offsets.
	d, gen, err := discoverOffsets(b)
	if err != nil {
		return nil, fmt.Errorf("%s: Wasmtime %s: %w: %v", path, orUnknown(l.Version), ErrUnknownBuild, err)
	}
	if symGen != 0 && symGen != gen {
		return nil, fmt.Errorf("%s: %w: the thread-local %s belongs to the %s generation, but %s", path, ErrUnknownBuild, l.TLSSymbol, symGen.Short(), d.How)
	}
	if wantMask := gen.tlsMask(); l.TLSMask != wantMask {
		return nil, fmt.Errorf("%s: %w: the thread-local slot is read with mask %#x, but the %s generation tags it with %#x", path, ErrUnknownBuild, l.TLSMask, gen.Short(), wantMask)
	}
	l.Generation = gen
	l.fact("generation", gen.Short(), srcDecoded, d.How)
	for _, fl := range gen.fields() {
		fd := d.Fields[fl]
		if fd == nil {
			return nil, fmt.Errorf("%s: %w: %s was not found", path, ErrUnknownBuild, gen.fieldName(fl))
		}
		*l.ptr(fl) = uint32(fd.Off)
		l.fact(gen.fieldName(fl), hex(uint32(fd.Off)), srcDecoded, fd.How)
	}
	if gen == EntryFP {
		l.establishLimit(b, d)
	}

	// 4. The table of verified builds.
	if err := l.crossCheckTable(opt.Table); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// ---- 0. a binary without symbols ----

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
	if t, err := x86.ScanTLSGet(b.text()); err == nil {
		found = fmt.Sprintf(" Without symbols wasmtrace still found the thread-local slot (fs%+#x, %s),", t.Off, t.How)
	}
	return fmt.Errorf("%s contains Wasmtime %s but %w (it was stripped).%s but Wasmtime's struct offsets are decoded from functions it finds by name (Backtrace::new_with_trap_state, tls::raw::get): rebuild without -s/strip, or keep .symtab",
		b.path, orUnknown(v), ErrStripped, found)
}

// ---- 2. the thread-local slot ----

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
	if code != nil && (code.Index != 0) != library {
		if library {
			return 0, fmt.Errorf("%w: the library's TLS accessor uses the thread pointer directly (%s), not __tls_get_addr", ErrUnknownBuild, code.How)
		}
		return 0, fmt.Errorf("%w: the executable's TLS accessor calls __tls_get_addr (%s)", ErrUnknownBuild, code.How)
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
		if code.Off != symOff {
			return 0, fmt.Errorf("%w: the thread-local slot is at %s by %s, but %s by %s", ErrUnknownBuild, where(symOff), symHow, where(code.Off), code.How)
		}
		if code.Mask != l.TLSMask {
			return 0, fmt.Errorf("%w: %s is tagged with mask %#x, but %s", ErrUnknownBuild, l.TLSSymbol, l.TLSMask, code.MaskHow)
		}
		off = symOff
		l.fact("thread-local slot", where(symOff), srcSymbol, symHow).Check = "agrees with " + code.How
		l.fact("thread-local tag mask", fmt.Sprintf("%#x", l.TLSMask), srcDecoded, code.MaskHow)
	case tlsSym != nil:
		off = symOff
		l.fact("thread-local slot", where(symOff), srcSymbol, symHow).Check = "not cross-checked: " + codeErr.Error()
		l.fact("thread-local tag mask", fmt.Sprintf("%#x", l.TLSMask), srcSymbol, "the kind of thread-local "+short(l.TLSSymbol)+" is")
	case code != nil:
		off, l.TLSMask = code.Off, code.Mask
		l.fact("thread-local slot", where(code.Off), srcDecoded, code.How).Check = "no TLS symbol to cross-check"
		l.fact("thread-local tag mask", fmt.Sprintf("%#x", code.Mask), srcDecoded, code.MaskHow)
	default:
		return 0, fmt.Errorf("%w: the thread-local holding the CallThreadState pointer was not found: no known TLS symbol (%s), and %v",
			ErrUnknownBuild, short(tlsSymbols[0].name)+" or "+short(tlsSymbols[1].name), codeErr)
	}
	if library {
		if code == nil {
			return 0, fmt.Errorf("%w: the library's tls_index (which names its TLS module) was not found: %v", ErrUnknownBuild, codeErr)
		}
		l.TLSModuleOffset, l.tlsIndex = off, code.Index
	} else {
		l.TLSOffset = off
	}
	return gen, nil
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

// tlsFromCode decodes Wasmtime's TLS accessors, tls::raw::get (37, 39)
// or tls::raw::PTR::__getit (3); where there are several they must agree.
func tlsFromCode(b *exeFile) (*x86.TLS, error) {
	var found *x86.TLS
	for _, name := range []string{"traphandlers::tls::raw::get", "traphandlers::tls::raw::PTR::__getit"} {
		for _, s := range b.funcs([]string{lastIdent(name)}, suffix(name)) {
			c, err := b.codeOf(s)
			if err != nil {
				return nil, err
			}
			t, err := x86.TLSAccessor(c)
			if err != nil {
				return nil, err
			}
			if t.Index != 0 {
				t.Off += b.tlsIndexes[t.Index] // the tls_index's own offset
			}
			if found != nil && (found.Off != t.Off || found.Mask != t.Mask || (found.Index != 0) != (t.Index != 0)) {
				return nil, fmt.Errorf("TLS accessors disagree: %s (%s) and %s (%s)", tlsWhere(found), found.How, tlsWhere(t), t.How)
			}
			if found == nil {
				found = t
			}
		}
	}
	if found == nil {
		return nil, errors.New("function tls::raw::get (or tls::raw::PTR::__getit) not found")
	}
	return found, nil
}

func tlsWhere(t *x86.TLS) string {
	if t.Index != 0 {
		return fmt.Sprintf("TLS block%+#x", t.Off)
	}
	return fmt.Sprintf("fs%+#x", t.Off)
}

// ---- 3. the generation and the struct offsets ----

// discoverOffsets decodes the struct offsets from the binary's backtrace
// code (x86.Backtrace), deciding the generation by which pattern the code
// follows. Where several functions follow a pattern they must agree.
func discoverOffsets(b *exeFile) (*x86.Offsets, Generation, error) {
	backtrace := b.funcs([]string{"new_with_trap_state", "trace_with_trap_state"}, func(n string) bool {
		return suffix("backtrace::Backtrace::new_with_trap_state")(n) || suffix("backtrace::Backtrace::trace_with_trap_state")(n)
	})
	if len(backtrace) == 0 {
		return nil, 0, errors.New("function Backtrace::new_with_trap_state (or trace_with_trap_state) not found among the symbols")
	}
	results, whyNot := decodeEach(b, backtrace, func(c x86.Code) (*x86.Offsets, error) { return x86.Backtrace(c, b.trampolines) })
	if len(results) == 0 {
		return nil, 0, errors.New(strings.Join(whyNot, "; "))
	}
	first := results[0]
	gen := generationOf(first.Pattern)
	for _, d := range results[1:] {
		if d.Pattern != first.Pattern {
			return nil, 0, fmt.Errorf("%s and %s disagree on the generation", first.How, d.How)
		}
		for fl := range x86.NumFields {
			a, c := first.Fields[fl], d.Fields[fl]
			if a != nil && c != nil && a.Off != c.Off {
				return nil, 0, fmt.Errorf("%s: %#x (%s) but %#x (%s)", gen.fieldName(fl), a.Off, a.How, c.Off, c.How)
			}
			if a == nil && c != nil {
				first.Fields[fl] = c
			}
		}
	}
	return first, gen, nil
}

// Names of the stack_limit facts (EntryFP generation).
const (
	limitFact      = "EntryStoreContext.stack_limit"
	limitTagFact   = limitFact + ".tag"
	limitValueFact = limitFact + ".value"
)

// establishLimit decodes EntryStoreContext.stack_limit (an Option<usize>)
// from the code that restores it on leaving Wasm (x86.StackLimit on
// invoke_wasm_and_catch_traps, into which exit_wasm is inlined), with the
// offsets d already decoded. Where several functions show it they must
// agree. Not finding it is no refusal: the layout then leaves LimitKnown
// false, and says why in a fact (the walk still works, but cannot tell
// where an activation's older ones are on another stack).
func (l *Layout) establishLimit(b *exeFile, d *x86.Offsets) {
	const name = "func::invoke_wasm_and_catch_traps"
	unknown := func(why string) {
		l.factAfter("EntryStoreContext.", Fact{What: limitFact, Value: "unknown", Source: srcMissing,
			How: why + "; so activations whose older ones are on another (fiber) stack are not told apart"})
	}
	fns := b.funcs([]string{lastIdent(name)}, suffix(name))
	if len(fns) == 0 {
		unknown("function invoke_wasm_and_catch_traps (where EntryStoreContext::exit_wasm restores it) not found among the symbols")
		return
	}
	found, whyNot := decodeEach(b, fns, func(c x86.Code) (*x86.Limit, error) { return x86.StackLimit(c, d) })
	if len(found) == 0 {
		unknown("not decoded: " + strings.Join(whyNot, "; "))
		return
	}
	first := found[0]
	for _, lim := range found[1:] {
		if lim.Tag.Off != first.Tag.Off || lim.Value.Off != first.Value.Off {
			unknown(fmt.Sprintf("the code disagrees: tag +%#x, value +%#x (%s) but tag +%#x, value +%#x (%s)",
				first.Tag.Off, first.Value.Off, first.How, lim.Tag.Off, lim.Value.Off, lim.How))
			return
		}
	}
	also := ""
	if len(found) > 1 {
		also = fmt.Sprintf(" (%d functions show it, all agree)", len(found))
	}
	l.SavedLimitTag, l.SavedLimitValue, l.LimitKnown = uint32(first.Tag.Off), uint32(first.Value.Off), true
	tag := Fact{What: limitTagFact, Value: hex(l.SavedLimitTag), Source: srcDecoded, How: first.Tag.How + also}
	if first.TagSet != "" {
		tag.Check = "agrees with decoded from enter_wasm, which sets it to 0 or 1: " + first.TagSet
	}
	value := Fact{What: limitValueFact, Value: hex(l.SavedLimitValue), Source: srcDecoded, How: first.Value.How + "; " + first.Store.How + also}
	if first.ValueSaved != "" {
		value.Check = "agrees with decoded from enter_wasm, which saves it from the same VMStoreContext field: " + first.ValueSaved
	}
	l.factAfter("EntryStoreContext.", tag)
	l.factAfter("EntryStoreContext.", value)
}

// decodeEach runs decode on the code of each function: what it found, and
// for the others why not.
func decodeEach[T any](b *exeFile, fns []elf.Symbol, decode func(x86.Code) (T, error)) (found []T, whyNot []string) {
	for _, s := range fns {
		c, err := b.codeOf(s)
		if err == nil {
			var r T
			if r, err = decode(c); err == nil {
				found = append(found, r)
				continue
			}
		}
		whyNot = append(whyNot, err.Error())
	}
	return found, whyNot
}

// trampolines finds Wasmtime 3's assembly trampolines, whose stores name
// the roles of VMRuntimeLimits' fields (x86.Trampolines).
func (b *exeFile) trampolines() (toHost, toWasm x86.Code, err error) {
	get := func(name string) (x86.Code, error) {
		ss := b.funcs([]string{name}, exactly(name))
		if len(ss) != 1 {
			return x86.Code{}, fmt.Errorf("function %s not found", name)
		}
		return b.codeOf(ss[0])
	}
	if toHost, err = get("wasm_to_host_trampoline"); err != nil {
		return
	}
	toWasm, err = get("host_to_wasm_trampoline")
	return
}

// ---- 4. the table of verified builds ----

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
			f.Check = joinChecks(f.Check, "table not consulted ("+TableEnv+"=off)")
		case !ok:
			f.Check = joinChecks(f.Check, "no table entry for Wasmtime "+orUnknown(l.Version))
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
	return l.crossCheckLimit(k, key)
}

// crossCheckLimit compares the decoded stack_limit offsets with the
// table's. The table never supplies them: where the code did not show
// them they stay unknown.
func (l *Layout) crossCheckLimit(k Layout, key string) error {
	if l.Generation != EntryFP {
		return nil
	}
	if !l.LimitKnown {
		if f := l.factNamed(limitFact); f != nil && k.LimitKnown {
			f.Check = joinChecks(f.Check, fmt.Sprintf("the table for %s lists tag +%#x, value +%#x, which are not used without the code", key, k.SavedLimitTag, k.SavedLimitValue))
		}
		return nil
	}
	for _, c := range []struct {
		name      string
		got, want uint32
	}{{limitTagFact, l.SavedLimitTag, k.SavedLimitTag}, {limitValueFact, l.SavedLimitValue, k.SavedLimitValue}} {
		f := l.factNamed(c.name)
		switch {
		case !k.LimitKnown:
			f.Check = joinChecks(f.Check, "no stack_limit in the table for "+key)
		case c.got != c.want:
			return fmt.Errorf("%w: %s is %#x in the code (%s) but %#x in the table for Wasmtime %s; refusing rather than guessing",
				ErrTableConflict, c.name, c.got, f.How, c.want, key)
		default:
			f.Check = joinChecks(f.Check, "table for "+key+" agrees")
		}
	}
	return nil
}

// ---- facts ----

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
	srcMissing = "not found" // an optional fact the binary did not show
)

// factAfter inserts f after the last fact whose name starts with prefix
// (at the end when there is none), so that a struct's facts stay together.
func (l *Layout) factAfter(prefix string, f Fact) {
	at := len(l.Provenance)
	for i, g := range l.Provenance {
		if strings.HasPrefix(g.What, prefix) {
			at = i + 1
		}
	}
	l.Provenance = slices.Insert(l.Provenance, at, f)
}

func (l *Layout) fact(what, value, source, how string) *Fact {
	l.Provenance = append(l.Provenance, Fact{What: what, Value: value, Source: source, How: how})
	return &l.Provenance[len(l.Provenance)-1]
}

func hex(v uint32) string { return fmt.Sprintf("%#x", v) }
