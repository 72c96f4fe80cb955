package layout

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/wasmtrace/wasmtrace/layout/x86"
)

// exeFile is an executable (or shared library) opened for discovery: its
// symbols, demangled as they are needed, and its code.
type exeFile struct {
	path      string
	f         *elf.File
	syms      []elf.Symbol
	names     []string // demangled names, parallel to syms
	demangled []bool   // names[i] is set

	// tlsIndexes maps the address of each tls_index of this module (a
	// GOT entry relocated with R_X86_64_DTPMOD64 against the module
	// itself) to the offset stored in its second word.
	tlsIndexes map[uint64]int64
}

func openBinary(path string) (*exeFile, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	b := &exeFile{path: path, f: f}
	if syms, err := f.Symbols(); err == nil {
		b.syms = syms
		b.names = make([]string, len(syms))
		b.demangled = make([]bool, len(syms))
	}
	return b, nil
}

// name is symbol i's demangled name. Demangling every symbol of a large
// binary takes tens of milliseconds, so callers first rule symbols out by
// the words their mangled names must contain.
func (b *exeFile) name(i int) string {
	if !b.demangled[i] {
		b.names[i], b.demangled[i] = demangle(b.syms[i].Name), true
	}
	return b.names[i]
}

// mentions reports whether a raw (mangled) symbol name contains one of
// words: mangling keeps each identifier of a path verbatim.
func mentions(raw string, words []string) bool {
	for _, w := range words {
		if strings.Contains(raw, w) {
			return true
		}
	}
	return false
}

func (b *exeFile) Close() error { return b.f.Close() }

// funcs returns the defined functions whose demangled name match accepts,
// one per address, in address order. Only symbols whose mangled name
// mentions one of words are considered.
func (b *exeFile) funcs(words []string, match func(name string) bool) []elf.Symbol {
	seen := map[uint64]bool{}
	var out []elf.Symbol
	for i, s := range b.syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Size == 0 || s.Section == elf.SHN_UNDEF || seen[s.Value] ||
			!mentions(s.Name, words) {
			continue
		}
		if n := b.name(i); match(n) {
			seen[s.Value] = true
			out = append(out, elf.Symbol{Name: n, Value: s.Value, Size: s.Size, Info: s.Info})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Value < out[j].Value })
	return out
}

func suffix(sfx string) func(string) bool {
	return func(n string) bool { return n == sfx || strings.HasSuffix(n, "::"+sfx) }
}

func exactly(name string) func(string) bool {
	return func(n string) bool { return n == name }
}

// maxFuncBytes bounds the code decoded for one function.
const maxFuncBytes = 1 << 18

