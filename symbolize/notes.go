package symbolize

import (
	"sort"
	"time"
)

// Following code notes. When the kernel tells of each module's code as it
// is published and of each munmap (loader.EventCode, loader.EventUnmap), in
// the ring buffer in order with the samples, the samples are named in that
// order, which lags the process by whatever is still unread. A rescan reads
// the process as it is now, ahead of the samples being named: a module it
// finds gone may still have samples waiting, and a module it finds new may
// be where another was that still has samples waiting. So, in this mode:
//
//   - a module is removed by the munmap note of its memory (Forget), not by
//     a rescan that no longer finds it: that one keeps it aside (retired)
//     until the note, or retiredFor if no note comes;
//   - a module a rescan finds is unborn until the code note of its memory
//     is applied (Born): samples before the note cannot be in it, and the
//     module it may have replaced still names them;
//   - the fingerprint check of a module at its first use after a rescan is
//     not made: it reads the process as it is now, where the module may
//     be gone already though samples of it wait; and every reuse of the
//     memory comes with a code note, which forgets the module.
//
// A module found by a rescan for which no note comes (published in the
// moment between the first rescan and the kernel's attachment, or a note
// lost) is taken as born after unbornFor.

const (
	retiredFor = 2 * time.Second
	unbornFor  = time.Second
)

// retiredImage is an image a rescan no longer found, kept for the samples
// still waiting to be named.
type retiredImage struct {
	im    *image
	since time.Time
}

// FollowNotes switches s to naming samples in the order of code notes
// (see above). Call it before the first Refresh after which notes come.
func (s *Symbolizer) FollowNotes() { s.notes.Store(true) }

// Born applies a code note of [lo, hi): modules located there are in
// use from now on, and the next Refresh looks at that memory afresh even
// if what was there before failed to parse (often a module freed before
// its parse: the new one may be at the same address).
func (s *Symbolizer) Born(lo, hi uint64) {
	s.refreshMu.Lock()
	for k := range s.failed {
		if k[0] < hi && lo < k[1] {
			delete(s.failed, k)
		}
	}
	for m := range s.noImage {
		if m.Start < hi && lo < m.End {
			delete(s.noImage, m)
		}
	}
	s.refreshMu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, im := range s.overlapping(lo, hi) {
		if !im.born.Swap(true) {
			s.gen.Add(1) // its PCs resolve now
		}
	}
}

// usable reports whether a module known to the last Refresh may name a
// sample now, in notes mode.
func (s *Symbolizer) usable(im *image) bool {
	if im.born.Load() {
		return true
	}
	if time.Since(im.found) > unbornFor {
		if !im.born.Swap(true) {
			s.gen.Add(1)
		}
		return true
	}
	return false
}

// retire keeps the images of old that images no longer holds, in notes
// mode, and drops the retired ones kept too long. s.mu is held for
// writing.
func (s *Symbolizer) retire(old, images []*image) {
	now := time.Now()
	kept := map[*image]bool{}
	for _, im := range images {
		kept[im] = true
	}
	var out []retiredImage
	for _, r := range s.retired {
		if now.Sub(r.since) < retiredFor {
			out = append(out, r)
		}
	}
	for _, im := range old {
		if !kept[im] && im.state.Load() != stateReplaced && im.state.Load() != stateFailed {
			out = append(out, retiredImage{im: im, since: now})
		}
	}
	s.retired = out
}

// lookupRetired names pc from a retired image, in notes mode. s.mu is
// held.
func (s *Symbolizer) lookupRetired(pc uint64) (*image, bool) {
	for _, r := range s.retired {
		if pc >= r.im.textStart && pc < r.im.textEnd && r.im.state.Load() == stateParsed {
			return r.im, true
		}
	}
	return nil, false
}

// forgetRetired drops the retired images whose text overlaps [lo, hi).
// s.mu is held for writing.
func (s *Symbolizer) forgetRetired(lo, hi uint64) {
	out := s.retired[:0]
	for _, r := range s.retired {
		if r.im.textStart < hi && lo < r.im.textEnd {
			continue
		}
		out = append(out, r)
	}
	s.retired = out
}

// lookupNotes is Lookup in notes mode.
func (s *Symbolizer) lookupNotes(pc uint64) (Func, *Module, bool) {
	s.mu.RLock()
	var im *image
	i := sort.Search(len(s.lines), func(i int) bool { return s.lines[i][1] > pc })
	if i < len(s.lines) && s.lines[i][0] <= pc {
		if c := s.images[i]; pc >= c.textStart && pc < c.textEnd && s.usable(c) && c.state.Load() != stateReplaced {
			im = c
		}
	}
	if im == nil {
		im, _ = s.lookupRetired(pc)
	}
	if im == nil {
		f, ok := lookupFunc(s.perf, pc)
		s.mu.RUnlock()
		return f, nil, ok
	}
	epoch := s.epoch.Load()
	s.mu.RUnlock()
	m := im.module(s.mem, epoch)
	if m == nil {
		return Func{}, nil, false
	}
	f, ok := m.Lookup(pc)
	if ok {
		m = m.forFunc(f)
	}
	return f, m, ok
}
