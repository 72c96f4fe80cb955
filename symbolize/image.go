package symbolize

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
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
	raw          [ehdrSize]byte // the ELF header
}

// fpSeed seeds fingerprints, which are only ever compared within this
// process.
var fpSeed = maphash.MakeSeed()

// fingerprint hashes an image's ELF header and section header table: what
// tells one image from another compiled at the same address (see
// Symbolizer.Refresh). maphash rather than FNV: a refresh hashes the
// headers of every known module, about 1 KiB each.
func fingerprint(eh, table []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(fpSeed)
	h.Write(eh)
	h.Write(table)
	return h.Sum64()
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
	h := &elfHeader{raw: eh}
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
	h.fingerprint = fingerprint(eh[:], h.sectionTable)
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

// head is what the cheap pass over an image establishes (parseHead): where
// it is, its .text, and its fingerprint.
type head struct {
	base               uint64
	textStart, textEnd uint64
	size               uint64 // extent: bytes of the image from base
	fp                 uint64 // fingerprint of the ELF and section headers
	shoff              uint64 // where the section headers are, from base
	shnum              int
}

// parseHead makes the checks of ParseImage that need only the ELF header,
// the section headers and the section-name table, and returns what they
// establish: the .text range and the fingerprint. Those three are all it
// reads. Like ParseImage it never panics.
func parseHead(r io.ReaderAt, size int64, base uint64) (hd head, err error) {
	defer func() {
		if p := recover(); p != nil {
			hd, err = head{}, fmt.Errorf("parse image at %#x: %w: parser panicked: %v", base, ErrNotImage, p)
		}
	}()
	if size <= 0 || size > maxImageSize {
		return head{}, fmt.Errorf("parse image at %#x: %w: size %d", base, ErrNotImage, size)
	}
	if base > ^uint64(0)-uint64(size) {
		return head{}, fmt.Errorf("parse image at %#x: %w: wraps the address space", base, ErrNotImage)
	}
	h, textOff, textSize, err := checkHeaders(io.NewSectionReader(r, 0, size), size)
	if err != nil {
		return head{}, fmt.Errorf("parse image at %#x: %w", base, err)
	}
	return head{
		base:      base,
		textStart: base + textOff,
		textEnd:   base + textOff + textSize,
		size:      h.extent(),
		fp:        h.fingerprint,
		shoff:     h.shoff,
		shnum:     h.shnum,
	}, nil
}

// checkHeaders is openELF for the cheap pass: the checks that
// debug/elf.NewFile and openELF make of the ELF header, the section headers
// and the section-name table, made on the bytes (NewFile allocates a
// Section and readers for each section, which was a third of the CPU time
// of a first Refresh of 10,000 modules). It returns .text's offset and
// size. Images with program headers, which Wasmtime never writes, are
// handed to openELF. FuzzParseHead checks that the two agree.
func checkHeaders(r io.ReaderAt, size int64) (h *elfHeader, textOff, textSize uint64, err error) {
	h, err = readHeader(r, size)
	if err != nil {
		return nil, 0, 0, err
	}
	eh, o := h.raw[:], h.order
	if o.Uint16(eh[0x38:]) != 0 { // e_phnum
		h, _, text, _, err := openELF(r, size)
		if err != nil {
			return nil, 0, 0, err
		}
		return h, text.Offset, text.Size, nil
	}
	bad := func(what string) (*elfHeader, uint64, uint64, error) {
		return nil, 0, 0, fmt.Errorf("%w: %s", ErrNotImage, what)
	}
	// e_version as debug/elf reads it (its Version is a byte), so that
	// this check and the full parse accept the same headers.
	if eh[elf.EI_VERSION] != byte(elf.EV_CURRENT) || byte(o.Uint32(eh[0x14:])) != byte(elf.EV_CURRENT) {
		return bad("ELF version")
	}
	if int64(o.Uint64(eh[0x20:])) < 0 { // e_phoff
		return bad("invalid phoff")
	}
	shstrndx := int(o.Uint16(eh[0x3e:]))
	if shstrndx == 0 {
		return bad("no executable .text") // no section names
	}
	sec := func(i int) []byte { return h.sectionTable[i*shdrSize : (i+1)*shdrSize] }
	for i := 0; i < h.shnum; i++ {
		sh := sec(i)
		if int64(o.Uint64(sh[0x18:])) < 0 || int64(o.Uint64(sh[0x20:])) < 0 {
			return bad("invalid section offset or size")
		}
	}
	str := sec(shstrndx)
	if elf.SectionType(o.Uint32(str[4:])) != elf.SHT_STRTAB {
		return bad("invalid section name string table type")
	}
	if elf.SectionFlag(o.Uint64(str[8:]))&elf.SHF_COMPRESSED != 0 {
		return bad("compressed section name string table")
	}
	strOff, strSize := o.Uint64(str[0x18:]), o.Uint64(str[0x20:])
	if strOff > uint64(size) || strSize > uint64(size)-strOff {
		return bad("section name string table beyond the image")
	}
	names := make([]byte, strSize)
	if _, err := r.ReadAt(names, int64(strOff)); err != nil {
		return nil, 0, 0, fmt.Errorf("%w: read section names: %v", ErrNotImage, err)
	}
	textIndex := -1
	for i := 0; i < h.shnum; i++ {
		sh := sec(i)
		name, ok := cString(names, o.Uint32(sh[0:]))
		if !ok {
			return bad("bad section name index")
		}
		typ, flags := elf.SectionType(o.Uint32(sh[4:])), elf.SectionFlag(o.Uint64(sh[8:]))
		off, sz := o.Uint64(sh[0x18:]), o.Uint64(sh[0x20:])
		if typ != elf.SHT_NOBITS && (off > uint64(size) || sz > uint64(size)-off) {
			return nil, 0, 0, fmt.Errorf("%w: section %q at %#x+%#x beyond image of %#x bytes", ErrNotImage, name, off, sz, size)
		}
		if flags&elf.SHF_COMPRESSED != 0 {
			return nil, 0, 0, fmt.Errorf("%w: compressed section %q", ErrNotImage, name)
		}
		if name == ".text" && textIndex < 0 {
			textIndex = i
		}
	}
	if textIndex < 0 {
		return bad("no executable .text")
	}
	sh := sec(textIndex)
	textOff, textSize = o.Uint64(sh[0x18:]), o.Uint64(sh[0x20:])
	if elf.SectionType(o.Uint32(sh[4:])) != elf.SHT_PROGBITS || elf.SectionFlag(o.Uint64(sh[8:]))&elf.SHF_EXECINSTR == 0 || textSize == 0 {
		return bad("no executable .text")
	}
	return h, textOff, textSize, nil
}

// cString is debug/elf's getString: the NUL-terminated string at start.
func cString(b []byte, start uint32) (string, bool) {
	if uint64(start) >= uint64(len(b)) {
		return "", false
	}
	end := bytes.IndexByte(b[start:], 0)
	if end < 0 {
		return "", false
	}
	return string(b[start : int(start)+end]), true
}

// openELF validates the headers of an image of size bytes and finds its
// .text.
func openELF(r io.ReaderAt, size int64) (*elfHeader, *elf.File, *elf.Section, int, error) {
	h, err := readHeader(r, size)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, nil, nil, 0, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	var text *elf.Section
	textIndex := -1
	for i, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS && (s.Offset > uint64(size) || s.Size > uint64(size)-s.Offset) {
			return nil, nil, nil, 0, fmt.Errorf("%w: section %q at %#x+%#x beyond image of %#x bytes", ErrNotImage, s.Name, s.Offset, s.Size, size)
		}
		// Wasmtime never compresses sections; debug/elf would inflate
		// them (and gives them no ReaderAt).
		if s.Flags&elf.SHF_COMPRESSED != 0 {
			return nil, nil, nil, 0, fmt.Errorf("%w: compressed section %q", ErrNotImage, s.Name)
		}
		if s.Name == ".text" && text == nil {
			text, textIndex = s, i
		}
	}
	if text == nil || text.Type != elf.SHT_PROGBITS || text.Flags&elf.SHF_EXECINSTR == 0 || text.Size == 0 {
		return nil, nil, nil, 0, fmt.Errorf("%w: no executable .text", ErrNotImage)
	}
	return h, f, text, textIndex, nil
}

func parseELF(r io.ReaderAt, size int64, base uint64) (*Module, error) {
	h, f, text, textIndex, err := openELF(r, size)
	if err != nil {
		return nil, err
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
