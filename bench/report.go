package main

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"time"

	"github.com/wasmtrace/wasmtrace/loader"
)

type report struct {
	started, finished time.Time
	machine           machine
	loadEnd           string

	bpf     *bpfResult
	slow    *slowResult
	rates   []rateRun
	first   *firstResult
	goBench []goBenchLine
}

func (r *report) slowdown(c config) (wall, cpu float64) { return r.slow.slowdown(c) }

func (r *report) bpfNet(depth int) (med, lo, hi time.Duration, raw time.Duration) {
	var nets, raws []float64
	for _, run := range r.bpf.runs {
		if run.depth != depth {
			continue
		}
		rw, n := r.bpf.targetCost(run)
		nets, raws = append(nets, float64(n)), append(raws, float64(rw))
	}
	l, h := minMax(nets)
	return time.Duration(median(nets)), time.Duration(l), time.Duration(h), time.Duration(median(raws))
}

// bpfTiming merges the program's own timing histograms of the runs at
// depth and returns its median, 90th and 99th percentiles and count.
func (r *report) bpfTiming(depth int) (q50, q90, q99 time.Duration, n uint64) {
	var h []uint64
	for _, run := range r.bpf.runs {
		if run.depth != depth || run.d.timing == nil {
			continue
		}
		if h == nil {
			h = make([]uint64, len(run.d.timing))
		}
		for i, v := range run.d.timing {
			h[i] += v
		}
	}
	for _, v := range h {
		n += v
	}
	return histQuantile(h, n, 0.5), histQuantile(h, n, 0.9), histQuantile(h, n, 0.99), n
}

// histQuantile is the q-quantile of a loader.Timing histogram holding n
// values, as the middle of its bucket.
func histQuantile(h []uint64, n uint64, q float64) time.Duration {
	if n == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i, v := range h {
		seen += v
		if seen >= want {
			return time.Duration(i)*loader.TimingBucket + loader.TimingBucket/2
		}
	}
	return time.Duration(len(h)) * loader.TimingBucket
}

// wasmtrace999 summarizes wasmtrace's own cost in the 999 Hz slowdown runs.
func (r *report) wasmtrace999() (cpuStat, cpuPrecise, cpuWhole float64, rss int64, lost int64) {
	var st, pr, wh, rs []float64
	for _, run := range r.slow.of(config{"wasmtrace", 999}) {
		st = append(st, run.trCPU.stat.Seconds()/run.win.Seconds())
		pr = append(pr, run.trCPU.precise.Seconds()/run.win.Seconds())
		wh = append(wh, run.trUser.Seconds()/run.trWall.Seconds())
		rs = append(rs, float64(run.trRSS))
		lost += run.sum.lost
	}
	_, maxRSS := minMax(rs)
	return median(st), median(pr), median(wh), int64(maxRSS), lost
}

func (r *report) highestLossless() (int, int) {
	best, firstLoss := 0, 0
	for _, run := range r.rates {
		if run.sum.lost == 0 && run.d.lost == 0 {
			if run.hz > best {
				best = run.hz
			}
		} else if firstLoss == 0 || run.hz < firstLoss {
			firstLoss = run.hz
		}
	}
	return best, firstLoss
}

func (r *report) firstSample() (med, hi time.Duration) {
	var xs []time.Duration
	for _, run := range r.first.cli {
		xs = append(xs, run.first)
	}
	_, h := minMax(durs(xs))
	return medianDur(xs), time.Duration(h)
}

func durs(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d)
	}
	return out
}

