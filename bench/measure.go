package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/wasmtrace/wasmtrace/loader"
	"github.com/wasmtrace/wasmtrace/record"
)

// ---- 1. BPF cost per sample ----

// bpfHz is the rate of the BPF cost runs: many samples in a short window.
const bpfHz = 999

var depths = []int{3, 30, 100}

type bpfRun struct {
	depth  int  // 0: the idle target
	anchor bool // the bpf_get_stack program (part 7), not wasmtrace
	d      bpfStats
	window time.Duration
	exact  int64 // samples whose stack is exactly depth deep frames
	total  int64 // samples in the profile
	sum    summary
	frames []uint64 // anchor: samples by the number of frames the kernel returned
}

// bpfConfig is one configuration of part 1's rounds.
type bpfConfig struct {
	depth  int
	anchor bool
}

type bpfResult struct {
	statsVia string
	runs     []bpfRun
	helpers  []helperCost
	anchor   bool // the rounds include the bpf_get_stack program (part 7)
	maxStack int  // kernel.perf_event_max_stack, the anchor's limit
}

// enableBPFStats turns the kernel's BPF statistics on while the returned
// function has not been called, and says how.
func enableBPFStats(part string) (via string, undo func(), err error) {
	// Kernel BPF statistics, while this process holds the fd (the same
	// as sysctl kernel.bpf_stats_enabled=1, undone when we exit).
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err == nil {
		return "BPF_ENABLE_STATS (held for " + part + " only)", func() { c.Close() }, nil
	}
	old, rerr := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled")
	if rerr != nil {
		return "", nil, fmt.Errorf("enable BPF statistics: %v", err)
	}
	if werr := os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte("1\n"), 0); werr != nil {
		return "", nil, fmt.Errorf("enable BPF statistics: %v; sysctl: %v", err, werr)
	}
	return "sysctl kernel.bpf_stats_enabled=1 (for " + part + " only)", func() { os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", old, 0) }, nil
}

// measureBPF runs wasmtrace at 999 Hz on an idle target (every run of the
// program is an early exit: samples of other processes) and on targets with
// exactly 3, 30 and 100 Wasm frames on the stack, interleaved, and reads the
// program's run_time_ns and run_cnt and wasmtrace's sample counter before
// and after a window. With anchor (part 7) each round also runs the
// bpf_get_stack program on the same targets, the same way.
func measureBPF(o *options, anchor, helpers bool) (*bpfResult, error) {
	res := &bpfResult{anchor: anchor}
	parts := "part 1"
	if anchor {
		parts = "parts 1 and 7"
	}
	via, undo, err := enableBPFStats(parts)
	if err != nil {
		return nil, err
	}
	defer undo()
	res.statsVia = via
	var am *anchorMaps
	if anchor {
		if am, err = newAnchorMaps(); err != nil {
			return nil, fmt.Errorf("bpf_get_stack program's maps: %w", err)
		}
		defer am.Close()
		res.maxStack = am.maxStack
	}

	targets := map[int]*target{}
	defer func() {
		for _, t := range targets {
			t.resume()
			t.stop()
		}
	}()
	idle, err := startTarget("idle", o.target, "-scenario", "idle")
	if err != nil {
		return nil, err
	}
	targets[0] = idle
	for _, d := range depths {
		t, err := startTarget(fmt.Sprintf("deep %d", d), o.target, "-scenario", "deep", "-depth", strconv.Itoa(d))
		if err != nil {
			return nil, err
		}
		t.pause()
		targets[d] = t
	}
	var configs []bpfConfig
	for _, d := range append([]int{0}, depths...) {
		configs = append(configs, bpfConfig{d, false})
		if anchor {
			configs = append(configs, bpfConfig{d, true})
		}
	}
	for r := 0; r < o.bpfReps; r++ {
		for _, c := range rotate(configs, r) {
			var run bpfRun
			var err error
			if c.anchor {
				run, err = anchorRunOnce(o, am, targets[c.depth], c.depth)
			} else {
				run, err = bpfRunOnce(o, targets[c.depth], c.depth)
			}
			if err != nil {
				return nil, err
			}
			res.runs = append(res.runs, run)
			raw, _ := res.targetCost(run)
			who := "wasmtrace"
			if c.anchor {
				who = "bpf_get_stack"
			}
			fmt.Fprintf(os.Stderr, "bench:   %d %-13s depth %3d: %d runs, %d target samples, %v/run, %v raw per target sample\n",
				r, who, c.depth, run.d.runCnt, run.d.samples, run.d.runTime/time.Duration(max(1, run.d.runCnt)), raw)
		}
	}
	if !helpers {
		return res, nil
	}
	// What the walk is made of: the helpers it calls, on the same kind of
	// samples (a busy Wasm thread, user mode).
	t := targets[30]
	t.resume()
	res.helpers, err = measureHelpers(t.pid, o.bpfWindow*2/3)
	t.pause()
	if err != nil {
		return nil, fmt.Errorf("helper costs: %w", err)
	}
	return res, nil
}

