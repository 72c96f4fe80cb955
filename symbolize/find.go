package symbolize

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/wasmtrace/wasmtrace/proc"
)

// Bounds of the search for images.
const (
	// maxBackScan is how far below a text mapping an ELF header is looked
	// for. Wasmtime puts .text one page after the header; the rest is
	// margin for sections that might one day precede it.
	maxBackScan = 64 << 20
	// scanChunk is how much memory one read covers during the scan.
	scanChunk = 1 << 20
)

// ErrNoImage means an executable anonymous mapping has no compiled-module
// image below it: JIT code of something other than Wasmtime, or a layout
// this package does not know.
var ErrNoImage = errors.New("no compiled-module image found")

// ImageError reports an executable mapping that was skipped: an anonymous
// one, or one of a file that holds a Wasmtime image.
type ImageError struct {
	Text proc.Mapping // the executable mapping
	Base uint64       // address of the rejected ELF header, 0 if none found
	Err  error
}

func (e *ImageError) Error() string {
	what := "executable mapping"
	if !e.Text.Anonymous() {
		what += " of " + e.Text.Path
	}
	if e.Base == 0 {
		return fmt.Sprintf("%s %#x-%#x: %v", what, e.Text.Start, e.Text.End, e.Err)
	}
	return fmt.Sprintf("%s %#x-%#x, image at %#x: %v", what, e.Text.Start, e.Text.End, e.Base, e.Err)
}

func (e *ImageError) Unwrap() error { return e.Err }

// FindModules finds and parses every compiled-module image in memory.
// Mappings that cannot be explained by an image are skipped, not fatal:
// the returned error then joins one *ImageError per skipped mapping
// (errors.Is(err, ErrNoImage) for those without any ELF header) and the
// modules found are still returned, sorted by TextStart.
func FindModules(mem proc.Memory, maps []proc.Mapping) ([]*Module, error) {
	var mods []*Module
	err := EachModule(mem, maps, func(m *Module) bool {
		mods = append(mods, m)
		return true
	})
	return mods, err
}

// EachModule is FindModules one module at a time, in address order, until
// yield returns false: a module is located and parsed only when the ones
// below it have been yielded.
func EachModule(mem proc.Memory, maps []proc.Mapping, yield func(*Module) bool) error {
	maps = sortedMaps(maps)
	rs := imageRuns(maps)
	var errs []error
	for i := range maps {
		if !maybeText(maps[i]) {
			continue
		}
		im, err := locateMany(mem, maps, rs, []int{i})[0].get()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if im == nil {
			continue
		}
		mod := im.module(mem, 0)
		if mod == nil {
			errs = append(errs, im.err)
			continue
		}
		if !yield(mod) {
			break
		}
	}
	return errors.Join(errs...)
}

// maybeText reports the mappings that may hold a module's .text without
// reading memory: anonymous r-x mappings (isTextCandidate), and r-x
// mappings of a file past its offset 0, which are candidates if the ELF
// header at offset 0 is a Wasmtime image's (fileTextCandidate).
func maybeText(m proc.Mapping) bool {
	if m.Anonymous() {
		return isTextCandidate(m)
	}
	return readExec(m) && m.Offset != 0
}

// isTextCandidate reports anonymous mappings that may hold a module's
// .text: anonymous and r-x. Wasmtime publishes code read-only; writable
// and executable memory is something else, typically the thread stacks
// of a program linked against an object without .note.GNU-stack
// (Wasmtime 3's libwasmtime.a does that to every wasmtime-go program).
func isTextCandidate(m proc.Mapping) bool {
	return m.Anonymous() && readExec(m)
}

// readExec reports r-x mappings: readable, executable, not writable.
func readExec(m proc.Mapping) bool {
	return m.Executable() && m.Readable() && (len(m.Perms) < 2 || m.Perms[1] != 'w') && m.End > m.Start
}