func (r *report) markdown(o *options) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.machine
	p("# wasmtrace benchmark\n\n")
	virt := ""
	if m.hypervisor {
		virt = " (virtual machine)"
	}
	p("Run %s UTC, %s, by `make bench` (bench/, as root).\n\n", r.started.UTC().Format("2006-01-02 15:04"),
		r.finished.Sub(r.started).Round(time.Second))
	if o.quick {
		p("**-quick: too few repetitions for figures; this only shows that the benchmark runs.**\n\n")
	}
	p("| | |\n|---|---|\n")
	p("| machine | %s%s, %d cores, %s memory |\n", m.cpu, virt, m.cores, m.memory)
	p("| kernel | Linux %s (CONFIG_IRQ_TIME_ACCOUNTING=%s; perf_event_max_sample_rate %s) |\n", m.kernel, m.irqTime, m.maxRate)
	p("| load average | %s at start, %s at end (other processes ran during the benchmark) |\n", m.load, r.loadEnd)
	p("| wasmtrace | %s, %s; kernel walker %s |\n", gitDescribe(o.repo), m.goVersion, bpfObject(o.repo))
	p("| target | `%s` (Wasmtime 39, testdata/targets) |\n", filepath.Base(o.target))
	if m.perf != "" {
		p("| perf | %s |\n", m.perf)
	}
	p("\n")

	// Summary against the targets.
	p("## Against the targets\n\n")
	p("| what | target | measured | |\n|---|---|---|---|\n")
	if r.bpf != nil {
		d30, _, _, _ := r.bpfNet(30)
		d100, _, _, _ := r.bpfNet(100)
		p("| BPF time per target sample, 30 Wasm frames | ≤ 1 µs | %s | %s |\n", us(d30), verdict(d30 <= time.Microsecond))
		p("| BPF time per target sample, 100 Wasm frames | ≤ 3 µs | %s | %s |\n", us(d100), verdict(d100 <= 3*time.Microsecond))
		if m30, _, _, n := r.bpfTiming(30); n > 0 {
			m100, _, _, _ := r.bpfTiming(100)
			p("| (the same, median of the program's own clock, 30; 100 frames) | ≤ 1; ≤ 3 µs | %s; %s | %s |\n", us(m30), us(m100),
				verdict(m30 <= time.Microsecond && m100 <= 3*time.Microsecond))
		}
	}
	if r.slow != nil {
		r.summarySlow(p)
	}
	if r.first != nil {
		fm, fh := r.firstSample()
		p("| start to first sample, %d modules (median; worst) | ≤ 0.5 s | %s; %s | %s |\n", r.first.modules, ms(fm), ms(fh), verdict(fm <= 500*time.Millisecond))
	}
	if r.slow != nil {
		_, _, _, rss, _ := r.wasmtrace999()
		p("\nOther: max RSS of wasmtrace at 999 Hz %.1f MiB", float64(rss)/1024)
		if r.rates != nil {
			p("; highest rate without lost samples: %s", r.losslessText())
		}
		p(".\n")
	}
	p("\n")
	if r.bpf != nil {
		r.sectionBPF(p, o)
	}
	if r.slow != nil {
		r.sectionSlow(p, o)
	}
	if r.first != nil {
		r.sectionFirst(p, o)
	}
	if len(r.goBench) > 0 {
		r.sectionGo(p, o)
	}
	return b.String()
}

type printer func(format string, args ...any)

func (r *report) summarySlow(p printer) {
	for _, hz := range []int{99, 999} {
		goal := 0.005
		if hz == 999 {
			goal = 0.02
		}
		_, c := r.slowdown(config{"wasmtrace", hz})
		p("| target slowdown, wasmtrace -F %d (per CPU second, 30 frames) | < %.1f%% | %s | %s |\n", hz, goal*100, pct(c+1), verdict(c < goal))
	}
	if r.slow.perf {
		for _, hz := range []int{99, 999} {
			_, c := r.slowdown(config{"wasmtrace", hz})
			_, pc := r.slowdown(config{"perf", hz})
			p("| slowdown below perf record -g -F %d's | lower | %s vs %s | %s |\n", hz, pct(c+1), pct(pc+1), verdict(c < pc))
		}
	}
	_, aa := r.slowdown(config{"", -1})
	q1, q3 := r.baselineSpread()
	p("| (noise floor: two sets of runs without a tracer; middle half of the baseline's sub-windows) | | %s; %s to %s | |\n", pct(aa+1), pct(q1), pct(q3))
	cs, cp, _, _, lost := r.wasmtrace999()
	p("| wasmtrace CPU at 999 Hz (/proc/PID/stat; scheduler clock) | < 5%% of a core | %.2f%%; %.2f%% | %s |\n", 100*cs, 100*cp, verdict(cp < 0.05 && cs < 0.05))
	p("| lost samples at 999 Hz | 0 | %d | %s |\n", lost, verdict(lost == 0))
}

