package symbolize

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sort"
	"strings"
)

// Bounds on what an image may make the parser read. Real images are a few
// KiB to tens of MiB; the bounds are far above that and far below what
// would hurt the profiler.
const (
	maxImageSize   = 1 << 30
	maxSections    = 256
	maxSymbols     = 1 << 21   // about a million Wasm functions
	maxStrtabSize  = 128 << 20 // Wasmtime 37+ cut function names at 96 bytes
	maxSectionRead = 64 << 20  // .wasmtime.info, .name.wasm
	maxEngineRead  = 2 + 255   // format byte, length byte, version
)

// ErrNotImage means the bytes are not a Wasmtime compiled-module image.
var ErrNotImage = errors.New("not a compiled-module image")

const (
	ehdrSize = 64 // ELF64 header
	shdrSize = 64 // ELF64 section header
)

// elfHeader is what parseImage checks before handing the image to
// debug/elf, so that a corrupt header cannot make that package read or
// allocate more than the image holds.
type elfHeader struct {
	order        binary.ByteOrder
	shoff        uint64
	shnum        int
	flags        uint32 // e_flags
	fingerprint  uint64 // hash of the ELF header and section headers
	sectionTable []byte
}

// readHeader validates the ELF64 header and reads the section headers.
func readHeader(r io.ReaderAt, size int64) (*elfHeader, error) {
	if size < ehdrSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrNotImage, size)
	}
	var eh [ehdrSize]byte
	if _, err := r.ReadAt(eh[:], 0); err != nil {
		return nil, fmt.Errorf("read ELF header: %w", err)
	}
	if string(eh[:4]) != elf.ELFMAG {
		return nil, fmt.Errorf("%w: no ELF magic", ErrNotImage)
	}
	if elf.Class(eh[elf.EI_CLASS]) != elf.ELFCLASS64 {
		return nil, fmt.Errorf("%w: ELF class %d", ErrNotImage, eh[elf.EI_CLASS])
	}
	h := &elfHeader{}
	switch elf.Data(eh[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		h.order = binary.LittleEndian
	case elf.ELFDATA2MSB:
		h.order = binary.BigEndian
	default:
		return nil, fmt.Errorf("%w: ELF data encoding %d", ErrNotImage, eh[elf.EI_DATA])
	}
	h.shoff = h.order.Uint64(eh[0x28:])
	h.flags = h.order.Uint32(eh[0x30:])
	shentsize := h.order.Uint16(eh[0x3a:])
	h.shnum = int(h.order.Uint16(eh[0x3c:]))
	shstrndx := int(h.order.Uint16(eh[0x3e:]))
	if shentsize != shdrSize {
		return nil, fmt.Errorf("%w: section header size %d", ErrNotImage, shentsize)
	}
	// 0 would mean extended numbering, which Wasmtime never needs.
	if h.shnum == 0 || h.shnum > maxSections || shstrndx >= h.shnum {
		return nil, fmt.Errorf("%w: %d sections, names in %d", ErrNotImage, h.shnum, shstrndx)
	}
	tableSize := uint64(h.shnum) * shdrSize
	if h.shoff < ehdrSize || h.shoff > uint64(size) || tableSize > uint64(size)-h.shoff {
		return nil, fmt.Errorf("%w: section headers at %#x beyond image of %#x bytes", ErrNotImage, h.shoff, size)
	}
	h.sectionTable = make([]byte, tableSize)
	if _, err := r.ReadAt(h.sectionTable, int64(h.shoff)); err != nil {
		return nil, fmt.Errorf("read section headers: %w", err)
	}
	fp := fnv.New64a()
	fp.Write(eh[:])
	fp.Write(h.sectionTable)
	h.fingerprint = fp.Sum64()
	return h, nil
}

