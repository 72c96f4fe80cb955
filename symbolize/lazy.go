package symbolize

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmtrace/wasmtrace/proc"
)

// Lazy symbolization.
//
// A process can hold thousands of compiled modules, and what the kernel
// walker needs of each is only the exact range of its .text. So Refresh
// establishes only that and the image's fingerprint (the cheap pass,
// parseHead: the ELF header, the section headers and the section-name
// table, read for all new modules in a few vectored reads), and an image
// is parsed whole (symbols, names, component, version) the first time it
// is used: a Lookup of a PC in its .text, Modules, EachModule.
//
// The parse reads the image again, so it checks that the headers still
// give the fingerprint and .text the cheap pass saw, and so does the first
// Lookup in the image after each Refresh (current; Refresh reads nothing
// of modules whose maps lines are unchanged, see there why). If they do
// not, the module was freed and another compiled at the same place: the
// image is marked replaced, its PCs stay unresolved, and the next Refresh
// locates whatever is there now. Any other failure of the parse (memory
// gone, a damaged symbol table) marks the image failed: its PCs stay
// unresolved and the next Refresh drops it, reports its *ImageError once
// and does not try that text mapping again while it stays.

// ErrReplaced means an image's headers changed between the cheap pass and
// the parse: the module was freed and another took its place.
var ErrReplaced = errors.New("image changed since it was found (module freed and another compiled in its place)")

// image states
const (
	stateUnparsed int32 = iota
	stateParsed
	stateReplaced // headers differ from the cheap pass: relocate
	stateFailed   // parse failed: drop, report once
)

// image is one compiled-module image as Refresh knows it, parsed into a
// Module on first use.
type image struct {
	head
	limit uint64       // bytes from base a parse may read
	text  proc.Mapping // the text mapping the image was found in
	file  string       // the file mapped, "" for anonymous memory
	line  proc.Mapping // the text mapping as last checked; Refresh's

	// checked is the Symbolizer epoch in which the image's headers were
	// last seen to match its fingerprint.
	checked atomic.Uint64

	// found is when a Refresh located the image; born is set once the
	// code note of its memory was applied (notes.go).
	found time.Time
	born  atomic.Bool

	once  sync.Once
	state atomic.Int32 // set last by the parse (mod, err set before); by current to replaced
	mod   *Module
	err   error // *ImageError when the parse failed
}

func newImage(text proc.Mapping, h head, limit uint64) *image {
	im := &image{head: h, limit: limit, text: text, line: text, found: time.Now()}
	if !text.Anonymous() {
		im.file = text.Path
	}
	return im
}

// module returns the parsed module, parsing it the first time (which
// checks the headers: the image is then current in epoch); nil when the
// parse failed. Safe for concurrent use: a second caller waits for the
// first one's parse.
func (im *image) module(mem proc.Memory, epoch uint64) *Module {
	im.once.Do(func() { im.parse(mem, epoch) })
	return im.mod
}

// current reports whether the image is still the one in memory: its
// headers are read again unless that was done in this epoch already. An
// image that is not is marked replaced, for good.
func (im *image) current(mem proc.Memory, epoch uint64) bool {
	if im.state.Load() == stateReplaced {
		return false
	}
	if im.checked.Load() >= epoch {
		return true
	}
	spans := []proc.Span{
		{Addr: im.base, Buf: make([]byte, ehdrSize)},
		{Addr: im.base + im.shoff, Buf: make([]byte, im.shnum*shdrSize)},
	}
	proc.ReadSpans(mem, spans)
	if !sameImage(im, spans[0], spans[1]) {
		im.state.Store(stateReplaced)
		return false
	}
	im.markChecked(epoch)
	return true
}

// markChecked records that the headers matched in epoch.
func (im *image) markChecked(epoch uint64) {
	for {
		old := im.checked.Load()
		if old >= epoch || im.checked.CompareAndSwap(old, epoch) {
			return
		}
	}
}

// sameImage reports whether the spans read of im's ELF header and section
// header table give its fingerprint.
func sameImage(im *image, eh, table proc.Span) bool {
	return eh.Err == nil && table.Err == nil && fingerprint(eh.Buf, table.Buf) == im.fp
}

func (im *image) parse(mem proc.Memory, epoch uint64) {
	r := proc.ReaderAt{Mem: mem, Base: im.base, Limit: int64(im.limit)}
	fail := func(st int32, err error) {
		im.err = &ImageError{Text: im.text, Base: im.base, Err: err}
		im.state.Store(st)
	}
	// The headers first: a different image is not a damaged one.
	if h, err := readHeader(io.NewSectionReader(r, 0, int64(im.limit)), int64(im.limit)); err == nil && h.fingerprint != im.fp {
		fail(stateReplaced, ErrReplaced)
		return
	}
	m, err := ParseImage(r, int64(im.limit), im.base)
	if err == nil && (m.fp != im.fp || m.TextStart != im.textStart || m.TextEnd != im.textEnd) {
		fail(stateReplaced, ErrReplaced)
		return
	}
	if err != nil {
		fail(stateFailed, err)
		return
	}
	if im.file != "" {
		m.setFile(im.file)
	}
	im.mod = m
	im.markChecked(epoch)
	im.state.Store(stateParsed)
}

// prefetched serves reads from spans read beforehand (in one vectored read
// for many images), and any other read from r. Offsets are relative to the
// image's base.
type prefetched struct {
	r     io.ReaderAt
	spans []cachedSpan
}

type cachedSpan struct {
	off  int64
	data []byte
}

func (p *prefetched) ReadAt(b []byte, off int64) (int, error) {
	for _, c := range p.spans {
		if off >= c.off && off-c.off <= int64(len(c.data)) && int64(len(b)) <= int64(len(c.data))-(off-c.off) {
			return copy(b, c.data[off-c.off:]), nil
		}
	}
	return p.r.ReadAt(b, off)
}

func (p *prefetched) add(off uint64, data []byte) {
	p.spans = append(p.spans, cachedSpan{int64(off), data})
}
