package symbolize

import (
	"errors"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/wasmtrace/wasmtrace/proc"
)

// Symbolizer names JIT code of one process and follows its modules as
// they are compiled and freed. Lookup, TextRanges and Modules may run
// while Refresh does.
type Symbolizer struct {
	pid      int
	mem      proc.Memory
	readMaps func(pid int) ([]proc.Mapping, error) // proc.ReadMaps; tests replace it

	mu      sync.RWMutex
	modules []*Module // sorted by TextStart, ranges disjoint
	perf    []Func    // from the perf map, sorted by Start

	refreshMu sync.Mutex             // one Refresh at a time; guards below
	failed    map[[2]uint64]struct{} // text mappings already reported
	perfStamp perfStamp
}

type perfStamp struct {
	size int64
	mod  time.Time
}

// New returns a Symbolizer for pid reading memory through mem (usually
// proc.ProcessMemory{PID: pid}). It knows nothing until Refresh.
func New(pid int, mem proc.Memory) *Symbolizer {
	return &Symbolizer{pid: pid, mem: mem, readMaps: proc.ReadMaps}
}

// Refresh rereads the process's mappings. Images already known are kept
// when their text mapping and headers are unchanged; new ones are parsed;
// modules whose memory went away are dropped. It returns how many modules
// were added. A failure to read the mappings is returned alone; otherwise
// the error joins an *ImageError for each executable mapping seen failing
// for the first time, and a perf-map problem if any, and the refresh is
// still applied.
func (s *Symbolizer) Refresh() (added int, err error) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()

	maps, err := s.readMaps(s.pid)
	if err != nil {
		return 0, err
	}
	maps = sortedMaps(maps)
	s.mu.RLock()
	old := s.modules
	s.mu.RUnlock()

	var mods []*Module
	var errs []error
	failed := make(map[[2]uint64]struct{})
	for i, m := range maps {
		if !textCandidate(s.mem, maps, i) {
			continue
		}
		if mod := s.stillThere(old, m); mod != nil {
			mods = append(mods, mod)
			continue
		}
		key := [2]uint64{m.Start, m.End}
		if _, seen := s.failed[key]; seen {
			failed[key] = struct{}{}
			continue
		}
		mod, err := locate(s.mem, maps, i)
		if err != nil {
			failed[key] = struct{}{}
			errs = append(errs, err)
			continue
		}
		mods = append(mods, mod)
		added++
	}
	s.failed = failed

	perf, perfChanged, perfErr := s.refreshPerfMap()
	if perfErr != nil {
		errs = append(errs, perfErr)
	}

	s.mu.Lock()
	s.modules = mods
	if perfChanged {
		s.perf = perf
	}
	s.mu.Unlock()
	return added, errors.Join(errs...)
}

// stillThere returns the known module whose text lies in text mapping m,
// if its ELF and section headers still read the same: a module freed and
// another compiled at the same address would differ there.
func (s *Symbolizer) stillThere(old []*Module, m proc.Mapping) *Module {
	i := sort.Search(len(old), func(i int) bool { return old[i].TextStart >= m.Start })
	if i == len(old) || old[i].TextEnd > m.End {
		return nil
	}
	mod := old[i]
	h, err := readHeader(proc.ReaderAt{Mem: s.mem, Base: mod.Base, Limit: int64(mod.size)}, int64(mod.size))
	if err != nil || h.fingerprint != mod.fp {
		return nil
	}
	return mod
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
func (s *Symbolizer) Lookup(pc uint64) (Func, *Module, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i := sort.Search(len(s.modules), func(i int) bool { return s.modules[i].TextEnd > pc })
	if i < len(s.modules) && s.modules[i].TextStart <= pc {
		m := s.modules[i]
		f, ok := m.Lookup(pc)
		if ok {
			m = m.forFunc(f)
		}
		return f, m, ok
	}
	f, ok := lookupFunc(s.perf, pc)
	return f, nil, ok
}

// TextRanges returns the [start, end) ranges of every known module's
// .text, sorted: the addresses at which a sampled PC is Wasm code.
func (s *Symbolizer) TextRanges() [][2]uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([][2]uint64, len(s.modules))
	for i, m := range s.modules {
		out[i] = [2]uint64{m.TextStart, m.TextEnd}
	}
	return out
}

// Modules returns the known modules sorted by TextStart.
func (s *Symbolizer) Modules() []*Module {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]*Module(nil), s.modules...)
}
