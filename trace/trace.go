// Package trace runs `wasmtrace trace`: instead of sampling, the kernel
// walker runs on chosen events of a Wasmtime process (a trap, a system
// call, a thread blocking, a uprobe), and each event comes back with the
// symbolized Wasm stack of the thread it happened on.
package trace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wasmtrace/wasmtrace/loader"
	"github.com/wasmtrace/wasmtrace/proc"
	"github.com/wasmtrace/wasmtrace/profile"
	"github.com/wasmtrace/wasmtrace/record"
	"github.com/wasmtrace/wasmtrace/symbolize"
)

// Options of a trace.
type Options struct {
	Events []EventSpec
	// MinBlock is the shortest off-CPU time reported (offcpu).
	MinBlock time.Duration
	// MaxRate is the most events the kernel sends per second (0: no
	// limit); the others are counted in Stats.Dropped.
	MaxRate int
	// Function, if set, keeps only events whose stack has a Wasm frame
	// whose name it matches.
	Function *regexp.Regexp
	Duration time.Duration // 0: until ctx is done
	Refresh  time.Duration // how often the modules are rescanned (default 200ms)
	Log      *slog.Logger
	// OnEvent is called for each event kept, in order of arrival.
	OnEvent func(Event)
	// Attached, if set, is called once the events are attached.
	Attached func()
}

// Event is one traced event.
type Event struct {
	Time  time.Time
	Kind  loader.Event
	Name  string // "trap", "syscall:write", "offcpu", "uprobe:BIN:SYM"
	Args  string // the arguments, readable; "" when none
	Stack profile.Sample
	// Weight is what --summary adds up: 1, or the microseconds off CPU.
	Weight int
	// PC is the thread's user PC at the event (the faulting PC of a trap).
	PC uint64
}

// Stats of a trace.
type Stats struct {
	Events   int // events received from the kernel
	Kept     int // events passed to OnEvent (after --function)
	Dropped  uint64
	Lost     uint64
	Unwind   *record.Stats // walks that failed, by reason
	Duration time.Duration
}

// Run traces t until opt.Duration passes, ctx is done or the target
// exits (record.ErrTargetExited). The profile aggregates the kept events'
// stacks by weight.
func Run(ctx context.Context, t *record.Target, opt Options) (*profile.Profile, *Stats, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Refresh == 0 {
		opt.Refresh = 200 * time.Millisecond
	}
	to := loader.TraceOptions{MinBlock: opt.MinBlock, MaxRate: opt.MaxRate, PID: t.PID}
	names := map[uint64]string{} // uprobe cookie -> event name
	for _, e := range opt.Events {
		switch e.Kind {
		case loader.EventTrap:
			to.Trap = true
		case loader.EventOffCPU:
			to.OffCPU = true
		case loader.EventSyscall:
			to.Syscalls = append(to.Syscalls, e.Syscall)
		case loader.EventUprobe:
			names[uint64(len(to.Uprobes))] = e.String()
			to.Uprobes = append(to.Uprobes, e.Uprobe)
		}
	}
	tr, err := loader.OpenTrace(to)
	if err != nil {
		return nil, nil, err
	}
	defer tr.Close()
	var notes record.CodeNotes
	if err := tr.CodeEvents(); err == nil {
		t.Syms.FollowNotes() // see record.CodeNotes
		notes.Mapped = tr.CodeMapped
	} else {
		opt.Log.Debug("no code notes: modules are found by rescans alone", "err", err)
	}
	ranges := clamp(t.Syms.TextRanges())
	cfg := loader.ProcessConfig{Layout: t.Layout, Arch: t.Arch, Stacks: t.Stacks, Ranges: ranges}
	if err := tr.SetProcess(t.PID, cfg); err != nil {
		return nil, nil, err
	}
	if opt.Attached != nil {
		opt.Attached()
	}

	p := profile.New()
	p.PID, p.Comm = t.PID, t.Comm
	st := &Stats{Unwind: record.NewStats()}
	clock := monotonicToWall()
	traps := trapKinds{syms: t.Syms, mem: proc.ProcessMemory{PID: t.PID}, log: opt.Log, tables: map[*symbolize.Module]*symbolize.TrapTable{}}
	setRanges := func(covered uint64) {
		nr := clamp(t.Syms.TextRanges())
		if slices.Equal(nr, ranges) && covered == cfg.CoveredNs {
			return
		}
		ranges, cfg.Ranges, cfg.CoveredNs = nr, nr, covered
		if err := tr.SetProcess(t.PID, cfg); err != nil {
			opt.Log.Warn("update compiled-code ranges", "pid", t.PID, "err", err)
		}
	}
	handle := func(s loader.Sample) {
		if s.PID != uint32(t.PID) {
			return
		}
		if s.Event.IsNote() {
			notes.Note(t, s)
			return
		}
		if ok, covered := notes.Locate(t, opt.Log); ok {
			setRanges(covered)
		}
		st.Events++
		ev := Event{Time: clock(s.TimeNs), Kind: s.Event, Weight: 1, PC: s.UserPC}
		ev.Name, ev.Args = describe(s, names)
		if s.Event == loader.EventTrap {
			if kind := traps.kind(s.UserPC); kind != "" {
				ev.Args = "kind=" + strconv.Quote(kind) + " " + ev.Args
			}
		}
		if s.Event == loader.EventOffCPU {
			ev.Weight = int(s.Args[0] / 1000)
		}
		ev.Stack = t.Stack(s, st.Unwind)
		if opt.Function != nil && !hasFunction(ev.Stack, opt.Function) {
			return
		}
		st.Kept++
		p.AddN(ev.Stack, ev.Weight)
		if opt.OnEvent != nil {
			opt.OnEvent(ev)
		}
	}

	start := time.Now()
	var end time.Time
	if opt.Duration > 0 {
		end = start.Add(opt.Duration)
	}
	nextRefresh := start.Add(opt.Refresh)
	var runErr error
	for {
		now := time.Now()
		if (!end.IsZero() && !now.Before(end)) || ctx.Err() != nil {
			break
		}
		if !now.Before(nextRefresh) {
			nextRefresh = now.Add(opt.Refresh)
			if !proc.Exists(t.PID) {
				runErr = fmt.Errorf("pid %d: %w after %.1fs", t.PID, record.ErrTargetExited, time.Since(start).Seconds())
				break
			}
			covered, err := notes.Rescan(t, opt.Log)
			if err != nil {
				opt.Log.Debug("rescan modules", "pid", t.PID, "err", err)
			}
			setRanges(covered)
		}
		deadline := nextRefresh
		if !end.IsZero() && end.Before(deadline) {
			deadline = end
		}
		// Wake up for ctx too, at most 100ms late.
		if d := now.Add(100 * time.Millisecond); d.Before(deadline) {
			deadline = d
		}
		s, err := tr.Read(deadline)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
		case err != nil:
			runErr = fmt.Errorf("read events: %w", err)
		default:
			handle(s)
		}
		if runErr != nil {
			break
		}
	}
	_ = tr.RemoveProcess(t.PID)
	for {
		s, err := tr.Read(time.Now().Add(50 * time.Millisecond))
		if err != nil {
			break
		}
		handle(s)
	}
	st.Duration = time.Since(start)
	p.Duration = st.Duration
	if c, err := tr.Counters(); err == nil {
		st.Dropped, st.Lost = c.Dropped, c.Lost
		p.Lost = c.Lost
	}
	return p, st, runErr
}

