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

	manyStart time.Duration // the 10,000-module target's start (parts 5, 6)
	firstMany *firstResult  // part 5
	many      *modResult    // part 6
	long      *longResult   // part 9
}

func (r *report) slowdown(c config) (wall, cpu float64) { return r.slow.slowdown(c) }

// bpfNet is wasmtrace's cost per target sample at depth in part 1.
func (r *report) bpfNet(depth int) (med, lo, hi time.Duration, raw time.Duration) {
	return r.bpfNetOf(depth, false)
}

// bpfNetOf is the median, range and raw median of the cost per target
// sample at depth of wasmtrace's program, or of the anchor's.
func (r *report) bpfNetOf(depth int, anchor bool) (med, lo, hi time.Duration, raw time.Duration) {
	var nets, raws []float64
	for _, run := range r.bpf.runs {
		if run.depth != depth || run.anchor != anchor {
			continue
		}
		rw, n := r.bpf.targetCost(run)
		nets, raws = append(nets, float64(n)), append(raws, float64(rw))
	}
	l, h := minMax(nets)
	return time.Duration(median(nets)), time.Duration(l), time.Duration(h), time.Duration(median(raws))
}

// bpfTiming merges wasmtrace's own timing histograms of the runs at
// depth and returns its median, 90th and 99th percentiles and count.
func (r *report) bpfTiming(depth int) (q50, q90, q99 time.Duration, n uint64) {
	return r.bpfTimingOf(depth, false)
}

// bpfTimingOf is bpfTiming of wasmtrace's program or of the anchor's.
func (r *report) bpfTimingOf(depth int, anchor bool) (q50, q90, q99 time.Duration, n uint64) {
	var h []uint64
	for _, run := range r.bpf.runs {
		if run.depth != depth || run.anchor != anchor || run.d.timing == nil {
			continue
		}
		if h == nil {
			h = make([]uint64, len(run.d.timing))
		}
		for i, v := range run.d.timing {
			h[i] += v
		}
	}
	return histStats(h)
}

