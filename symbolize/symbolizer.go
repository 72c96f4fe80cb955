package symbolize

import (
	"errors"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmtrace/wasmtrace/proc"
)

// Symbolizer names JIT code of one process and follows its modules as
// they are compiled and freed. Lookup, TextRanges, Modules, Len and
// EngineVersion may run while Refresh does, and with each other.
//
// Refresh establishes only where each module's .text is and a fingerprint
// of it, and a module is parsed on first use (see lazy.go).
type Symbolizer struct {
	pid      int
	mem      proc.Memory
	readMaps func(pid int) ([]proc.Mapping, error) // proc.ReadMaps; tests replace it

	mu     sync.RWMutex
	images []*image // sorted by textStart, ranges disjoint
	// lines are the bounds of each image's text mapping, as of the last
	// Refresh: disjoint too, each holding its image's .text.
	lines [][2]uint64
	// unseen are the executable anonymous mappings that hold no known
	// image, as of the last Refresh, sorted: code nothing names yet.
	unseen [][2]uint64
	perf   []Func // from the perf map, sorted by Start

	// epoch counts Refreshes; an image is checked against its
	// fingerprint at most once per epoch (Lookup).
	epoch atomic.Uint64
	// gen changes whenever a Lookup could answer differently than
	// before: see Generation.
	gen atomic.Uint64

	// notes is set by FollowNotes; retired are the images a Refresh no
	// longer found, kept in that mode for the samples still to be named
	// (notes.go). Guarded by mu.
	notes   atomic.Bool
	retired []retiredImage

	refreshMu sync.Mutex             // one Refresh at a time; guards below
	failed    map[[2]uint64]struct{} // text mappings already reported
	noImage   map[proc.Mapping]bool  // r-x file mappings whose file's ELF header is no Wasmtime image's
	perfStamp perfStamp
}

type perfStamp struct {
	size int64
	mod  time.Time
}

// New returns a Symbolizer for pid reading memory through mem (usually
// proc.ProcessMemory{PID: pid}, which reads many ranges in one system
// call). It knows nothing until Refresh.
func New(pid int, mem proc.Memory) *Symbolizer {
	mr := &proc.MapsReader{PID: pid}
	return &Symbolizer{pid: pid, mem: mem, readMaps: func(int) ([]proc.Mapping, error) { return mr.Read() }}
}