// describe names an event and formats its arguments.
func describe(s loader.Sample, uprobes map[uint64]string) (name, args string) {
	switch s.Event {
	case loader.EventTrap:
		sig := signalNames[s.Args[0]]
		if sig == "" {
			sig = fmt.Sprintf("signal %d", s.Args[0])
		}
		code := siCodes[s.Args[0]][int64(s.Args[1])]
		if code == "" {
			code = fmt.Sprintf("code %d", int64(s.Args[1]))
		}
		return "trap", fmt.Sprintf("%s %s pc=%#x addr=%#x", sig, code, s.UserPC, s.Args[2])
	case loader.EventSyscall:
		return "syscall:" + syscallName(int(s.Args[0])), fmt.Sprintf("arg0=%d arg2=%d", s.Args[1], s.Args[2])
	case loader.EventOffCPU:
		return "offcpu", fmt.Sprintf("blocked=%s", time.Duration(s.Args[0]).Round(time.Microsecond))
	case loader.EventUprobe:
		if n, ok := uprobes[s.Args[0]]; ok {
			return n, ""
		}
		return "uprobe", ""
	}
	return s.Event.String(), ""
}

func hasFunction(s profile.Sample, re *regexp.Regexp) bool {
	for _, f := range s.Frames {
		if f.Kind == profile.KindWasm && re.MatchString(f.Name) {
			return true
		}
	}
	return false
}

// Folded is the event's stack, root first, frames joined by ";".
func (e Event) Folded() string {
	names := make([]string, len(e.Stack.Frames))
	for i, f := range e.Stack.Frames {
		names[i] = profile.DisplayName(f.Name)
	}
	return strings.Join(names, ";")
}

// monotonicToWall converts bpf_ktime_get_ns (CLOCK_MONOTONIC) to wall time.
func monotonicToWall() func(uint64) time.Time {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return func(uint64) time.Time { return time.Now() }
	}
	base := now.Add(-time.Duration(ts.Nano()))
	return func(ns uint64) time.Time { return base.Add(time.Duration(ns)) }
}

func clamp(r [][2]uint64) [][2]uint64 {
	if len(r) > loader.MaxRanges {
		return r[:loader.MaxRanges]
	}
	return r
}

// trapKinds names traps from the trap tables of the modules, read once
// per module.
type trapKinds struct {
	syms   *symbolize.Symbolizer
	mem    proc.Memory
	log    *slog.Logger
	tables map[*symbolize.Module]*symbolize.TrapTable
}

// kind is Wasmtime's reason for a trap at pc, "" when unknown.
func (k *trapKinds) kind(pc uint64) string {
	_, m, ok := k.syms.Lookup(pc)
	if !ok || m == nil {
		return ""
	}
	t, seen := k.tables[m]
	if !seen {
		var err error
		if t, err = symbolize.ReadTraps(k.mem, m); err != nil {
			k.log.Debug("read trap table", "module", m.Name, "err", err)
		}
		k.tables[m] = t
	}
	code, ok := t.Lookup(pc)
	if !ok {
		return ""
	}
	return code.String()
}