func (r *report) sectionBPF(p printer, o *options) {
	p("## 1. BPF program time per sample\n\n")
	p("wasmtrace -F %d on a target with exactly N Wasm frames on the stack (`-scenario deep -depth N`), "+
		"%d interleaved runs per N, %v windows; kernel BPF statistics via %s.\n\n", bpfHz, o.bpfReps, o.bpfWindow, r.bpf.statsVia)
	p("| Wasm frames | target samples / window | stacks with exactly N frames | program runs / s (all CPUs) | µs per target sample, raw | µs per target sample, net: median [min–max] | own clock: median; p90; p99 µs |\n")
	p("|---|---|---|---|---|---|---|\n")
	for _, d := range depths {
		var n, runs []float64
		var exact, total int64
		for _, run := range r.bpf.runs {
			if run.depth == d {
				n = append(n, float64(run.d.samples))
				runs = append(runs, float64(run.d.runCnt)/run.window.Seconds())
				exact += run.exact
				total += run.total
			}
		}
		med, lo, hi, raw := r.bpfNet(d)
		q50, q90, q99, _ := r.bpfTiming(d)
		p("| %d | %.0f | %.1f%% | %.0f | %.2f | **%.2f** [%.2f–%.2f] | **%.2f**; %.2f; %.2f |\n", d, median(n), 100*float64(exact)/math.Max(1, float64(total)),
			median(runs), float64(raw)/1e3, float64(med)/1e3, float64(lo)/1e3, float64(hi)/1e3,
			float64(q50)/1e3, float64(q90)/1e3, float64(q99)/1e3)
	}
	var idleRuns []float64
	for _, run := range r.bpf.runs {
		if run.depth == 0 {
			idleRuns = append(idleRuns, float64(run.d.runCnt)/run.window.Seconds())
		}
	}
	p("\nEarly exit (a sample of another process): **%.0f ns** per run (median of the idle-target runs, %.0f runs/s on all CPUs).\n\n",
		float64(r.bpf.exitCost()), median(idleRuns))
	p("The program runs on every sample of every CPU; run_time_ns / run_cnt mixes target samples with early exits. " +
		"*Raw* divides all the program's time by the target's samples (wasmtrace's own counter of target samples, read from its map); " +
		"*net* first subtracts the early exits: (run_time − (run_cnt − target samples) × early-exit cost) / target samples, " +
		"the early-exit cost measured in the same interleaved rounds on an idle target (no target samples at all). " +
		"Each stack is checked in wasmtrace's own output (column 3).\n\n")
	p("The kernel's statistics give a mean, and on this virtual machine a run the hypervisor preempts counts in full: a few such runs move it by microseconds. "+
		"*Own clock* is the distribution instead: the program reads bpf_ktime_get_ns after finding the sample's process and again after sending it, "+
		"into a histogram of %v buckets (the `timing` map, which the benchmark turns on in the running wasmtrace), over all the runs of each N. "+
		"It leaves out the program's dispatch and the process lookup that the early exit also pays.\n\n", loader.TimingBucket)
	if len(r.bpf.helpers) > 0 {
		p("What the walk is made of, on this machine: one call of each helper, from small perf_event programs on the same 999 Hz samples of the %d-frame target "+
			"(in user mode), the program's time minus that of an empty one, per call:\n\n", slowDepth)
		p("| helper | ns per call |\n|---|---|\n")
		for _, h := range r.bpf.helpers {
			p("| %s | %.0f |\n", h.name, float64(h.per))
		}
		p("\n")
	}
}

// baselineSpread is the first and third quartile of the baseline's
// sub-window ratios, relative to their median.
func (r *report) baselineSpread() (q1, q3 float64) {
	var base []float64
	for _, run := range r.slow.of(baseline) {
		for _, pr := range run.pairs {
			base = append(base, pr.cpuRatio())
		}
	}
	m := median(base)
	for i := range base {
		base[i] /= m
	}
	return quartiles(base)
}