// Refresh rereads the process's mappings. Images already known are kept
// while their text mapping still holds them; new ones are located (not
// parsed: see lazy.go); modules whose memory went away are dropped, and so
// are those whose parse failed since the last Refresh or that a Lookup
// found replaced. It returns how many modules were added. A failure to
// read the mappings is returned alone; otherwise the error joins an
// *ImageError for each executable mapping seen failing for the first time
// (found failing here, or by a parse since the last Refresh), and a
// perf-map problem if any, and the refresh is still applied.
//
// A refresh costs no read per known module: the maps text is parsed only
// when it changed (proc.MapsReader), a known module whose text mapping
// line is unchanged is kept without reading its memory, and only those
// whose line changed get their fingerprint (ELF header and section
// headers) checked, all in one vectored read (proc.ReadSpans, 1024 ranges
// a system call), as are the headers of new modules.
//
// But a module freed and another compiled at the same address can leave
// identical lines (same address and size, anonymous memory), so that is
// checked where it matters, before samples are named: Lookup checks a
// module's fingerprint the first time it is used after each Refresh (one
// read of its headers; ErrReplaced then, its PCs unresolved, and the next
// Refresh locates the new module). That costs a read per module sampled
// per refresh period instead of one per module known. Checking every known
// module at each Refresh in one vectored read was measured too (10,000
// modules: 20,000 ranges, 20 calls): 23 ms of CPU per refresh on a loaded
// machine, more than all the rest of the refresh; checking only changed
// lines would never see a same-size reuse.
func (s *Symbolizer) Refresh() (added int, err error) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()

	maps, err := s.readMaps(s.pid)
	if err != nil {
		return 0, err
	}
	maps = sortedMaps(maps)
	s.mu.RLock()
	old := s.images
	s.mu.RUnlock()
	epoch := s.epoch.Load() + 1 // the one this Refresh starts

	type slot struct {
		ti int
		im *image
	}
	var slots []slot
	var check []slot // known images whose text mapping line changed
	var cands []int  // text mappings to locate
	var errs []error
	failed := make(map[[2]uint64]struct{})
	noImage := make(map[proc.Mapping]bool)
	for i, m := range maps {
		if !maybeText(m) {
			continue
		}
		key := [2]uint64{m.Start, m.End}
		if im := known(old, m); im != nil {
			switch im.state.Load() {
			case stateFailed:
				// Parsed since the last Refresh, and damaged.
				failed[key] = struct{}{}
				errs = append(errs, im.err)
				continue
			case stateReplaced:
				// Another module in its place: locate it.
			default:
				if m == im.line {
					slots = append(slots, slot{i, im})
				} else {
					check = append(check, slot{i, im})
				}
				continue
			}
		}
		if _, seen := s.failed[key]; seen {
			failed[key] = struct{}{}
			continue
		}
		if s.noImage[m] {
			noImage[m] = true
			continue
		}
		cands = append(cands, i)
	}

	// Fingerprints of the known images whose line changed, all in one
	// vectored read.
	spans := make([]proc.Span, 0, 2*len(check))
	for _, k := range check {
		spans = append(spans,
			proc.Span{Addr: k.im.base, Buf: make([]byte, ehdrSize)},
			proc.Span{Addr: k.im.base + k.im.shoff, Buf: make([]byte, k.im.shnum*shdrSize)})
	}
	proc.ReadSpans(s.mem, spans)
	for j, k := range check {
		if sameImage(k.im, spans[2*j], spans[2*j+1]) {
			k.im.line = maps[k.ti]
			k.im.markChecked(epoch)
			slots = append(slots, k)
		} else {
			cands = append(cands, k.ti)
		}
	}

	sort.Ints(cands)
	for j, l := range locateMany(s.mem, maps, nil, cands) {
		m := maps[cands[j]]
		switch {
		case l.im != nil:
			l.im.markChecked(epoch)
			slots = append(slots, slot{cands[j], l.im})
			added++
		case l.err != nil:
			failed[[2]uint64{m.Start, m.End}] = struct{}{}
			errs = append(errs, l.err)
		case l.notImage:
			noImage[m] = true
		}
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i].ti < slots[j].ti })
	images := make([]*image, len(slots))
	lines := make([][2]uint64, len(slots))
	for i, sl := range slots {
		images[i] = sl.im
		lines[i] = [2]uint64{maps[sl.ti].Start, maps[sl.ti].End}
	}
	s.failed, s.noImage = failed, noImage

	perf, perfChanged, perfErr := s.refreshPerfMap()
	if perfErr != nil {
		errs = append(errs, perfErr)
	}

	var unseen [][2]uint64
	for _, m := range maps {
		if !m.Executable() || !m.Anonymous() {
			continue
		}
		// lines is sorted: it follows images, sorted by text.
		j := sort.Search(len(lines), func(j int) bool { return lines[j][1] > m.Start })
		if j == len(lines) || lines[j] != [2]uint64{m.Start, m.End} {
			unseen = append(unseen, [2]uint64{m.Start, m.End})
		}
	}
	if epoch == 1 {
		// What the first rescan finds was there before any note.
		for _, im := range images {
			im.born.Store(true)
		}
	}
	s.mu.Lock()
	if perfChanged || !slices.Equal(images, s.images) {
		s.gen.Add(1)
	}
	if s.notes.Load() {
		s.retire(s.images, images)
	}
	s.images, s.lines, s.unseen = images, lines, unseen
	if perfChanged {
		s.perf = perf
	}
	s.epoch.Store(epoch)
	s.mu.Unlock()
	return added, errors.Join(errs...)
}

// Generation changes whenever Lookup could name some PC differently than
// before: a Refresh that added or dropped a module or reread the perf map,
// or a module found replaced or damaged on use. A cache of Lookup's answers
// made in one generation holds in that generation, provided each module it
// names is still Current: a module freed and another compiled at the same
// address, with the same size, is seen only when checked.
func (s *Symbolizer) Generation() uint64 { return s.gen.Load() }