// extent is the number of bytes the image occupies: the end of the last
// section or of the section header table.
func (h *elfHeader) extent() uint64 {
	end := h.shoff + uint64(len(h.sectionTable))
	for i := 0; i < h.shnum; i++ {
		s := h.sectionTable[i*shdrSize:]
		if elf.SectionType(h.order.Uint32(s[4:])) == elf.SHT_NOBITS {
			continue
		}
		off, sz := h.order.Uint64(s[0x18:]), h.order.Uint64(s[0x20:])
		if off+sz >= off && off+sz > end {
			end = off + sz
		}
	}
	return end
}

// ParseImage parses one compiled-module image of size bytes whose ELF
// header is at address base. It never panics: malformed input is an error
// (a panic in debug/elf is turned into one too).
func ParseImage(r io.ReaderAt, size int64, base uint64) (m *Module, err error) {
	defer func() {
		if p := recover(); p != nil {
			m, err = nil, fmt.Errorf("parse image at %#x: %w: parser panicked: %v", base, ErrNotImage, p)
		}
	}()
	return parseImage(r, size, base)
}

// parseImage is ParseImage without the recover, for the fuzz tests.
func parseImage(r io.ReaderAt, size int64, base uint64) (*Module, error) {
	if size <= 0 || size > maxImageSize {
		return nil, fmt.Errorf("parse image at %#x: %w: size %d", base, ErrNotImage, size)
	}
	if base > ^uint64(0)-uint64(size) {
		return nil, fmt.Errorf("parse image at %#x: %w: wraps the address space", base, ErrNotImage)
	}
	m, err := parseELF(io.NewSectionReader(r, 0, size), size, base)
	if err != nil {
		return nil, fmt.Errorf("parse image at %#x: %w", base, err)
	}
	return m, nil
}

func parseELF(r io.ReaderAt, size int64, base uint64) (*Module, error) {
	h, err := readHeader(r, size)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	var text *elf.Section
	textIndex := -1
	for i, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS && (s.Offset > uint64(size) || s.Size > uint64(size)-s.Offset) {
			return nil, fmt.Errorf("%w: section %q at %#x+%#x beyond image of %#x bytes", ErrNotImage, s.Name, s.Offset, s.Size, size)
		}
		// Wasmtime never compresses sections; debug/elf would inflate
		// them (and gives them no ReaderAt).
		if s.Flags&elf.SHF_COMPRESSED != 0 {
			return nil, fmt.Errorf("%w: compressed section %q", ErrNotImage, s.Name)
		}
		if s.Name == ".text" && text == nil {
			text, textIndex = s, i
		}
	}
	if text == nil || text.Type != elf.SHT_PROGBITS || text.Flags&elf.SHF_EXECINSTR == 0 || text.Size == 0 {
		return nil, fmt.Errorf("%w: no executable .text", ErrNotImage)
	}
	m := &Module{
		Base:      base,
		TextStart: base + text.Offset,
		TextEnd:   base + text.Offset + text.Size,
		size:      h.extent(),
		fp:        h.fingerprint,
	}

	engine, err := readSection(f, ".wasmtime.engine", maxEngineRead, true)
	if err != nil {
		return nil, err
	}
	m.Version = engineVersion(engine)
	major := majorVersion(m.Version)
	info, err := readSection(f, ".wasmtime.info", maxSectionRead, false)
	if err != nil {
		return nil, err
	}
	pool, err := readSection(f, ".name.wasm", maxSectionRead, false)
	if err != nil {
		return nil, err
	}
	// Only a core module's info starts with its Module; a component's
	// (EF_WASMTIME_COMPONENT) holds several.
	const osabiWasmtime, efWasmtimeModule = 200, 1
	if f.OSABI == osabiWasmtime && h.flags&efWasmtimeModule != 0 {
		m.Name = moduleName(info, major)
	}
	component := f.OSABI == osabiWasmtime && h.flags&efWasmtimeComponent != 0

	syms, err := readSymbols(f)
	if err != nil {
		return nil, err
	}
	facts := newSymbolFacts()
	for _, s := range syms {
		if int(s.Section) != textIndex || s.Name == "" {
			continue
		}
		if t := elf.ST_TYPE(s.Info); t != elf.STT_FUNC && t != elf.STT_NOTYPE {
			continue
		}
		// st_value is relative to the section's sh_addr, which is 0 in
		// Wasmtime's ET_REL images; subtracting it keeps this right for
		// linked images too.
		if s.Value < text.Addr || s.Value-text.Addr >= text.Size {
			continue
		}
		off := s.Value - text.Addr
		si := classify(s.Name)
		m.Funcs = append(m.Funcs, Func{
			Start:  m.TextStart + off,
			End:    m.TextStart + off + min(s.Size, text.Size-off),
			Name:   s.Name,
			Symbol: s.Name,
			Kind:   si.kind,
			Index:  si.index,
			Core:   si.module,
		})
		facts.add(si)
	}
	nm := findNames(info, pool, major, facts)
	for i := range m.Funcs {
		fn := &m.Funcs[i]
		if fn.Kind != WasmFunction {
			continue
		}
		si := classify(fn.Symbol)
		switch {
		case si.name != "":
			fn.Name = si.name
			if exact, ok := nm.forSymbol(si.index, si.name); ok {
				fn.Name = exact
			}
		case strings.HasPrefix(fn.Symbol, "_wasm_function_"):
			fn.Name = unnamedFunction(0, si.index)
			if exact, ok := nm.forIndex(si.index); ok {
				fn.Name = exact
			}
		default:
			fn.Name = unnamedFunction(si.module, si.index)
		}
	}
	m.Funcs = tidyFuncs(m.Funcs, m.TextEnd)
	if component {
		buildComponent(m, info, major)
	}
	return m, nil
}

