package symbolize

import (
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
// yield returns false.
func EachModule(mem proc.Memory, maps []proc.Mapping, yield func(*Module) bool) error {
	maps = sortedMaps(maps)
	var errs []error
	for i := range maps {
		if !textCandidate(mem, maps, i) {
			continue
		}
		mod, err := locate(mem, maps, i)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !yield(mod) {
			break
		}
	}
	return errors.Join(errs...)
}

// textCandidate reports whether maps[i] may hold a module's .text: an
// anonymous r-x mapping (isTextCandidate), or an r-x mapping of a file
// that holds a Wasmtime image (fileTextCandidate). Shared libraries and
// executables are not candidates, and cost one 64-byte read each.
func textCandidate(mem proc.Memory, maps []proc.Mapping, i int) bool {
	if maps[i].Anonymous() {
		return isTextCandidate(maps[i])
	}
	return fileTextCandidate(mem, maps, i)
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

// locate finds the image whose .text lies in maps[ti].
//
//  1. The image is one anonymous allocation, so it lies in the run of
//     contiguous readable anonymous mappings around the text mapping:
//     [low, high), with low at most maxBackScan below the text.
//  2. Scan down from the text, page by page, for "\x7fELF" at a page start.
//  3. Parse each hit with reads bounded by high; the first image whose
//     .text lies inside the text mapping wins. Wasm data in the image may
//     contain ELF files, which is why a hit that does not fit is passed
//     over rather than fatal.
func locate(mem proc.Memory, maps []proc.Mapping, ti int) (*Module, error) {
	if !maps[ti].Anonymous() {
		return locateFile(mem, maps, ti)
	}
	text := maps[ti]
	low := text.Start
	for j := ti - 1; j >= 0 && maps[j].End == low && imageMemory(maps[j]); j-- {
		low = maps[j].Start
		if text.Start-low >= maxBackScan {
			low = text.Start - maxBackScan
			break
		}
	}
	high := text.End
	for j := ti + 1; j < len(maps) && maps[j].Start == high && imageMemory(maps[j]); j++ {
		high = maps[j].End
	}
	page := uint64(os.Getpagesize())
	low = (low + page - 1) &^ (page - 1)

	var firstErr *ImageError
	buf := make([]byte, min(scanChunk, text.Start-low))
	for top := text.Start; top > low; {
		lo := top - min(uint64(len(buf)), top-low)
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
			mod, err := ParseImage(proc.ReaderAt{Mem: mem, Base: a, Limit: int64(limit)}, int64(limit), a)
			if err == nil && (mod.TextStart < text.Start || mod.TextEnd > text.End) {
				err = fmt.Errorf("%w: .text %#x-%#x outside the executable mapping", ErrNotImage, mod.TextStart, mod.TextEnd)
			}
			if err == nil {
				return mod, nil
			}
			if firstErr == nil {
				firstErr = &ImageError{Text: text, Base: a, Err: err}
			}
		}
		top = lo
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return nil, &ImageError{Text: text, Err: ErrNoImage}
}