func bpfRunOnce(o *options, t *target, depth int) (bpfRun, error) {
	idle := depth == 0
	if !idle {
		t.resume()
		defer t.pause()
	}
	out := o.tmpFile("bpf.folded")
	defer os.Remove(out)
	tr, err := startWasmtrace(o.wasmtrace, t.pid, bpfHz, out)
	if err != nil {
		return bpfRun{}, err
	}
	if err := tr.waitSampling(idle, 30*time.Second); err != nil {
		tr.stop()
		return bpfRun{}, err
	}
	time.Sleep(300 * time.Millisecond)
	s0, _, err0 := readBPF(tr.pid())
	t0 := time.Now()
	time.Sleep(o.bpfWindow)
	s1, _, err1 := readBPF(tr.pid())
	win := time.Since(t0)
	st, err := tr.stop()
	if err = errors.Join(err0, err1, err); err != nil {
		return bpfRun{}, err
	}
	run := bpfRun{depth: depth, d: s1.sub(s0), window: win}
	if run.sum, err = parseSummary(st.stderr); err != nil {
		return bpfRun{}, err
	}
	if !idle {
		if run.exact, run.total, err = foldedDepth(out, "deep", depth); err != nil {
			return bpfRun{}, err
		}
	}
	return run, nil
}

// exitCost is the median time of an early exit of wasmtrace's program (of
// the anchor's): a run of the program on the idle target's recordings,
// where no sample is the target's.
func (r *bpfResult) exitCost(anchor bool) time.Duration {
	var xs []float64
	for _, run := range r.runs {
		if run.depth == 0 && run.anchor == anchor && run.d.runCnt > 0 {
			xs = append(xs, float64(run.d.runTime)/float64(run.d.runCnt))
		}
	}
	return time.Duration(median(xs))
}

// targetCost is the program's time per target sample in one run: all its
// time minus the early exits' (counted as the runs that were not target
// samples, each at the idle runs' median cost), per target sample.
func (r *bpfResult) targetCost(run bpfRun) (raw, net time.Duration) {
	if run.d.samples == 0 {
		return 0, 0
	}
	n := float64(run.d.samples)
	others := float64(run.d.runCnt) - n
	raw = time.Duration(float64(run.d.runTime) / n)
	net = time.Duration((float64(run.d.runTime) - others*float64(r.exitCost(run.anchor))) / n)
	return raw, net
}

// ---- 2. target slowdown ----

// slowDepth and slowIters make the slowdown targets: 30 Wasm frames, calls
// of about 1 ms (so a second holds hundreds of calls).
const (
	slowDepth = 30
	slowIters = 700000
	// slowSub is the length of the sub-windows compared pairwise.
	slowSub = time.Second
)

type config struct {
	tracer string // "", "wasmtrace", "perf"
	hz     int
}

func (c config) String() string {
	if c.tracer == "" && c.hz < 0 {
		return "no tracer, again (A/A)"
	}
	if c.tracer == "" {
		return "no tracer"
	}
	if c.tracer == "perf" {
		return fmt.Sprintf("perf record -g -F %d", c.hz)
	}
	return fmt.Sprintf("wasmtrace -F %d", c.hz)
}

// slowConfigs are the configurations of the slowdown runs. The second
// baseline, compared with the first like the tracers are, shows how much
// two runs without any tracer differ: the noise floor of this machine.
var (
	baseline    = config{"", 0}
	slowConfigs = []config{baseline, {"wasmtrace", 99}, {"wasmtrace", 999}, {"perf", 99}, {"perf", 999}, {"", -1}}
)

// pair is one sub-window: the progress of the traced target and of the
// control target running at the same time.
type pair struct{ traced, control progress }