// Current reports whether m, returned by Lookup, is still the module in
// memory at its address, checking its headers once per Refresh as Lookup
// does. Once false, it stays false, and Generation has changed.
func (s *Symbolizer) Current(m *Module) bool {
	if m == nil {
		return false
	}
	s.mu.RLock()
	i := sort.Search(len(s.images), func(i int) bool { return s.images[i].textStart >= m.TextStart })
	var im *image
	if i < len(s.images) && s.images[i].textStart == m.TextStart {
		im = s.images[i]
	}
	same := func(im *image) bool { return im != nil && im.mod != nil && im.mod.Base == m.Base && im.mod.fp == m.fp }
	retired := false
	if !same(im) && s.notes.Load() {
		im, retired = s.lookupRetired(m.TextStart)
	}
	epoch := s.epoch.Load()
	s.mu.RUnlock()
	if !same(im) {
		return false
	}
	if retired || s.notes.Load() {
		return im.state.Load() != stateReplaced // the notes tell of reuse (notes.go)
	}
	return s.checkCurrent(im, epoch)
}

// checkCurrent is im.current, noting in the generation that a module
// named until now is found replaced. (One whose parse failed never named
// anything: no generation change is needed until Refresh drops it.)
func (s *Symbolizer) checkCurrent(im *image, epoch uint64) bool {
	if im.state.Load() == stateReplaced {
		return false
	}
	if im.current(s.mem, epoch) {
		return true
	}
	s.gen.Add(1)
	return false
}

// UnseenCode reports whether pc lies in executable anonymous memory that
// holds no module known at the last Refresh: JIT code wasmtrace cannot
// name yet (a module compiled since, or another engine's code), as opposed
// to the executable's and libraries' code.
func (s *Symbolizer) UnseenCode(pc uint64) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i := sort.Search(len(s.unseen), func(i int) bool { return s.unseen[i][1] > pc })
	return i < len(s.unseen) && s.unseen[i][0] <= pc
}

// known returns the known image whose text lies in text mapping m.
func known(old []*image, m proc.Mapping) *image {
	i := sort.Search(len(old), func(i int) bool { return old[i].textStart >= m.Start })
	if i == len(old) || old[i].textEnd > m.End {
		return nil
	}
	return old[i]
}

// refreshPerfMap rereads the perf map when its size or time changed.
func (s *Symbolizer) refreshPerfMap() (funcs []Func, changed bool, err error) {
	fi, err := os.Stat(perfMapPath(s.pid))
	if err != nil {
		changed = s.perfStamp != perfStamp{}
		s.perfStamp = perfStamp{}
		return nil, changed, nil
	}
	stamp := perfStamp{size: fi.Size(), mod: fi.ModTime()}
	if stamp == s.perfStamp {
		return nil, false, nil
	}
	s.perfStamp = stamp
	funcs, err = ReadPerfMap(s.pid)
	return funcs, true, err
}

// Lookup names pc. When pc lies in a module's .text, the module is
// returned even if no function covers pc (padding). For a function of a
// component's core module, the module returned is the component image
// named as that core module (see Module.Component). The perf map is
// consulted only for addresses outside every module.
//
// The first Lookup in a module parses it, and the first after each Refresh
// checks that it is still the module in memory (see Refresh): a module
// whose parse failed, or that another has replaced, names nothing. A PC in
// a module's text mapping but past its .text is checked too, since a
// module compiled in its place may have a longer .text.
func (s *Symbolizer) Lookup(pc uint64) (Func, *Module, bool) {
	if s.notes.Load() {
		return s.lookupNotes(pc)
	}
	s.mu.RLock()
	lines := s.lines
	i := sort.Search(len(lines), func(i int) bool { return lines[i][1] > pc })
	if i == len(lines) || lines[i][0] > pc {
		f, ok := lookupFunc(s.perf, pc)
		s.mu.RUnlock()
		return f, nil, ok
	}
	im := s.images[i]
	epoch := s.epoch.Load()
	if pc < im.textStart || pc >= im.textEnd {
		f, ok := lookupFunc(s.perf, pc)
		s.mu.RUnlock()
		s.checkCurrent(im, epoch)
		return f, nil, ok
	}
	s.mu.RUnlock()
	m := im.module(s.mem, epoch)
	if m == nil || !s.checkCurrent(im, epoch) {
		return Func{}, nil, false
	}
	f, ok := m.Lookup(pc)
	if ok {
		m = m.forFunc(f)
	}
	return f, m, ok
}

