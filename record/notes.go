package record

import (
	"log/slog"

	"github.com/wasmtrace/wasmtrace/loader"
)

// Code notes (loader.EventCode, loader.EventUnmap) arrive in the ring
// buffer in order with the samples: a module's code note before any
// sample taken in it, a munmap's note after every sample taken in the code
// it frees. Each note is applied at its place in that order:
//
//   - an unmap note makes the symbolizer forget the modules in that memory
//     at once, and a code note whatever it knew where the new code is
//     (code is published once);
//   - a code note makes the symbolizer locate and parse the new module
//     before the next sample of that process is named (while its code is
//     still there: it may be freed again before the next rescan), and
//     gives the kernel ranges that cover it.
//
// Known limit: a rescan reads the process as it is now, ahead of the
// samples still unread, so samples of a module freed meanwhile may be left
// unresolved; and two modules of identical headers at the same address
// cannot be told apart by the symbolizer's fingerprint (see the closing
// notes of issue 12).
//
// Notes come in bursts (a host compiling many modules at start-up): the
// code notes of a burst are applied together, before the next sample.

// CodeNotes is what a process's code notes left to do; the zero value is
// ready.
type CodeNotes struct {
	pending [][2]uint64 // each code range noted since the last locate
	lastNs  uint64      // time of the latest code note read
	// coveredNs is the time of the latest code note that the kernel's
	// current ranges take into account.
	coveredNs uint64
}

// Note applies one code note of t.
func (c *CodeNotes) Note(t *Target, s loader.Sample) {
	switch s.Event {
	case loader.EventCode:
		// Code is published once: whatever module was known there
		// before is not the code of the samples that follow.
		lo, hi := s.Args[0], s.Args[0]+s.Args[1]
		t.Syms.Forget(lo, hi)
		c.pending = append(c.pending, [2]uint64{lo, hi})
		c.lastNs = s.TimeNs
	case loader.EventUnmap:
		t.Syms.Forget(s.Args[0], s.Args[0]+s.Args[1])
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
	for _, r := range c.pending {
		t.Syms.Preload(r[0], r[1])
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
