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
	"github.com/wasmtrace/wasmtrace/verify"
)

// Options of a recording.
type Options struct {
	PID      int
	Hz       int
	Duration time.Duration // 0: until the context is done
	Log      *slog.Logger
	// Refresh is how often the target's modules are rescanned.
	Refresh time.Duration
	// All records every process that runs Wasmtime (RunAll sets it).
	All bool
	// Tick, if set, is called every TickEvery (default 1 s) with the
	// profile so far, from the recording goroutine: it may read p and
	// st, but not keep them.
	Tick      func(p *profile.Profile, st *Stats)
	TickEvery time.Duration
	// Verify is the fraction of samples (0 to 1) whose kernel walk is
	// checked against the Go walker (Stats.Verify); 0 checks none.
	Verify float64
	// Opening, if set, is the kernel walker opened by OpenAsync (at Hz);
	// otherwise Run opens it.
	Opening *Opening
	// Windows makes each Tick hand over a window (window.go): Tick then
	// owns p, which holds only the samples since the previous Tick, and
	// the recording goes on into a new profile.
	Windows bool
	// OnTrace, if set, is called from the recording goroutine with each
	// process as it starts being traced.
	OnTrace func(t *Target)
	// Only, if set, limits All to the processes it accepts (it is asked
	// before a process is examined, at each scan of /proc).
	Only func(pid int) bool
	// MaxStacks, when positive, bounds the distinct stacks the profile
	// keeps (profile.Profile.MaxStacks): the rarest are folded into their
	// callers.
	MaxStacks int
}

// Opening is the kernel walker being loaded and attached in the background.
type Opening struct {
	done chan struct{}
	tr   *loader.Tracer
	err  error
}

// OpenAsync starts loading and attaching the kernel walker at hz samples a
// second, which takes about as long as Prepare, so that the two overlap:
// the first sample comes sooner. Pass it to Run in Options.Opening, or
// Close it.
func OpenAsync(hz int) *Opening {
	o := &Opening{done: make(chan struct{})}
	go func() {
		defer close(o.done)
		o.tr, o.err = loader.Open(hz)
	}()
	return o
}

// wait returns the opened walker, once.
func (o *Opening) wait() (*loader.Tracer, error) {
	<-o.done
	tr := o.tr
	o.tr = nil
	return tr, o.err
}

// Close closes the walker unless Run took it. It does not wait for a
// walker still loading (a failed Prepare returns at once); that one is
// closed when it is ready.
func (o *Opening) Close() {
	go func() {
		if tr, _ := o.wait(); tr != nil {
			tr.Close()
		}
	}()
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
	// Stacks is where the target's threads keep their own stacks (as
	// opposed to fibers'), and StacksHow how that was found.
	Stacks    proc.Stacks
	StacksHow string
}

// config is the kernel walker's configuration for t with compiled-code
// ranges that take the code notes up to coveredNs into account.
func (t *Target) config(ranges [][2]uint64, coveredNs uint64, verify float64) loader.ProcessConfig {
	return loader.ProcessConfig{Layout: t.Layout, Arch: t.Arch, Stacks: t.Stacks, Ranges: ranges, CoveredNs: coveredNs, Verify: verify}
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
	// The binary first: it rules out processes without Wasmtime before
	// any of their memory is read.
	l, err := layout.ForProcess(pid, "")
	if errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("inspect pid %d: %w (run as root)", pid, err)
	}
	if err != nil && !errors.Is(err, layout.ErrUnknownBuild) {
		return nil, err
	}
	syms := symbolize.New(pid, proc.ProcessMemory{PID: pid})
	// Refresh locates the modules and parses none (they are parsed as
	// samples land in them). A mapping it cannot explain (another JIT's
	// code, a damaged image) is skipped with a warning, not a refusal:
	// the samples in it count as host code.
	_, rerr := syms.Refresh()
	if rerr != nil {
		if errors.Is(rerr, os.ErrPermission) {
			return nil, fmt.Errorf("read memory of pid %d: %w (run as root)", pid, rerr)
		}
		if !onlySkipped(rerr) {
			return nil, fmt.Errorf("find compiled Wasm modules of pid %d: %w", pid, rerr)
		}
	}
	if l == nil {
		// A compiled module's .wasmtime.engine section names the
		// version when the binary does not.
		if v := syms.EngineVersion(); v != "" {
			l, err = layout.ForProcess(pid, v)
		}
		if l == nil {
			return nil, err
		}
	}
	if rerr != nil {
		for _, e := range splitErrors(rerr) {
			log.Warn("skipped executable mapping", "pid", pid, "err", e)
		}
	}
	a, err := arch.ByName(goarchOfProcess())
	if err != nil {
		return nil, err
	}
	t := &Target{PID: pid, Comm: proc.ThreadName(pid, pid), Layout: l, Arch: a, Syms: syms}
	t.Stacks, t.StacksHow = proc.StacksOf(pid)
	log.Debug("target prepared", "pid", pid, "wasmtime", l.Version, "modules", syms.Len())
	return t, nil
}