// TextRanges returns the [start, end) ranges of every known module's
// .text, sorted: the addresses at which a sampled PC is Wasm code. It
// parses nothing.
func (s *Symbolizer) TextRanges() [][2]uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([][2]uint64, len(s.images))
	for i, im := range s.images {
		out[i] = [2]uint64{im.textStart, im.textEnd}
	}
	return out
}

// Len returns the number of known modules, parsing nothing.
func (s *Symbolizer) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.images)
}

// Modules returns the known modules sorted by TextStart, parsing those not
// parsed yet and checking, in one vectored read, that those not checked
// since the last Refresh are still in memory (see Lookup); modules whose
// parse fails or that were replaced are left out (and dealt with by the
// next Refresh).
func (s *Symbolizer) Modules() []*Module {
	s.mu.RLock()
	images := s.images
	epoch := s.epoch.Load()
	s.mu.RUnlock()
	var check []*image
	var spans []proc.Span
	for _, im := range images {
		if im.state.Load() == stateParsed && im.checked.Load() < epoch {
			check = append(check, im)
			spans = append(spans,
				proc.Span{Addr: im.base, Buf: make([]byte, ehdrSize)},
				proc.Span{Addr: im.base + im.shoff, Buf: make([]byte, im.shnum*shdrSize)})
		}
	}
	proc.ReadSpans(s.mem, spans)
	for j, im := range check {
		if sameImage(im, spans[2*j], spans[2*j+1]) {
			im.markChecked(epoch)
		} else {
			im.state.Store(stateReplaced)
		}
	}
	var out []*Module
	for _, im := range images {
		if m := im.module(s.mem, epoch); m != nil && im.current(s.mem, epoch) {
			out = append(out, m)
		}
	}
	return out
}

// EngineVersion returns the Wasmtime version recorded in the first known
// module that records one (Module.Version), parsing modules in address
// order until one does; "" if none.
func (s *Symbolizer) EngineVersion() string {
	s.mu.RLock()
	images := s.images
	s.mu.RUnlock()
	epoch := s.epoch.Load()
	for _, im := range images {
		if m := im.module(s.mem, epoch); m != nil && im.current(s.mem, epoch) && m.Version != "" {
			return m.Version
		}
	}
	return ""
}

// Forget drops at once every module whose text lies in [lo, hi): the
// process unmapped that memory (a munmap seen by the kernel), and samples
// taken from now on are not in their code, even if another module is
// compiled at the same address before the next Refresh, which locates
// whatever is there then.
func (s *Symbolizer) Forget(lo, hi uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, im := range s.overlapping(lo, hi) {
		if im.state.Swap(stateReplaced) != stateReplaced {
			s.gen.Add(1)
		}
	}
	if n := len(s.retired); n > 0 {
		if s.forgetRetired(lo, hi); len(s.retired) != n {
			s.gen.Add(1)
		}
	}
}

// Preload parses now every known module whose text overlaps [lo, hi):
// code just published may be freed again before its first sample is
// named, and a module is parsed from the process's memory.
func (s *Symbolizer) Preload(lo, hi uint64) {
	s.mu.RLock()
	ims := s.overlapping(lo, hi)
	epoch := s.epoch.Load()
	s.mu.RUnlock()
	for _, im := range ims {
		im.module(s.mem, epoch)
	}
}

// overlapping returns the images whose text overlaps [lo, hi). s.mu is
// held.
func (s *Symbolizer) overlapping(lo, hi uint64) []*image {
	i := sort.Search(len(s.images), func(i int) bool { return s.images[i].textEnd > lo })
	var out []*image
	for ; i < len(s.images) && s.images[i].textStart < hi; i++ {
		out = append(out, s.images[i])
	}
	return out
}
