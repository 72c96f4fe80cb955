package record

import (
	"time"

	"github.com/wasmtrace/wasmtrace/profile"
)

// tick hands the profile so far to Options.Tick. With Options.Windows the
// profile is the window since the previous tick and Tick keeps it: the
// session starts a new one, so a long recording (wasmtrace agent) holds
// one window of samples, not everything since it started.
func (s *session) tick(now time.Time) {
	s.p.Duration = now.Sub(s.since)
	s.counters()
	s.opt.Tick(s.p, s.st)
	if !s.opt.Windows {
		return
	}
	old := s.p
	s.p = profile.New()
	s.p.PID, s.p.Comm, s.p.Hz = old.PID, old.Comm, old.Hz
	s.since = now
	s.rebuild(old)
}