// onlySkipped reports an error of symbolize.Refresh made only of mappings
// it skipped (*symbolize.ImageError) and perf-map problems: Refresh then
// read the mappings and applied what it found. A failure to read the
// mappings is returned alone, and is no ImageError.
func onlySkipped(err error) bool {
	var ie *symbolize.ImageError
	if errors.As(err, &ie) {
		return true
	}
	// Joined perf-map problems alone: the mappings were read.
	_, joined := err.(interface{ Unwrap() []error })
	return joined
}

// splitErrors returns the errors joined in err (errors.Join), or err.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Run records t until opt.Duration passes, ctx is done, or the target
// exits. It returns the profile gathered in every case but a failure to
// start.
func Run(ctx context.Context, t *Target, opt Options) (*profile.Profile, *Stats, error) {
	s, err := newSession(opt)
	if err != nil {
		return nil, nil, err
	}
	defer s.close()
	if err := s.add(t); err != nil {
		return nil, nil, err
	}
	s.p.PID, s.p.Comm = t.PID, t.Comm
	return s.run(ctx)
}

// RunAll records every process that runs Wasmtime, including those that
// start (or start using Wasmtime) during the recording.
func RunAll(ctx context.Context, opt Options) (*profile.Profile, *Stats, error) {
	opt.All = true
	s, err := newSession(opt)
	if err != nil {
		return nil, nil, err
	}
	defer s.close()
	s.discover()
	return s.run(ctx)
}

// session is one recording of one or more processes.
type session struct {
	opt     Options
	tr      *loader.Tracer
	p       *profile.Profile
	st      *Stats
	targets map[uint32]*tracked
	disc    *discovery // nil unless recording every process
	since   time.Time  // when s.p's samples began
}

// tracked is a process being walked by the kernel.
type tracked struct {
	t      *Target
	ranges [][2]uint64
	b      stackBuilder
	notes  CodeNotes
	// rescanned is when its modules were last rescanned.
	rescanned time.Time
}

// notedRescan is how often a process whose modules code notes announce is
// rescanned all the same, for what a note may have missed (a note lost to
// a full ring buffer, a module published before the kernel attached).
const notedRescan = 2 * time.Second

func newSession(opt Options) (*session, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Refresh == 0 {
		opt.Refresh = 200 * time.Millisecond
	}
	if opt.TickEvery == 0 {
		opt.TickEvery = time.Second
	}
	var tr *loader.Tracer
	var err error
	if opt.Opening != nil {
		tr, err = opt.Opening.wait()
	} else {
		tr, err = loader.Open(opt.Hz)
	}
	if err != nil {
		return nil, err
	}
	s := &session{
		opt:     opt,
		tr:      tr,
		p:       profile.New(),
		st:      &Stats{Stops: map[string]int{}},
		targets: map[uint32]*tracked{},
	}
	if opt.Verify > 0 {
		s.st.Verify = verify.New()
	}
	s.p.Hz = opt.Hz
	s.p.MaxStacks = opt.MaxStacks
	if opt.All {
		s.disc = newDiscovery(opt.Log, opt.Only)
	}
	return s, nil
}