func (r *report) sectionSlow(p printer, o *options) {
	m := r.machine
	p("## 2. Target slowdown\n\n")
	p("Two identical targets run side by side (%d Wasm frames deep, calls of %d loop iterations, about 1 ms): in each run one is traced and the other is the control, "+
		"and their throughputs are compared over %v sub-windows, so that what slows both (other processes, the host) cancels out. "+
		"%d repetitions; the roles swap between repetitions and each repetition runs every configuration in a rotated order; "+
		"%v per run, after the tracer took its first sample plus 0.7 s. perf uses the same event as wasmtrace (`-e cpu-clock`), frame-pointer call graphs, "+
		"and writes to a file in /tmp.\n\n", slowDepth, slowIters, slowSub, o.reps, o.window)
	p("Slowdown = median over sub-windows of (control throughput / traced throughput), divided by the same median of the runs without a tracer, − 1. " +
		"The A/A row is a second set of runs without a tracer, measured like a tracer: the noise floor of this machine.\n\n")
	p("| configuration | sub-windows | traced calls / CPU s | **slowdown per CPU s** [middle half of sub-windows] | slowdown per wall s | tracer CPU, %% of a core |\n")
	p("|---|---|---|---|---|---|\n")
	var base []float64
	for _, run := range r.slow.of(baseline) {
		for _, pr := range run.pairs {
			base = append(base, pr.cpuRatio())
		}
	}
	bmed := median(base)
	for _, c := range slowConfigs {
		runs := r.slow.of(c)
		if len(runs) == 0 {
			continue
		}
		var pc, tc, q []float64
		for _, run := range runs {
			for _, pr := range run.pairs {
				pc = append(pc, perCPU(pr.traced))
				q = append(q, pr.cpuRatio()/bmed)
			}
			tc = append(tc, run.trCPU.precise.Seconds()/run.win.Seconds())
		}
		w, u := r.slowdown(c)
		q1, q3 := quartiles(q)
		sw, su, tcs := pct(w+1), fmt.Sprintf("**%s** [%s, %s]", pct(u+1), pct(q1), pct(q3)), fmt.Sprintf("%.2f%%", 100*median(tc))
		if c.tracer == "" {
			tcs = "–"
		}
		if c == baseline {
			sw, su = "(baseline)", fmt.Sprintf("(baseline) [%s, %s]", pct(q1), pct(q3))
		}
		p("| %s | %d | %.1f | %s | %s | %s |\n", c, len(q), median(pc), su, sw, tcs)
	}
	irq := "so the time of the sampling interrupt, the BPF program or perf's unwinding included, is charged to the thread it interrupts"
	if m.irqTime == "y" {
		irq = "**but this kernel has CONFIG_IRQ_TIME_ACCOUNTING=y: interrupt time is not charged to the thread, so per CPU second misses the sampling cost itself; use per wall second**"
	}
	p("\n*Per CPU second* divides the calls by the Wasm thread's own CPU time (CLOCK_THREAD_CPUTIME_ID, read by the target): "+
		"it does not move when other processes take the CPU away, and with CONFIG_IRQ_TIME_ACCOUNTING=%s %s. "+
		"*Per wall second* also counts the tracer's userspace and everything else competing for the %d cores; on a loaded machine it is the noisier figure. "+
		"wasmtrace's events are system-wide, so its early exits (part 1) also land on the control: the comparison misses those, about %s of a core at 999 Hz.\n\n",
		m.irqTime, irq, m.cores, r.exitShare())
	if r.bpf != nil {
		d30, _, _, _ := r.bpfNet(slowDepth)
		p("Noise-free lower bound from part 1: the BPF program alone takes %s per sample at %d frames, "+
			"so %.3f%% of the target's CPU at 99 samples/s and %.2f%% at 999 samples/s (interrupt entry, the perf event itself and the ring buffer's wake-ups come on top).\n\n",
			us(d30), slowDepth, 100*99*d30.Seconds(), 100*999*d30.Seconds())
	}

	p("## 3. wasmtrace's own cost\n\n")
	cs, cp, whole, rss, lost := r.wasmtrace999()
	var per []float64
	for _, run := range r.slow.of(config{"wasmtrace", 999}) {
		// CPU per second over the window / samples per second over the run.
		if run.sum.samples > 0 {
			per = append(per, run.trCPU.precise.Seconds()/run.win.Seconds()/(float64(run.sum.samples)/run.trWall.Seconds())*1e6)
		}
	}
	p("At 999 Hz on the slowdown target (%d frames, about 1000 target samples/s): **%.2f%%** of a core from /proc/PID/stat utime+stime over the windows "+
		"(%.2f%% by the process's scheduler CPU clock; about %.0f µs per sample), %.2f%% over whole runs including start-up; max RSS %.1f MiB; %d samples lost.\n\n",
		slowDepth, 100*cs, 100*cp, median(per), 100*whole, float64(rss)/1024, lost)
	if r.rates == nil {
		return
	}
	p("Rates on a target %d Wasm frames deep (one thread, so at most -F target samples/s):\n\n", rateDepth)
	p("| -F | target samples / s | lost (kernel, whole run) | wasmtrace CPU, %% of a core | CPU µs per sample | max RSS | perf_event_max_sample_rate after |\n")
	p("|---|---|---|---|---|---|---|\n")
	for _, run := range r.rates {
		per := 0.0
		if run.d.samples > 0 {
			per = run.cpu.precise.Seconds() * 1e6 / float64(run.d.samples)
		}
		p("| %d | %.0f | %d | %.2f%% | %.1f | %.1f MiB | %s |\n", run.hz, float64(run.d.samples)/run.win.Seconds(),
			run.sum.lost, 100*run.cpu.precise.Seconds()/run.win.Seconds(), per, float64(run.rss)/1024, run.maxRate)
	}
	p("\nHighest rate without lost samples: %s. (The kernel caps -F at 10000; wasmtrace refuses more.)\n\n", r.losslessText())
}