// readSection returns the contents of the named section, or nil if there
// is none. A section larger than limit is cut to its first limit bytes
// when prefix is set and otherwise treated as absent: the names it would
// give are not worth refusing the image over.
func readSection(f *elf.File, name string, limit uint64, prefix bool) ([]byte, error) {
	s := f.Section(name)
	if s == nil || s.Type == elf.SHT_NOBITS {
		return nil, nil
	}
	n := s.Size
	if n > limit {
		if !prefix {
			return nil, nil
		}
		n = limit
	}
	b := make([]byte, n)
	if _, err := s.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("read section %s: %w", name, err)
	}
	return b, nil
}

// readSymbols reads .symtab after checking its size and that of its
// string table, which debug/elf would otherwise read whole.
func readSymbols(f *elf.File) ([]elf.Symbol, error) {
	var symtab *elf.Section
	for _, s := range f.Sections {
		if s.Type == elf.SHT_SYMTAB {
			symtab = s
			break
		}
	}
	if symtab == nil {
		return nil, nil
	}
	if symtab.Size/elf.Sym64Size > maxSymbols {
		return nil, fmt.Errorf("%w: %d symbols", ErrNotImage, symtab.Size/elf.Sym64Size)
	}
	if int(symtab.Link) >= len(f.Sections) || f.Sections[symtab.Link].Size > maxStrtabSize {
		return nil, fmt.Errorf("%w: bad symbol string table", ErrNotImage)
	}
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("%w: symbols: %v", ErrNotImage, err)
	}
	return syms, nil
}

// tidyFuncs sorts funcs, drops duplicates (preferring Wasm functions),
// gives zero-sized symbols the room up to the next one and cuts overlaps.
func tidyFuncs(funcs []Func, textEnd uint64) []Func {
	sort.SliceStable(funcs, func(i, j int) bool {
		if funcs[i].Start != funcs[j].Start {
			return funcs[i].Start < funcs[j].Start
		}
		return funcs[i].Kind == WasmFunction && funcs[j].Kind != WasmFunction
	})
	out := funcs[:0]
	for _, f := range funcs {
		if len(out) > 0 && out[len(out)-1].Start == f.Start {
			continue
		}
		out = append(out, f)
	}
	for i := range out {
		next := textEnd
		if i+1 < len(out) {
			next = out[i+1].Start
		}
		if out[i].End == out[i].Start || out[i].End > next {
			out[i].End = next
		}
	}
	return out
}
