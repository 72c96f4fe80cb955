// Package record runs one recording: it establishes the target's Wasmtime
// layout, finds its compiled modules, loads the kernel walker, keeps both
// up to date while the target runs, and turns each sample into a
// symbolized stack in a profile.
package record

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/wasmtrace/wasmtrace/arch"
	"github.com/wasmtrace/wasmtrace/layout"
	"github.com/wasmtrace/wasmtrace/loader"
	"github.com/wasmtrace/wasmtrace/proc"
	"github.com/wasmtrace/wasmtrace/profile"
	"github.com/wasmtrace/wasmtrace/symbolize"
)

// Options of a recording.
type Options struct {
	PID      int
	Hz       int
	Duration time.Duration // 0: until the context is done
	Threads  bool          // root each stack at its thread
	Log      *slog.Logger
	// Refresh is how often the target's modules are rescanned.
	Refresh time.Duration
}

// ErrTargetExited is returned, with the profile recorded so far, when the
// target exits during the recording.
var ErrTargetExited = errors.New("target process exited")

// Target is a process prepared for tracing.
type Target struct {
	PID    int
	Comm   string
	Layout *layout.Layout
	Arch   arch.Arch
	Syms   *symbolize.Symbolizer
}

// Prepare checks that pid runs a Wasmtime wasmtrace can walk, and finds
// its compiled modules.
func Prepare(pid int, log *slog.Logger) (*Target, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("invalid pid %d", pid)
	}
	if !proc.Exists(pid) {
		return nil, fmt.Errorf("no process with pid %d", pid)
	}
	syms := symbolize.New(pid, proc.ProcessMemory{PID: pid})
	if _, err := syms.Refresh(); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("read memory of pid %d: %w (run as root)", pid, err)
		}
		return nil, fmt.Errorf("find compiled Wasm modules of pid %d: %w", pid, err)
	}
	// A module's .wasmtime.engine section names the version when the
	// binary does not.
	version := ""
	for _, m := range syms.Modules() {
		if m.Version != "" {
			version = m.Version
			break
		}
	}
	l, err := layout.ForProcess(pid, version)
	if err != nil {
		return nil, err
	}
	a, err := arch.ByName(goarchOfProcess())
	if err != nil {
		return nil, err
	}
	t := &Target{PID: pid, Comm: proc.ThreadName(pid, pid), Layout: l, Arch: a, Syms: syms}
	log.Debug("target prepared", "pid", pid, "wasmtime", l.Version, "modules", len(syms.Modules()))
	return t, nil
}

// Run records t until opt.Duration passes, ctx is done, or the target
// exits. It returns the profile gathered in every case but a failure to
// start.
func Run(ctx context.Context, t *Target, opt Options) (*profile.Profile, *Stats, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Refresh == 0 {
		opt.Refresh = 200 * time.Millisecond
	}
	tr, err := loader.Open(opt.Hz)
	if err != nil {
		return nil, nil, err
	}
	defer tr.Close()

	ranges := clampRanges(t.Syms.TextRanges(), opt.Log)
	if err := tr.SetProcess(t.PID, loader.ProcessConfig{Layout: t.Layout, Arch: t.Arch, Ranges: ranges}); err != nil {
		return nil, nil, err
	}

	p := profile.New()
	p.PID, p.Comm, p.Hz = t.PID, t.Comm, opt.Hz
	st := &Stats{Stops: map[string]int{}}
	b := stackBuilder{syms: t.Syms, threads: opt.Threads, stats: st}

	start := time.Now()
	var end time.Time
	if opt.Duration > 0 {
		end = start.Add(opt.Duration)
	}
	nextRefresh := start.Add(opt.Refresh)
	var runErr error
loop:
	for {
		now := time.Now()
		if !end.IsZero() && !now.Before(end) {
			break
		}
		if ctx.Err() != nil {
			break
		}
		if !now.Before(nextRefresh) {
			nextRefresh = now.Add(opt.Refresh)
			if !proc.Exists(t.PID) {
				runErr = fmt.Errorf("pid %d: %w after %.1fs", t.PID, ErrTargetExited, time.Since(start).Seconds())
				break loop
			}
			if _, err := t.Syms.Refresh(); err != nil {
				opt.Log.Debug("rescan modules", "err", err)
			}
			if nr := clampRanges(t.Syms.TextRanges(), opt.Log); !slices.Equal(nr, ranges) {
				ranges = nr
				if err := tr.SetProcess(t.PID, loader.ProcessConfig{Layout: t.Layout, Arch: t.Arch, Ranges: ranges}); err != nil {
					opt.Log.Warn("update compiled-code ranges", "err", err)
				}
				opt.Log.Debug("compiled-code ranges changed", "ranges", len(ranges))
			}
		}
		deadline := nextRefresh
		if !end.IsZero() && end.Before(deadline) {
			deadline = end
		}
		s, err := tr.Read(deadline)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case err != nil:
			runErr = fmt.Errorf("read samples: %w", err)
			break loop
		}
		p.Add(b.stack(s))
	}
	// Stop walking before draining, so the drain ends.
	_ = tr.RemoveProcess(t.PID)
	for {
		s, err := tr.Read(time.Now().Add(50 * time.Millisecond))
		if err != nil {
			break
		}
		p.Add(b.stack(s))
	}
	p.Duration = time.Since(start)
	if c, err := tr.Counters(); err == nil {
		p.Lost = c.Lost
		st.Lost = c.Lost
	}
	return p, st, runErr
}

// Stats describe the quality of a recording.
type Stats struct {
	Samples int
	// Stops counts samples whose walk failed, by reason.
	Stops map[string]int
	Lost  uint64
}

func clampRanges(r [][2]uint64, log *slog.Logger) [][2]uint64 {
	if len(r) > loader.MaxRanges {
		log.Warn("more compiled modules than the kernel walker tracks; samples in the others count as host code",
			"modules", len(r), "tracked", loader.MaxRanges)
		return r[:loader.MaxRanges]
	}
	return r
}