func (r *report) sectionFirst(p printer, o *options) {
	p("## 4. Start to first sample\n\n")
	p("A target that compiled %d modules (`-scenario modules`; wasmtrace found %d) and calls them round-robin. "+
		"The benchmark starts `wasmtrace -p PID` (99 Hz) and polls, every millisecond, wasmtrace's file descriptors for its BPF program and its "+
		"counter of target samples; %d runs.\n\n", firstModules, r.first.modules, o.firstReps)
	var loaded, first []time.Duration
	for _, run := range r.first.cli {
		loaded, first = append(loaded, run.progLoaded), append(first, run.first)
	}
	p("| from exec to | median | min | max |\n|---|---|---|---|\n")
	for _, row := range []struct {
		name string
		ds   []time.Duration
	}{{"BPF program loaded", loaded}, {"**first sample of the target**", first}} {
		lo, hi := minMax(durs(row.ds))
		p("| %s | %s | %s | %s |\n", row.name, ms(medianDur(row.ds)), ms(time.Duration(lo)), ms(time.Duration(hi)))
	}
	p("\nThe same steps in the benchmark's own process (median of %d):\n\n", len(r.first.steps))
	p("| step | median |\n|---|---|\n")
	var pr, op, sp, fr []time.Duration
	for _, s := range r.first.steps {
		pr, op, sp, fr = append(pr, s.prepare), append(op, s.open), append(sp, s.setProcess), append(fr, s.firstRead)
	}
	p("| record.Prepare (layout from the binary, %d modules symbolized) | %s |\n", r.first.modules, ms(medianDur(pr)))
	p("| loader.Open (load and verify the BPF program, attach to every CPU) | %s |\n", ms(medianDur(op)))
	p("| SetProcess | %.2f ms |\n", float64(medianDur(sp))/1e6)
	p("| first Read of a target sample | %s |\n\n", ms(medianDur(fr)))
}

func (r *report) sectionGo(p printer, o *options) {
	p("## 5. Go benchmarks\n\n")
	p("`go test -run '^$' -bench . -benchmem %s` (the live ones on the %s target).\n\n", strings.Join(goBenchPackages, " "), filepath.Base(o.target))
	p("| package | benchmark | runs | results |\n|---|---|---|---|\n")
	for _, l := range r.goBench {
		p("| %s | %s | %s | %s |\n", l.pkg, l.name, l.iters, strings.Join(l.metrics, ", "))
	}
	p("\n")
}

// exitShare is the early exits' time on all CPUs at 999 Hz, as a share of
// one core.
func (r *report) exitShare() string {
	if r.bpf == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.3f%%", 100*float64(r.machine.cores)*999*r.bpf.exitCost().Seconds())
}

func (r *report) losslessText() string {
	best, firstLoss := r.highestLossless()
	switch {
	case best == 0:
		return fmt.Sprintf("none of the rates tried (samples lost from %d Hz)", firstLoss)
	case firstLoss == 0:
		return fmt.Sprintf("%d Hz, the highest tried", best)
	default:
		return fmt.Sprintf("%d Hz (samples lost at %d Hz)", best, firstLoss)
	}
}
