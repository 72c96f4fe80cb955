package record

import (
	"errors"
	"log/slog"
	"os"
	"strconv"
	"syscall"

	"github.com/wasmtrace/wasmtrace/layout"
)

// discovery finds the processes that run Wasmtime. It looks at each
// executable once (by device and inode), so rescanning /proc every refresh
// costs a stat per process.
type discovery struct {
	log     *slog.Logger
	self    int
	verdict map[exeID]bool     // does this executable link Wasmtime?
	failed  map[int]bool       // Wasmtime processes that could not be prepared
	only    func(pid int) bool // nil: every process (Options.Only)
}

type exeID struct{ dev, ino uint64 }

func newDiscovery(log *slog.Logger, only func(pid int) bool) *discovery {
	return &discovery{log: log, self: os.Getpid(), verdict: map[exeID]bool{}, failed: map[int]bool{}, only: only}
}

// scan returns the Wasmtime processes that are not yet traced.
func (d *discovery) scan(traced func(pid int) bool) []*Target {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		d.log.Warn("list processes", "err", err)
		return nil
	}
	var out []*Target
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == d.self || traced(pid) || d.failed[pid] || (d.only != nil && !d.only(pid)) {
			continue
		}
		var st syscall.Stat_t
		// /proc/PID/exe resolves in the process's own mount namespace,
		// so containers' executables are found too.
		if err := syscall.Stat("/proc/"+e.Name()+"/exe", &st); err != nil {
			continue // kernel thread, or gone
		}
		id := exeID{uint64(st.Dev), st.Ino}
		if known, ok := d.verdict[id]; ok && !known {
			continue
		}
		t, err := Prepare(pid, d.log)
		if err != nil {
			// Only "no Wasmtime in this executable" is a property of
			// the executable; other failures are this process's.
			if errors.Is(err, layout.ErrNotWasmtime) {
				d.verdict[id] = false
			} else {
				d.failed[pid] = true
				d.log.Warn("process runs Wasmtime but cannot be traced", "pid", pid, "err", err)
			}
			continue
		}
		d.verdict[id] = true
		out = append(out, t)
	}
	return out
}