func perCPU(p progress) float64  { return float64(p.calls) / p.cpu.Seconds() }
func perWall(p progress) float64 { return float64(p.calls) / p.wall.Seconds() }

// cpuRatio and wallRatio are control throughput / traced throughput.
func (p pair) cpuRatio() float64  { return perCPU(p.control) / perCPU(p.traced) }
func (p pair) wallRatio() float64 { return perWall(p.control) / perWall(p.traced) }

type slowRun struct {
	rep    int
	cfg    config
	pairs  []pair
	win    time.Duration // the whole window, by our clock
	trCPU  cpuTimes      // the tracer's CPU time over the window
	trRSS  int64         // the tracer's max RSS, KiB
	trUser time.Duration // the tracer's CPU time over its whole run
	trWall time.Duration // the tracer's whole run
	sum    summary       // wasmtrace's summary
}

// traced sums the traced target's progress over the window.
func (r slowRun) traced() progress {
	var t progress
	for _, p := range r.pairs {
		t.calls, t.wall, t.cpu = t.calls+p.traced.calls, t.wall+p.traced.wall, t.cpu+p.traced.cpu
	}
	return t
}

type slowResult struct {
	perf bool // perf record was available
	runs []slowRun
}

// measureSlowdown runs two identical targets side by side: in each run one
// is traced and the other is the control, and their throughputs are
// compared sub-window by sub-window, so that what slows both (other
// processes, the host) cancels out. The roles alternate between
// repetitions, and each repetition runs every configuration in a rotated
// order.
func measureSlowdown(o *options) (*slowResult, error) {
	res := &slowResult{}
	_, perfErr := exec.LookPath("perf")
	res.perf = perfErr == nil
	var ts [2]*target
	for i := range ts {
		t, err := startTarget(fmt.Sprintf("slowdown %c", 'A'+i), o.target, "-scenario", "deep",
			"-depth", strconv.Itoa(slowDepth), "-iters", strconv.Itoa(slowIters), "-report", "100ms")
		if err != nil {
			return nil, err
		}
		defer t.stop()
		t.latest()
		ts[i] = t
	}
	for r := 0; r < o.reps; r++ {
		traced, control := ts[r%2], ts[1-r%2]
		for _, c := range rotate(slowConfigs, r) {
			if c.tracer == "perf" && !res.perf {
				continue
			}
			run, err := slowRunOnce(o, traced, control, c)
			if err != nil {
				return nil, err
			}
			run.rep = r
			res.runs = append(res.runs, run)
			var q, qw []float64
			for _, p := range run.pairs {
				q, qw = append(q, p.cpuRatio()), append(qw, p.wallRatio())
			}
			fmt.Fprintf(os.Stderr, "bench:   %d %-22s %7.1f calls/CPU s, control/traced per CPU s %.4f, per wall s %.4f; tracer %.2f%% of a core\n",
				r, c, perCPU(run.traced()), median(q), median(qw), 100*run.trCPU.precise.Seconds()/run.win.Seconds())
		}
	}
	return res, nil
}

func slowRunOnce(o *options, t, control *target, c config) (slowRun, error) {
	run := slowRun{cfg: c}
	var tr *tracer
	var err error
	out := o.tmpFile("slow.out")
	defer os.Remove(out)
	switch c.tracer {
	case "wasmtrace":
		tr, err = startWasmtrace(o.wasmtrace, t.pid, c.hz, out)
	case "perf":
		tr, err = startPerf(t.pid, c.hz, out)
	}
	if err != nil {
		return run, err
	}
	if tr != nil {
		if err := tr.waitSampling(false, 30*time.Second); err != nil {
			tr.stop()
			return run, err
		}
	}
	// Settle: the tracer's start-up (wasmtrace's module scan, perf's
	// synthesized events) is over; both have their steady state.
	time.Sleep(700 * time.Millisecond)
	var c0, c1 cpuTimes
	if tr != nil {
		c0, _ = readCPU(tr.pid())
	}
	t0 := time.Now()
	pt, pc := t.latest(), control.latest()
	for end := t0.Add(o.window); time.Now().Before(end); {
		time.Sleep(min(slowSub, time.Until(end)))
		nt, nc := t.latest(), control.latest()
		p := pair{traced: nt.sub(pt), control: nc.sub(pc)}
		if p.traced.calls <= 0 || p.traced.cpu <= 0 || p.control.calls <= 0 || p.control.cpu <= 0 {
			continue // a sub-window without a call finished on one side
		}
		run.pairs = append(run.pairs, p)
		pt, pc = nt, nc
	}
	run.win = time.Since(t0)
	if tr != nil {
		c1, _ = readCPU(tr.pid())
		run.trCPU = c1.sub(c0)
		st, err := tr.stop()
		if err != nil {
			return run, err
		}
		run.trWall = st.wall
		if st.usage != nil {
			run.trRSS = st.usage.Maxrss
			run.trUser = time.Duration(st.usage.Utime.Nano() + st.usage.Stime.Nano())
		}
		if c.tracer == "wasmtrace" {
			if run.sum, err = parseSummary(st.stderr); err != nil {
				return run, err
			}
		}
	}
	if len(run.pairs) == 0 {
		return run, fmt.Errorf("the targets made no progress in %v", o.window)
	}
	return run, nil
}