func sortedMaps(maps []proc.Mapping) []proc.Mapping {
	if sort.SliceIsSorted(maps, func(i, j int) bool { return maps[i].Start < maps[j].Start }) {
		return maps
	}
	s := append([]proc.Mapping(nil), maps...)
	sort.Slice(s, func(i, j int) bool { return s[i].Start < s[j].Start })
	return s
}

// imageMemory reports mappings an image can occupy.
func imageMemory(m proc.Mapping) bool { return m.Anonymous() && m.Readable() }

// located is what locateMany says of one text mapping: the image found,
// or why none was (an *ImageError), or neither when the mapping is of a
// file that holds no Wasmtime image (notImage when its ELF header says
// so, which does not change while the mapping stays).
type located struct {
	im       *image
	err      error
	notImage bool
}

func (l located) get() (*image, error) { return l.im, l.err }

// probe is the cheap pass over one candidate text mapping.
type probe struct {
	ti    int
	text  proc.Mapping
	base  uint64 // where the ELF header is looked for
	limit uint64 // bytes from base that the image may occupy
	file  bool
	eh    []byte
	pre   prefetched
	slow  bool // not found at base: scan (anonymous) memory below
	done  bool
	out   located
}

// maxNameTable bounds the section-name table prefetched for an image;
// larger ones (none real) are read by the parse as it goes.
const maxNameTable = 64 << 10

// namesBefore is how much is read right before the section headers along
// with them: Wasmtime's object writer puts .shstrtab there, and its names
// take 150 to 300 bytes.
const namesBefore = 512