// code reads size bytes of code at addr from an executable section.
func (b *exeFile) code(addr, size uint64) ([]byte, error) {
	for _, s := range b.f.Sections {
		if s.Flags&elf.SHF_EXECINSTR == 0 || s.Type != elf.SHT_PROGBITS || addr < s.Addr || addr+size > s.Addr+s.Size {
			continue
		}
		buf := make([]byte, size)
		if _, err := s.ReadAt(buf, int64(addr-s.Addr)); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return nil, fmt.Errorf("%#x is not in an executable section", addr)
}

// codeOf reads the code of the function of symbol s, for package x86.
func (b *exeFile) codeOf(s elf.Symbol) (x86.Code, error) {
	if s.Size > maxFuncBytes {
		return x86.Code{}, fmt.Errorf("%s: %d bytes, too large to decode", s.Name, s.Size)
	}
	code, err := b.code(s.Value, s.Size)
	if err != nil {
		return x86.Code{}, err
	}
	return x86.Code{Name: short(s.Name), Addr: s.Value, Bytes: code, TLSIndex: b.isTLSIndex}, nil
}

// text returns the executable sections, for scanning without symbols.
func (b *exeFile) text() []x86.Code {
	var out []x86.Code
	for _, s := range b.f.Sections {
		if s.Flags&elf.SHF_EXECINSTR == 0 || s.Type != elf.SHT_PROGBITS || s.Size > 1<<30 {
			continue
		}
		if data, err := s.Data(); err == nil {
			out = append(out, x86.Code{Name: s.Name, Addr: s.Addr, Bytes: data})
		}
	}
	return out
}

// versionedExport matches the exports that wasmtime-versioned-export-macros
// suffix with the crate version, e.g. set_vmctx_memory_39_0_0.
var versionedExport = regexp.MustCompile(`^(?:set_vmctx_memory|resolve_vmctx_memory_ptr|wasmtime_jit_debug_descriptor|wasmtime_debug_builtins_init)_(\d+)_(\d+)_(\d+)$`)

// versionFromSymbols finds the version in a versioned export's name.
func (b *exeFile) versionFromSymbols() (string, string) {
	for _, s := range b.syms {
		if m := versionedExport.FindStringSubmatch(s.Name); m != nil {
			return m[1] + "." + m[2] + "." + m[3], "symbol " + s.Name
		}
	}
	return "", ""
}

// Messages of Wasmtime's engine-version check. They are kept reversed
// here so that wasmtrace's own binary does not contain them and mistake
// itself for Wasmtime.
var (
	incompatibleMsg = reverse("noisrev emitmsaW elbitapmocni htiw delipmoc saw eludoM")
	packageMsg      = reverse("setyb 652 naht ssel eb tsum noisrev egakcap")
)

func reverse(s string) string {
	b := []byte(s)
	slices.Reverse(b)
	return string(b)
}

// engineVersionBefore matches a version string the linker placed right
// before one of those messages: the string Wasmtime compares a module's
// .wasmtime.engine section with ("39" in 39, "37.0.0" in 37, "3.0.0" in 3).
// Where strings land is the linker's choice, so this is a hint only.
var engineVersionBefore = regexp.MustCompile(`(?:^|[^0-9.])([0-9]{1,3}(?:\.[0-9]{1,3}\.[0-9]{1,3})?)$`)

// rodata returns the read-only data, or nil.
func (b *exeFile) rodata() []byte {
	sec := b.f.Section(".rodata")
	if sec == nil || sec.Size > 1<<30 {
		return nil
	}
	data, err := sec.Data()
	if err != nil {
		return nil
	}
	return data
}

// mentionsWasmtime reports whether Wasmtime's error strings are in the
// binary, and the engine version string found next to them.
func (b *exeFile) mentionsWasmtime() (bool, string) {
	data := b.rodata()
	if !bytes.Contains(data, []byte(incompatibleMsg)) {
		return false, ""
	}
	for _, msg := range []string{incompatibleMsg, packageMsg} {
		for rest, base := data, 0; ; {
			i := bytes.Index(rest, []byte(msg))
			if i < 0 {
				break
			}
			at := base + i
			if m := engineVersionBefore.FindSubmatch(data[max(0, at-16):at]); m != nil {
				return true, string(m[1])
			}
			rest, base = rest[i+1:], at+1
		}
	}
	return true, ""
}

// hasWasmtimeSymbols reports whether the binary defines Wasmtime's code
// (calling Wasmtime's C API in a shared library does not count).
func (b *exeFile) hasWasmtimeSymbols() bool {
	for i, s := range b.syms {
		if s.Section == elf.SHN_UNDEF || !strings.Contains(s.Name, "wasmtime") {
			continue
		}
		if n := b.name(i); strings.HasPrefix(n, "wasmtime") || strings.Contains(n, "<wasmtime") {
			return true
		}
	}
	return false
}

// ELF x86-64 relocation types of the dynamic TLS model.
const (
	rX8664DTPMOD64 = 16
	rX8664DTPOFF64 = 17
)

// isTLSIndex reports whether addr is one of the module's tls_index
// entries (see tlsIndexes).
func (b *exeFile) isTLSIndex(addr uint64) bool {
	if b.tlsIndexes == nil {
		b.tlsIndexes = map[uint64]int64{}
		b.readTLSIndexes()
	}
	_, ok := b.tlsIndexes[addr]
	return ok
}

// readTLSIndexes reads the dynamic relocations: a DTPMOD64 against symbol
// 0 (this module) marks a tls_index; the DTPOFF64 at the next word, or
// the word's content, is its offset.
func (b *exeFile) readTLSIndexes() {
	var dtpoff = map[uint64]int64{}
	for _, sec := range b.f.Sections {
		if sec.Type != elf.SHT_RELA || sec.Size > 1<<28 {
			continue
		}
		data, err := sec.Data()
		if err != nil {
			continue
		}
		for i := 0; i+24 <= len(data); i += 24 {
			off := le(data[i:])
			info := le(data[i+8:])
			addend := int64(le(data[i+16:]))
			switch typ, sym := uint32(info), info>>32; {
			case typ == rX8664DTPMOD64 && sym == 0:
				b.tlsIndexes[off] = 0
			case typ == rX8664DTPOFF64 && sym == 0:
				dtpoff[off] = addend
			}
		}
	}
	for a := range b.tlsIndexes {
		if o, ok := dtpoff[a+8]; ok {
			b.tlsIndexes[a] = o
		} else if w, err := b.word(a + 8); err == nil {
			b.tlsIndexes[a] = int64(w)
		}
	}
}

// word reads 8 bytes of the file at virtual address addr.
func (b *exeFile) word(addr uint64) (uint64, error) {
	for _, p := range b.f.Progs {
		if p.Type != elf.PT_LOAD || addr < p.Vaddr || addr+8 > p.Vaddr+p.Filesz {
			continue
		}
		var buf [8]byte
		if _, err := p.ReadAt(buf[:], int64(addr-p.Vaddr)); err != nil {
			return 0, err
		}
		return le(buf[:]), nil
	}
	return 0, fmt.Errorf("%#x not in the file", addr)
}

func le(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