// slowdown is how much longer a call of the traced target takes, relative
// to the control target, than in the baseline runs: per CPU second and per
// wall second, median(control/traced) / median(baseline's control/traced)
// − 1 over all sub-windows.
func (r *slowResult) slowdown(c config) (wall, cpu float64) {
	q := func(c config) (w, u []float64) {
		for _, run := range r.of(c) {
			for _, p := range run.pairs {
				w, u = append(w, p.wallRatio()), append(u, p.cpuRatio())
			}
		}
		return w, u
	}
	w, u := q(c)
	bw, bu := q(baseline)
	return median(w)/median(bw) - 1, median(u)/median(bu) - 1
}

func (r *slowResult) of(c config) []slowRun {
	var out []slowRun
	for _, run := range r.runs {
		if run.cfg == c {
			out = append(out, run)
		}
	}
	return out
}

// ---- 3. sample rates ----

const rateDepth = 100

type rateRun struct {
	hz      int
	d       bpfStats
	win     time.Duration
	cpu     cpuTimes
	rss     int64
	sum     summary
	maxRate string // kernel.perf_event_max_sample_rate after the run
}

// measureRates runs wasmtrace on a 100-deep target at increasing rates and
// reports lost samples, the rate it got, and its CPU.
func measureRates(o *options) ([]rateRun, error) {
	t, err := startTarget("rates", o.target, "-scenario", "deep", "-depth", strconv.Itoa(rateDepth))
	if err != nil {
		return nil, err
	}
	defer t.stop()
	var runs []rateRun
	for _, hz := range o.rates {
		out := o.tmpFile("rate.folded")
		tr, err := startWasmtrace(o.wasmtrace, t.pid, hz, out)
		if err != nil {
			return nil, err
		}
		if err := tr.waitSampling(false, 30*time.Second); err != nil {
			tr.stop()
			return nil, err
		}
		time.Sleep(300 * time.Millisecond)
		s0, _, _ := readBPF(tr.pid())
		c0, _ := readCPU(tr.pid())
		t0 := time.Now()
		time.Sleep(o.rateWin)
		s1, _, _ := readBPF(tr.pid())
		c1, _ := readCPU(tr.pid())
		run := rateRun{hz: hz, d: s1.sub(s0), win: time.Since(t0), cpu: c1.sub(c0)}
		st, err := tr.stop()
		os.Remove(out)
		if err != nil {
			return nil, err
		}
		if st.usage != nil {
			run.rss = st.usage.Maxrss
		}
		if run.sum, err = parseSummary(st.stderr); err != nil {
			return nil, err
		}
		b, _ := os.ReadFile("/proc/sys/kernel/perf_event_max_sample_rate")
		run.maxRate = string(trimNL(b))
		runs = append(runs, run)
	}
	return runs, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// ---- 4. time to first sample ----

const firstModules = 100

type firstRun struct {
	progLoaded time.Duration // exec to wasmtrace's BPF program and map existing
	first      time.Duration // exec to the kernel's first sample of the target
}

// firstPoll is how often stepsOnce asks for the first sample.
const firstPoll = 5 * time.Millisecond

type stepRun struct {
	prepare, open, setProcess, firstRead time.Duration
	modules                              int
}

type firstResult struct {
	compiled int // modules the target compiled (-modules)
	iters    int // the target's -iters
	modules  int // compiled modules wasmtrace found
	cli      []firstRun
	steps    []stepRun
}

// measureFirstSample starts wasmtrace on a process with 100 compiled
// modules and polls, from outside, for wasmtrace's counter of target
// samples to become non-zero; then it times the same steps in this
// process (record.Prepare, loader.Open, SetProcess, the first Read).
func measureFirstSample(o *options) (*firstResult, error) {
	t, err := startTarget("modules", o.target, "-scenario", "modules", "-modules", strconv.Itoa(firstModules),
		"-iters", "700000")
	if err != nil {
		return nil, err
	}
	defer t.stop()
	return firstSampleOn(t, o.wasmtrace, firstModules, 700000, o.firstReps, o.firstReps, 30*time.Second)
}

// firstSampleOn times reps starts of wasmtrace on t, a target with
// compiled modules, and the first stepsReps of them again step by step in
// this process; a start that takes longer than timeout is an error.
func firstSampleOn(t *target, wasmtrace string, compiled, iters, reps, stepsReps int, timeout time.Duration) (*firstResult, error) {
	res := &firstResult{compiled: compiled, iters: iters}
	for r := 0; r < reps; r++ {
		run, err := firstRunOnce(wasmtrace, t, timeout)
		if err != nil {
			return nil, err
		}
		res.cli = append(res.cli, run)
		fmt.Fprintf(os.Stderr, "bench:   %d %d modules: first sample after %v\n", r, compiled, run.first.Round(time.Millisecond))
		if r >= stepsReps {
			continue
		}
		sr, err := stepsOnce(t)
		if err != nil {
			return nil, err
		}
		res.modules = sr.modules
		res.steps = append(res.steps, sr)
		fmt.Fprintf(os.Stderr, "bench:   %d %d modules: record.Prepare %v, loader.Open %v\n", r, compiled,
			sr.prepare.Round(time.Millisecond), sr.open.Round(time.Millisecond))
	}
	return res, nil
}

func firstRunOnce(wasmtrace string, t *target, timeout time.Duration) (firstRun, error) {
	var run firstRun
	cmd := exec.Command(wasmtrace, "-p", strconv.Itoa(t.pid), "-d", "1h", "--format", "folded", "-o", os.DevNull)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return run, err
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	for time.Since(t0) < timeout {
		s, ok, err := readBPF(cmd.Process.Pid)
		if err != nil {
			return run, err
		}
		now := time.Since(t0)
		if ok && run.progLoaded == 0 {
			run.progLoaded = now
		}
		if ok && s.samples > 0 {
			run.first = now
			return run, nil
		}
		time.Sleep(time.Millisecond)
	}
	return run, fmt.Errorf("no sample within %v", timeout)
}

func stepsOnce(t *target) (stepRun, error) {
	var sr stepRun
	log := slog.New(slog.DiscardHandler)
	t0 := time.Now()
	tg, err := record.Prepare(t.pid, log)
	if err != nil {
		return sr, err
	}
	sr.modules = tg.Syms.Len()
	t1 := time.Now()
	tr, err := loader.Open(99)
	if err != nil {
		return sr, err
	}
	defer tr.Close()
	t2 := time.Now()
	ranges := tg.Syms.TextRanges()
	if len(ranges) > loader.MaxRanges {
		ranges = ranges[:loader.MaxRanges]
	}
	if err := tr.SetProcess(t.pid, loader.ProcessConfig{Layout: tg.Layout, Arch: tg.Arch, Stacks: tg.Stacks, Ranges: ranges}); err != nil {
		return sr, err
	}
	t3 := time.Now()
	// The walker wakes readers in batches (WT_WAKEUP_BYTES), so a Read
	// waiting for a wake-up returns at its deadline: poll, as record does
	// with its refresh deadlines, every firstPoll.
	deadline := t3.Add(10 * time.Second)
	for {
		s, err := tr.Read(time.Now().Add(firstPoll))
		if errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(deadline) {
			continue
		}
		if err != nil {
			return sr, fmt.Errorf("first sample: %w", err)
		}
		if int(s.PID) == t.pid && !s.Event.IsNote() {
			break
		}
	}
	t4 := time.Now()
	sr.prepare, sr.open, sr.setProcess, sr.firstRead = t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t4.Sub(t3)
	return sr, nil
}
