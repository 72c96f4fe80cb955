package record

import "github.com/wasmtrace/wasmtrace/profile"

// rebuild carries the profile's settings over to the new window's profile
// and points every process's stack builder at it: a builder interns frames
// and stacks in one profile, and its cached ids mean nothing in another.
func (s *session) rebuild(old *profile.Profile) {
	s.p.MaxStacks = old.MaxStacks
	for _, k := range s.targets {
		k.b = newStackBuilder(k.t.Syms, s.st, s.p)
	}
}