// histStats is the median, 90th and 99th percentiles and count of a
// loader.Timing histogram.
func histStats(h []uint64) (q50, q90, q99 time.Duration, n uint64) {
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

func (r *report) firstSample() (med, hi time.Duration) { return firstSample(r.first) }

func firstSample(f *firstResult) (med, hi time.Duration) {
	var xs []time.Duration
	for _, run := range f.cli {
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
		if r.bpf.anchor {
			for _, d := range depths {
				am, _, _, _ := r.bpfNetOf(d, true)
				wm, _, _, _ := r.bpfNetOf(d, false)
				a50, _, _, _ := r.bpfTimingOf(d, true)
				w50, _, _, _ := r.bpfTimingOf(d, false)
				fm, _ := histMedian(r.bpf.anchorFrames(d))
				p("| bpf_get_stack user stack, %d frames (the kernel's frame-pointer walk, as perf record -g: the anchor, part 7; %d frames returned), "+
					"next to wasmtrace (net; own-clock median) | (reference) | %s; %s — wasmtrace %s; %s (%.2f×; %.2f×) | |\n",
					d, fm, us(am), us(a50), us(wm), us(w50), float64(wm)/float64(am), float64(w50)/float64(a50))
			}
		}
	}
	if r.many != nil {
		paired, _, clock := r.many.ratios()
		many, _, _, _ := r.many.net(manyModules)
		one, _, _, _ := r.many.net(1)
		cm, _, _, _ := histStats(r.many.timing(manyModules))
		c1, _, _, _ := histStats(r.many.timing(1))
		p("| BPF time per target sample, %d modules against 1 (1 Wasm frame; median of side-by-side windows' ratios) | within 10%% | %.3f× (medians %s vs %s) | %s |\n",
			manyModules, paired, us(many), us(one), verdict(math.Abs(paired-1) <= 0.10))
		p("| (the same, median of the program's own clock) | within 10%% | %.3f× (%s vs %s) | %s |\n", clock, us(cm), us(c1), verdict(math.Abs(clock-1) <= 0.10))
	}
	if r.slow != nil {
		r.summarySlow(p)
	}
	if r.first != nil {
		fm, fh := r.firstSample()
		p("| start to first sample, %d modules (median; worst) | ≤ 0.5 s | %s; %s | %s |\n", r.first.modules, ms(fm), ms(fh), verdict(fm <= 500*time.Millisecond))
	}
	if r.firstMany != nil {
		fm, fh := firstSample(r.firstMany)
		p("| start to first sample, %d modules (median; worst; the target's own start not counted) | ≤ 0.5 s | %s; %s | %s |\n", r.firstMany.modules, secs(fm), secs(fh), verdict(fm <= 500*time.Millisecond))
	}
	if r.long != nil {
		r.summaryLong(p)
	}
	var other []string
	if r.slow != nil {
		_, _, _, rss, _ := r.wasmtrace999()
		other = append(other, fmt.Sprintf("max RSS of wasmtrace at 999 Hz %.1f MiB", float64(rss)/1024))
		if r.rates != nil {
			other = append(other, "highest rate without lost samples: "+r.losslessText())
		}
	}
	if r.manyStart > 0 {
		other = append(other, fmt.Sprintf("the %d-module target's own start (exec to ready, compiling its modules; once, not in the figures) %s", manyModules, secs(r.manyStart)))
	}
	if len(other) > 0 {
		p("\nOther: %s.\n", strings.Join(other, "; "))
	}
	p("\n")
	if r.bpf != nil {
		r.sectionBPF(p, o)
	}
	if r.bpf != nil && r.bpf.anchor {
		r.sectionAnchor(p, o)
	}
	if r.slow != nil {
		r.sectionSlow(p, o)
	}
	if r.first != nil {
		r.sectionFirst(p, o)
	}
	if r.firstMany != nil {
		r.sectionFirstMany(p, o)
	}
	if r.many != nil {
		r.sectionMany(p, o)
	}
	if r.long != nil {
		r.sectionLong(p, o)
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
			if run.depth == d && !run.anchor {
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
		if run.depth == 0 && !run.anchor {
			idleRuns = append(idleRuns, float64(run.d.runCnt)/run.window.Seconds())
		}
	}
	p("\nEarly exit (a sample of another process): **%.0f ns** per run (median of the idle-target runs, %.0f runs/s on all CPUs).\n\n",
		float64(r.bpf.exitCost(false)), median(idleRuns))
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
	r.firstBody(p, r.first, "")
}

// firstBody is the method and tables of part 4 or 5.
func (r *report) firstBody(p printer, f *firstResult, extra string) {
	p("A target that compiled %d modules (`-scenario modules -modules %d -iters %d`; wasmtrace found %d) and calls them round-robin. "+
		"The benchmark starts `wasmtrace -p PID` (99 Hz) and polls, every millisecond, wasmtrace's file descriptors for its BPF program and its "+
		"counter of target samples; %d runs.%s\n\n", f.compiled, f.compiled, f.iters, f.modules, len(f.cli), extra)
	var loaded, first []time.Duration
	for _, run := range f.cli {
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
	p("\nThe same steps in the benchmark's own process (median of %d):\n\n", len(f.steps))
	p("| step | median |\n|---|---|\n")
	var pr, op, sp, fr []time.Duration
	for _, s := range f.steps {
		pr, op, sp, fr = append(pr, s.prepare), append(op, s.open), append(sp, s.setProcess), append(fr, s.firstRead)
	}
	p("| record.Prepare (layout from the binary, %d modules symbolized) | %s |\n", f.modules, ms(medianDur(pr)))
	p("| loader.Open (load and verify the BPF program, attach to every CPU) | %s |\n", ms(medianDur(op)))
	p("| SetProcess | %.2f ms |\n", float64(medianDur(sp))/1e6)
	p("| first Read of a target sample (polled every %v: the walker wakes readers only in batches) | %s |\n\n", firstPoll, ms(medianDur(fr)))
}

func (r *report) sectionFirstMany(p printer, o *options) {
	p("## 5. Start to first sample, %d modules\n\n", manyModules)
	extra := fmt.Sprintf(" The target is part 6's, started once for both parts and reused by every run: it took **%s** from exec to its \"ready\" "+
		"(compiling and instantiating its modules), which is not in the figures below. Its calls are about 50 ms (part 4's target's 1 ms calls "+
		"only change how often it moves to the next module). The first run is also timed step by step.", secs(r.manyStart))
	r.firstBody(p, r.firstMany, extra)
}

func (r *report) sectionMany(p printer, o *options) {
	m := r.many
	p("## 6. BPF time per sample, %d modules against 1\n\n", manyModules)
	p("Two targets with the same calls, `-scenario modules -iters %d` (calls of about 50 ms), one with `-modules %d` (part 5's) and one with `-modules 1`. "+
		"A module's `work` is a single function, a loop, so the stacks are **1 Wasm frame deep** (`mod_work`): what differs is how many "+
		"modules' compiled-code ranges the kernel walker searches to know the PC is Wasm. Each target has its own wasmtrace -F %d, started once and kept for the whole part. "+
		"The two targets run side by side, so that what the machine does during a window (other processes, the host) it does to both: each window's ratio compares "+
		"costs measured at the same time. Between those windows both targets are stopped (SIGSTOP) for %v, when every run of both programs is an early exit: "+
		"each program's early-exit cost, for *net* as in part 1. %d repetitions of a %v window with both running and one with both stopped, in a rotated order, "+
		"each after 0.3 s to settle; kernel BPF statistics via %s. *Own clock* as in part 1, over all the windows with both running.\n\n",
		modIters, manyModules, bpfHz, m.exitWin, o.modReps, o.bpfWindow, m.statsVia)
	p("| modules | wasmtrace's first sample after | target samples / window | stacks exactly `mod_work` | program runs / s (all CPUs) | early exit, ns per run | µs per target sample, raw | µs per target sample, net: median [min–max] | own clock: median; p90; p99 µs |\n")
	p("|---|---|---|---|---|---|---|---|---|\n")
	for _, n := range []int{manyModules, 1} {
		var samples, runs []float64
		for _, w := range m.windows {
			if !w.exit {
				samples = append(samples, float64(w.d[n].samples))
				runs = append(runs, float64(w.d[n].runCnt)/w.window.Seconds())
			}
		}
		med, lo, hi, raw := m.net(n)
		q50, q90, q99, _ := histStats(m.timing(n))
		tr := m.tracers[n]
		p("| %d | %s | %.0f | %.1f%% | %.0f | %.0f | %.2f | **%.2f** [%.2f–%.2f] | **%.2f**; %.2f; %.2f |\n", n, secs(tr.startup), median(samples),
			100*float64(tr.exact)/math.Max(1, float64(tr.total)), median(runs), float64(m.exitCost(n)),
			float64(raw)/1e3, float64(med)/1e3, float64(lo)/1e3, float64(hi)/1e3, float64(q50)/1e3, float64(q90)/1e3, float64(q99)/1e3)
	}
	paired, net, clock := m.ratios()
	q1, q3 := quartiles(m.pairRatios())
	p("\n%d modules against 1: **%.3f×**, the median of the windows' ratios of net costs [middle half %.3f–%.3f×]; %.3f× the ratio of the net medians; "+
		"**%.3f×** the ratio of the own-clock medians (%v buckets). Column 2 is wasmtrace's start at -F %d, the other target running; column 4 is from each wasmtrace's "+
		"own output over its whole run (the rest of a target's samples fall between two calls: [no Wasm]).\n\n",
		manyModules, paired, q1, q3, net, clock, loader.TimingBucket, bpfHz)
}

func (r *report) sectionAnchor(p printer, o *options) {
	b := r.bpf
	p("## 7. The anchor: the kernel's own frame-pointer walk\n\n")
	p("What `perf record -g` asks of the kernel on each sample, as a BPF program: `bpf_get_stack(ctx, buf, %d, BPF_F_USER_STACK)`, the kernel's walk of the user stack "+
		"by frame pointers, up to kernel.perf_event_max_stack = %d frames, into a per-CPU map. It is a small perf_event program built and attached like part 1's helper programs "+
		"(cpu-clock, %d Hz, every CPU), filtered to the target's pid, and it runs in part 1's rounds, interleaved with wasmtrace's runs, on the same targets "+
		"(`-scenario deep -depth N`), with the same windows and the same kernel statistics; its early-exit cost comes from its own runs on part 1's idle target. "+
		"On each target sample it counts the sample, reads bpf_ktime_get_ns, walks, reads the clock again into a histogram like wasmtrace's timing map, "+
		"and counts the frames the kernel returned; it sends nothing anywhere, so it is a lower bound for a profiler built on the kernel's walk. "+
		"The frames it returns are the N Wasm frames (Cranelift keeps frame pointers) and the host's frames below them, as far as the frame-pointer chain goes.\n\n",
		8*b.maxStack, b.maxStack, bpfHz)
	p("| Wasm frames | frames returned: median (samples) | bpf_get_stack µs per target sample, net: median [min–max] | own clock: median; p90; p99 µs | wasmtrace µs per target sample, net (part 1) | wasmtrace own clock, median µs | wasmtrace / bpf_get_stack, net; own clock |\n")
	p("|---|---|---|---|---|---|---|\n")
	for _, d := range depths {
		fm, fn := histMedian(b.anchorFrames(d))
		am, alo, ahi, _ := r.bpfNetOf(d, true)
		a50, a90, a99, _ := r.bpfTimingOf(d, true)
		wm, _, _, _ := r.bpfNetOf(d, false)
		w50, _, _, _ := r.bpfTimingOf(d, false)
		p("| %d | %d (%d) | **%.2f** [%.2f–%.2f] | **%.2f**; %.2f; %.2f | %.2f | %.2f | %.1f×; %.1f× |\n", d, fm, fn,
			float64(am)/1e3, float64(alo)/1e3, float64(ahi)/1e3, float64(a50)/1e3, float64(a90)/1e3, float64(a99)/1e3,
			float64(wm)/1e3, float64(w50)/1e3, float64(wm)/float64(am), float64(w50)/float64(a50))
	}
	p("\nEarly exit of the bpf_get_stack program: %.0f ns per run (wasmtrace's: %.0f ns). Both programs' times include their timing bookkeeping "+
		"(two bpf_ktime_get_ns and a histogram update; the anchor's net time also a second update, of the frames' histogram, outside its own clock); wasmtrace's own clock also covers finding the process's configuration, checking the PC against its compiled code and sending the sample.\n\n",
		float64(b.exitCost(true)), float64(b.exitCost(false)))
}

func (r *report) sectionGo(p printer, o *options) {
	p("## 8. Go benchmarks\n\n")
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
	return fmt.Sprintf("%.3f%%", 100*float64(r.machine.cores)*999*r.bpf.exitCost(false).Seconds())
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