func (s *session) close() { s.tr.Close() }

// add starts walking t.
func (s *session) add(t *Target) error {
	codeNotes := s.tr.CodeEvents() == nil
	if codeNotes {
		t.Syms.FollowNotes() // notes.go
	} else {
		s.opt.Log.Debug("no code notes: modules are found by rescans alone", "pid", t.PID, "err", s.tr.CodeEvents())
	}
	k := &tracked{t: t, b: newStackBuilder(t.Syms, s.st, s.p)}
	if codeNotes {
		k.notes.Mapped = s.tr.CodeMapped
	}
	k.ranges = clampRanges(t.Syms.TextRanges(), s.opt.Log)
	if err := s.tr.SetProcess(t.PID, t.config(k.ranges, 0, s.opt.Verify)); err != nil {
		return err
	}
	s.targets[uint32(t.PID)] = k
	s.st.Processes++
	if s.opt.OnTrace != nil {
		s.opt.OnTrace(t)
	}
	s.opt.Log.Debug("tracing", "pid", t.PID, "comm", t.Comm, "wasmtime", t.Layout.Version)
	return nil
}

// refresh rescans each process's modules, forgets processes that exited
// and, with discovery on, looks for new ones. It returns an error when the
// one process a single-target recording follows has exited.
func (s *session) refresh(start time.Time) error {
	for pid, k := range s.targets {
		if !proc.Exists(int(pid)) {
			_ = s.tr.RemoveProcess(int(pid))
			delete(s.targets, pid)
			if s.disc == nil {
				return fmt.Errorf("pid %d: %w after %.1fs", pid, ErrTargetExited, time.Since(start).Seconds())
			}
			s.opt.Log.Debug("process exited", "pid", pid)
			continue
		}
		// With code notes, which announce every module, a rescan only
		// catches what they missed: rarely (notedRescan), not every
		// refresh. It was most of a recording's fixed cost.
		if k.notes.Mapped != nil && time.Since(k.rescanned) < notedRescan && k.t.Stacks.TCBBlock != 0 {
			continue
		}
		k.rescanned = time.Now()
		covered, err := k.notes.Rescan(k.t, s.opt.Log)
		if err != nil {
			s.opt.Log.Debug("rescan modules", "pid", pid, "err", err)
		}
		k.b.newEpoch() // cached names are checked against the modules again
		nr := clampRanges(k.t.Syms.TextRanges(), s.opt.Log)
		stacksChanged := false
		if k.t.Stacks.TCBBlock == 0 {
			// Found only once the process has a thread besides the
			// main one: until then its other threads' walks stop.
			k.t.Stacks, k.t.StacksHow = proc.StacksOf(int(pid))
			stacksChanged = k.t.Stacks.TCBBlock != 0
		}
		if slices.Equal(nr, k.ranges) && !stacksChanged && covered == k.notes.coveredNs {
			continue
		}
		s.setRanges(k, nr, covered)
	}
	if s.disc != nil {
		s.discover()
	}
	return nil
}

// discover adds the Wasmtime processes not seen before.
func (s *session) discover() {
	for _, t := range s.disc.scan(func(pid int) bool { return s.targets[uint32(pid)] != nil }) {
		if err := s.add(t); err != nil {
			s.opt.Log.Warn("cannot trace", "pid", t.PID, "err", err)
		}
	}
}

// setRanges gives the kernel k's ranges nr, which take the code notes up
// to coveredNs into account.
func (s *session) setRanges(k *tracked, nr [][2]uint64, coveredNs uint64) {
	k.ranges = nr
	k.notes.coveredNs = coveredNs
	if err := s.tr.SetProcess(k.t.PID, k.t.config(nr, coveredNs, s.opt.Verify)); err != nil {
		s.opt.Log.Warn("update compiled-code ranges", "pid", k.t.PID, "err", err)
	}
	s.opt.Log.Debug("compiled-code ranges changed", "pid", k.t.PID, "ranges", len(nr))
}