// locateMany finds the images whose .text lies in maps[ti], for each ti in
// idx (maps sorted, each maps[ti] a maybeText mapping), and runs the cheap
// pass over them (parseHead).
//
// Every Wasmtime version supported puts the ELF header of an image in
// anonymous memory exactly one page below its .text, and a file-mapped
// image's header at the file's offset 0: so the headers of all candidates
// are read at once, in one vectored read (proc.ReadSpans), then their
// section header tables in a second, with the bytes before them that hold
// the section-name table in Wasmtime's images (a third read fetches the
// name tables found elsewhere); a few process_vm_readv calls for any
// number of modules. An
// anonymous candidate without an image one page down is scanned for one
// (locateSlow), alone.
func locateMany(mem proc.Memory, maps []proc.Mapping, rs *runs, idx []int) []located {
	page := uint64(os.Getpagesize())
	if rs == nil && len(idx) > 0 {
		rs = imageRuns(maps)
	}
	probes := make([]probe, len(idx))
	for k, ti := range idx {
		p := &probes[k]
		p.ti, p.text = ti, maps[ti]
		if p.text.Anonymous() {
			low, high := rs.imageRun(maps, ti, page)
			if p.text.Start-low < page {
				p.slow = true // nothing mapped below: ErrNoImage from the scan
				continue
			}
			p.base = p.text.Start - page
			p.limit = min(high-p.base, maxImageSize)
			continue
		}
		p.file = true
		base, high, ok := fileRun(maps, ti)
		if !ok {
			p.done = true // not a candidate
			continue
		}
		p.base, p.limit = base, min(high-base, maxImageSize)
	}

	// Round 1: the ELF headers.
	var spans []proc.Span
	var owner []int
	for k := range probes {
		p := &probes[k]
		if p.done || p.slow {
			continue
		}
		p.eh = make([]byte, min(ehdrSize, p.limit))
		spans = append(spans, proc.Span{Addr: p.base, Buf: p.eh})
		owner = append(owner, k)
	}
	proc.ReadSpans(mem, spans)
	for j, sp := range spans {
		p := &probes[owner[j]]
		ok := sp.Err == nil && len(p.eh) == ehdrSize && string(p.eh[:4]) == "\x7fELF"
		switch {
		case p.file && sp.Err != nil:
			p.done = true // unreadable: not a candidate, for now
		case p.file && !wasmtimeHeader(p.eh):
			p.done = true // a shared library, an executable: not a candidate
			p.out.notImage = true
		case !ok:
			p.slow = true
		default:
			p.pre.add(0, p.eh)
		}
	}

	// Round 2: the section header tables, where the header says they
	// are (readHeader checks it all again), with the bytes right before
	// them, where Wasmtime's writer puts the section-name table.
	spans, owner = spans[:0], owner[:0]
	type tableAt struct {
		lo    uint64 // image offset of the span read
		table []byte
	}
	tables := make(map[int]tableAt, len(probes))
	for k := range probes {
		p := &probes[k]
		if p.done || p.slow {
			continue
		}
		order := elfOrder(p.eh)
		if order == nil || order.Uint16(p.eh[0x3a:]) != shdrSize {
			continue
		}
		shoff, shnum := order.Uint64(p.eh[0x28:]), uint64(order.Uint16(p.eh[0x3c:]))
		if shnum == 0 || shnum > maxSections || shoff < ehdrSize || shoff > p.limit || shnum*shdrSize > p.limit-shoff {
			continue
		}
		lo := shoff - min(shoff-ehdrSize, namesBefore)
		spans = append(spans, proc.Span{Addr: p.base + lo, Buf: make([]byte, shoff-lo+shnum*shdrSize)})
		owner = append(owner, k)
	}
	proc.ReadSpans(mem, spans)
	for j, sp := range spans {
		if sp.Err == nil {
			p := &probes[owner[j]]
			lo := sp.Addr - p.base
			p.pre.add(lo, sp.Buf)
			shoff := elfOrder(p.eh).Uint64(p.eh[0x28:])
			tables[owner[j]] = tableAt{lo, sp.Buf[shoff-lo:]}
		}
	}

	// Round 3: the section-name tables not read with the section headers
	// (debug/elf reads them whole).
	spans, owner = spans[:0], owner[:0]
	for k, t := range tables {
		p := &probes[k]
		order := elfOrder(p.eh)
		shstrndx := uint64(order.Uint16(p.eh[0x3e:]))
		if shstrndx*shdrSize >= uint64(len(t.table)) {
			continue
		}
		sh := t.table[shstrndx*shdrSize:]
		off, size := order.Uint64(sh[0x18:]), order.Uint64(sh[0x20:])
		if size == 0 || size > maxNameTable || off > p.limit || size > p.limit-off {
			continue
		}
		if off >= t.lo && off+size <= order.Uint64(p.eh[0x28:])+uint64(len(t.table)) {
			continue // read already
		}
		spans = append(spans, proc.Span{Addr: p.base + off, Buf: make([]byte, size)})
		owner = append(owner, k)
	}
	proc.ReadSpans(mem, spans)
	for j, sp := range spans {
		if sp.Err == nil {
			p := &probes[owner[j]]
			p.pre.add(sp.Addr-p.base, sp.Buf)
		}
	}

	out := make([]located, len(probes))
	for k := range probes {
		p := &probes[k]
		switch {
		case p.done:
			out[k] = p.out
			continue
		case p.slow:
			out[k] = locateSlow(mem, maps, rs, p.ti)
			continue
		}
		p.pre.r = proc.ReaderAt{Mem: mem, Base: p.base, Limit: int64(p.limit)}
		h, err := parseHead(&p.pre, int64(p.limit), p.base)
		if err == nil && (h.textStart < p.text.Start || h.textEnd > p.text.End) {
			err = fmt.Errorf("%w: .text %#x-%#x outside the executable mapping", ErrNotImage, h.textStart, h.textEnd)
		}
		switch {
		case err == nil:
			out[k] = located{im: newImage(p.text, h, p.limit)}
		case p.file:
			out[k] = located{err: &ImageError{Text: p.text, Base: p.base, Err: err}}
		default:
			out[k] = locateSlow(mem, maps, rs, p.ti)
		}
	}
	return out
}

