package record

import (
	"log/slog"

	"github.com/wasmtrace/wasmtrace/loader"
)

// Code notes (loader.EventCode, loader.EventUnmap) arrive in the ring
// buffer in order with the samples: a module's code note before any
// sample taken in it, a munmap's note after every sample taken in the code
// it frees. Each note is applied at its place in that order, and the
// symbolizer follows them (symbolize.Symbolizer.FollowNotes), so that a
// sample is named with the module that was in memory when it was taken:
//
//   - an unmap note makes the symbolizer forget the modules in that memory;
//     so does a code note, for what was known where the new code is (code
//     is published once);
//   - a code note makes the symbolizer locate and parse the new module
//     before the next sample of that process is named, and gives the
//     kernel ranges that cover it. The module is read from the process's
//     memory, which may hold a later module by then (freed and compiled
//     again at the same address, with the same headers): after the read,
//     loader.Tracer.CodeMapped says whether the noted code was still
//     mapped, and if not the module read is dropped, its samples left
//     unresolved rather than named with another module's functions;
//   - a module a rescan finds before its note is not used until the note.
//
// Notes come in bursts (a host compiling many modules at start-up): the
// code notes of a burst are applied together, before the next sample.
//
// Not proven: a variant that applied notes sooner (not landed; issue 12
// notes) once named 2 samples of e2e/churn_test.go with the module
// compiled after theirs at the same address, so some ordering this
// reasoning misses may exist; this code has not shown it (about ten runs
// and CI).
//
// A note read last waits for the next batch of samples (they wake the
// reader only in batches, record.go), up to the refresh period: a module
// freed meanwhile cannot be read, and its samples stay unresolved (Gone).
// That is most of what churn loses (93-97% named on a quiet machine).

// CodeNotes is what a process's code notes left to do; the zero value is
// ready.
type CodeNotes struct {
	// Mapped is loader.Tracer.CodeMapped; nil takes every module read
	// as the one noted.
	Mapped  func(note loader.Sample) (bool, error)
	pending []loader.Sample // code notes since the last locate
	lastNs  uint64          // time of the latest code note read
	// coveredNs is the time of the latest code note that the kernel's
	// current ranges take into account.
	coveredNs uint64
	// Gone counts code notes whose module was freed before it was read.
	Gone int
}

// Note applies one code note of t.
func (c *CodeNotes) Note(t *Target, s loader.Sample) {
	lo, hi := s.Args[0], s.Args[0]+s.Args[1]
	switch s.Event {
	case loader.EventCode:
		t.Syms.Forget(lo, hi)
		s.PCs, s.ActStart = nil, nil // a note has none; s's may be reused (loader.Tracer.ReadInto)
		c.pending = append(c.pending, s)
		c.lastNs = s.TimeNs
	case loader.EventUnmap:
		t.Syms.Forget(lo, hi)
	}
}

// Locate rescans t's modules and parses those the pending notes name, if
// any. It returns whether there were, and the time the kernel's ranges
// should be said to cover once rewritten from t.Syms.
func (c *CodeNotes) Locate(t *Target, log *slog.Logger) (located bool, coveredNs uint64) {
	if len(c.pending) == 0 {
		return false, c.coveredNs
	}
	if _, err := t.Syms.Refresh(); err != nil {
		log.Debug("rescan modules after a code note", "pid", t.PID, "err", err)
	}
	for _, n := range c.pending {
		lo, hi := n.Args[0], n.Args[0]+n.Args[1]
		t.Syms.Preload(lo, hi)
		mapped := true
		if c.Mapped != nil {
			var err error
			if mapped, err = c.Mapped(n); err != nil {
				log.Debug("check noted code", "pid", t.PID, "err", err)
				mapped = false
			}
		}
		if !mapped {
			t.Syms.Forget(lo, hi)
			c.Gone++
			continue
		}
		t.Syms.Born(lo, hi)
	}
	c.pending = c.pending[:0]
	return true, c.lastNs
}

// Rescan is t.Syms.Refresh, with the pending notes' modules parsed; it
// returns what CoveredNs the ranges rewritten after it take into account:
// every note read so far.
func (c *CodeNotes) Rescan(t *Target, log *slog.Logger) (coveredNs uint64, err error) {
	if located, _ := c.Locate(t, log); !located {
		_, err = t.Syms.Refresh()
	}
	return c.lastNs, err
}