// handle symbolizes one sample into the profile, or applies a code note
// (notes.go).
func (s *session) handle(smp loader.Sample) {
	k := s.targets[smp.PID]
	if k == nil {
		return // a process that exited, sampled before it was removed
	}
	if smp.Event.IsNote() {
		k.notes.Note(k.t, smp)
		return
	}
	if ok, covered := k.notes.Locate(k.t, s.opt.Log); ok {
		k.b.newEpoch() // a rescan: cached names are checked again
		s.setRanges(k, clampRanges(k.t.Syms.TextRanges(), s.opt.Log), covered)
	}
	if s.st.Verify != nil {
		s.st.Verify.Check(smp, k.t.Layout, k.t.Arch, k.t.Stacks)
	}
	k.b.add(s.p, smp, k.t.Comm)
}

func (s *session) run(ctx context.Context) (*profile.Profile, *Stats, error) {
	start := time.Now()
	s.since = start
	var end time.Time
	if s.opt.Duration > 0 {
		end = start.Add(s.opt.Duration)
	}
	nextRefresh := start.Add(s.opt.Refresh)
	var smp loader.Sample
	nextTick := start.Add(s.opt.TickEvery)
	var runErr error
	for runErr == nil {
		now := time.Now()
		if (!end.IsZero() && !now.Before(end)) || ctx.Err() != nil {
			break
		}
		if !now.Before(nextRefresh) {
			nextRefresh = now.Add(s.opt.Refresh)
			if runErr = s.refresh(start); runErr != nil {
				break
			}
		}
		if s.opt.Tick != nil && !now.Before(nextTick) {
			nextTick = now.Add(s.opt.TickEvery)
			s.tick(now)
		}
		deadline := nextRefresh
		if s.opt.Tick != nil && nextTick.Before(deadline) {
			deadline = nextTick
		}
		if !end.IsZero() && end.Before(deadline) {
			deadline = end
		}
		// One Sample for all: handle keeps nothing of it (ReadInto).
		err := s.tr.ReadInto(&smp, deadline)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
		case err != nil:
			runErr = fmt.Errorf("read samples: %w", err)
		default:
			s.handle(smp)
		}
	}
	for pid, k := range s.targets {
		if k.notes.Gone > 0 {
			s.opt.Log.Debug("modules freed before they could be read: their samples are unresolved", "pid", pid, "modules", k.notes.Gone)
		}
	}
	// Stop walking before draining, so the drain ends.
	for pid := range s.targets {
		_ = s.tr.RemoveProcess(int(pid))
	}
	for s.tr.ReadInto(&smp, time.Now().Add(50*time.Millisecond)) == nil {
		s.handle(smp)
	}
	s.p.Duration = time.Since(s.since)
	s.counters()
	return s.p, s.st, runErr
}

func (s *session) counters() {
	if c, err := s.tr.Counters(); err == nil {
		s.p.Lost = c.Lost
		s.st.Lost = c.Lost
	}
}

// Stats describe the quality of a recording.
type Stats struct {
	Samples   int
	Processes int // processes traced at some point
	// Stops counts samples whose walk failed, by reason.
	Stops map[string]int
	Lost  uint64
	// Verify is the comparison of kernel and Go walks (Options.Verify),
	// nil when off.
	Verify *verify.Verifier
}

func clampRanges(r [][2]uint64, log *slog.Logger) [][2]uint64 {
	if len(r) > loader.MaxRanges {
		log.Warn("more compiled modules than the kernel walker tracks; samples in the others count as host code",
			"modules", len(r), "tracked", loader.MaxRanges)
		return r[:loader.MaxRanges]
	}
	return r
}