// elfOrder is the byte order of an ELF64 header, nil if eh is not one.
func elfOrder(eh []byte) binary.ByteOrder {
	if len(eh) < ehdrSize || elf.Class(eh[elf.EI_CLASS]) != elf.ELFCLASS64 {
		return nil
	}
	switch elf.Data(eh[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		return binary.LittleEndian
	case elf.ELFDATA2MSB:
		return binary.BigEndian
	}
	return nil
}

// runs are, for each mapping of a sorted list, the bounds of the run of
// contiguous image memory (imageMemory) it belongs to. Computed once for
// all mappings: thousands of modules sit in one run, which walking it from
// each of them would make quadratic.
type runs struct{ start, end []uint64 }

func imageRuns(maps []proc.Mapping) *runs {
	r := &runs{start: make([]uint64, len(maps)), end: make([]uint64, len(maps))}
	for i, m := range maps {
		r.start[i] = m.Start
		if i > 0 && maps[i-1].End == m.Start && imageMemory(maps[i-1]) && imageMemory(m) {
			r.start[i] = r.start[i-1]
		}
	}
	for i := len(maps) - 1; i >= 0; i-- {
		r.end[i] = maps[i].End
		if i+1 < len(maps) && maps[i+1].Start == maps[i].End && imageMemory(maps[i+1]) && imageMemory(maps[i]) {
			r.end[i] = r.end[i+1]
		}
	}
	return r
}

// imageRun is where an image whose .text is the anonymous mapping maps[ti]
// can lie: [low, high), the run of contiguous readable anonymous mappings
// around the text, low at most maxBackScan below the text and page
// aligned.
func (r *runs) imageRun(maps []proc.Mapping, ti int, page uint64) (low, high uint64) {
	text := maps[ti]
	low, high = r.start[ti], r.end[ti]
	if text.Start-low >= maxBackScan {
		low = text.Start - maxBackScan
	}
	low = (low + page - 1) &^ (page - 1)
	return low, high
}

// locateSlow finds the image whose .text lies in the anonymous mapping
// maps[ti] by scanning the memory below it.
//
//  1. The image is one anonymous allocation, so it lies in the run of
//     contiguous readable anonymous mappings around the text mapping:
//     [low, high), with low at most maxBackScan below the text.
//  2. Scan down from the text, page by page, for "\x7fELF" at a page start,
//     in reads that grow from 16 pages to scanChunk.
//  3. Check each hit with the cheap pass (parseHead), its reads bounded by
//     high; the first image whose .text lies inside the text mapping wins.
//     Wasm data in the image may contain ELF files, which is why a hit
//     that does not fit is passed over rather than fatal.
func locateSlow(mem proc.Memory, maps []proc.Mapping, rs *runs, ti int) located {
	text := maps[ti]
	page := uint64(os.Getpagesize())
	low, high := rs.imageRun(maps, ti, page)

	var firstErr *ImageError
	chunkSize := 16 * page
	buf := make([]byte, min(scanChunk, text.Start-low))
	for top := text.Start; top > low; {
		lo := top - min(chunkSize, top-low, uint64(len(buf)))
		chunkSize = min(chunkSize*4, scanChunk)
		chunk := buf[:top-lo]
		if _, err := mem.ReadAt(chunk, lo); err != nil {
			// Memory went away under us (or was never readable): the
			// image, if any, cannot be below here.
			break
		}
		for a := top - page; a >= lo && a < top; a -= page {
			off := a - lo
			if string(chunk[off:off+4]) != "\x7fELF" {
				continue
			}
			limit := min(high-a, maxImageSize)
			h, err := parseHead(proc.ReaderAt{Mem: mem, Base: a, Limit: int64(limit)}, int64(limit), a)
			if err == nil && (h.textStart < text.Start || h.textEnd > text.End) {
				err = fmt.Errorf("%w: .text %#x-%#x outside the executable mapping", ErrNotImage, h.textStart, h.textEnd)
			}
			if err == nil {
				return located{im: newImage(text, h, limit)}
			}
			if firstErr == nil {
				firstErr = &ImageError{Text: text, Base: a, Err: err}
			}
		}
		top = lo
	}
	if firstErr != nil {
		return located{err: firstErr}
	}
	return located{err: &ImageError{Text: text, Err: ErrNoImage}}
}
