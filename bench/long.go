package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ---- 9. A long recording of a real guest ----
//
// What an incident recording costs when it runs for long: wasmtrace's RSS
// against time over at least ten minutes of a real guest at 999 Hz, and
// its userspace CPU per sample (utime+stime of /proc/PID/stat over the
// samples its BPF program sent) at depths 3, 30 and 100 and on the guest,
// each beside the same figure of the wasmtrace of an earlier commit (the
// baseline: built from that commit into a temporary directory, or given).

// longHz is the rate of part 9, as in the recording.
const longHz = 999

// longNest is how many block levels the guest's work is called through
// (testdata/guest -nest), so that its stacks are about 40 Wasm frames
// deep (each level adds a map block: the interpreter calling itself
// through rb_yield, about ten frames).
const longNest = 2

// cpuRun is one wasmtrace's CPU over a window of a recording.
type cpuRun struct {
	who     string // "baseline" or "now"
	depth   int    // 0: the guest
	samples uint64 // target samples its BPF program sent in the window
	cpu     cpuTimes
	win     time.Duration
	sum     summary
	rss     int64 // max RSS, KiB
	// fixed is wasmtrace's CPU per second with its target stopped: what it
	// spends whatever the samples (rescanning the target's modules every
	// 200 ms, its timers), measured in a run of its own.
	fixed time.Duration
}

// netPerSample is perSample by the scheduler clock less the fixed cost
// per second: the cost of one more sample, which is what 10,000 samples a
// second multiply.
func (r cpuRun) netPerSample() float64 {
	if r.samples == 0 {
		return 0
	}
	return (r.cpu.precise.Seconds() - r.fixed.Seconds()*r.win.Seconds()) * 1e6 / float64(r.samples)
}

// perSample is the µs of wasmtrace's CPU per sample, by /proc/PID/stat and
// by the scheduler's clock.
func (r cpuRun) perSample() (stat, precise float64) {
	if r.samples == 0 {
		return 0, 0
	}
	n := float64(r.samples)
	return r.cpu.stat.Seconds() * 1e6 / n, r.cpu.precise.Seconds() * 1e6 / n
}

// rssPoint is one reading of the long recording.
type rssPoint struct {
	at      time.Duration // since the first sample
	rss     int64         // VmRSS, KiB
	cpu     cpuTimes
	samples uint64
}

type longResult struct {
	baseline, baselineFrom string
	guest                  string
	depths                 []cpuRun
	guestBase              cpuRun
	baseSeries             []rssPoint
	series                 []rssPoint // the long run, of the current wasmtrace
	guestNow               cpuRun     // over the long run after its first 2 minutes
	meanDepth              float64    // Wasm frames per sample, from its output
	distinct               int        // distinct stacks in its output
}

// baselineBinary is -baseline, or the wasmtrace of commit rev built into
// the run's temporary directory.
func baselineBinary(o *options) (bin, from string, err error) {
	if o.baseline != "" {
		return o.baseline, o.baseline, nil
	}
	dir := filepath.Join(o.tmp, "baseline-"+o.baselineRev)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	archive := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", o.repo, o.baselineRev, dir)
	if out, err := archive.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("check out %s: %w: %s", o.baselineRev, err, out)
	}
	bin = filepath.Join(dir, "wasmtrace-"+o.baselineRev)
	build := exec.Command(o.goTool, "build", "-o", bin, "./cmd/wasmtrace")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("build wasmtrace %s: %w: %s", o.baselineRev, err, out)
	}
	return bin, "commit " + o.baselineRev + ", built by the benchmark", nil
}

// vmRSS is pid's resident set in KiB.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// recordFor runs wasmtrace bin on pid at longHz for settle then window,
// reading its CPU, samples and RSS every `every` (0: only at the window's
// ends), and returns the window's CPU run, the readings since its first
// sample, and its folded output.
func recordFor(o *options, bin string, pid int, settle, window, every time.Duration) (cpuRun, []rssPoint, string, error) {
	out := o.tmpFile("long.folded")
	tr, err := startWasmtrace(bin, pid, longHz, out)
	if err != nil {
		return cpuRun{}, nil, "", err
	}
	if err := tr.waitSampling(false, 60*time.Second); err != nil {
		tr.stop()
		return cpuRun{}, nil, "", err
	}
	t0 := time.Now()
	var points []rssPoint
	read := func() (rssPoint, error) {
		c, err := readCPU(tr.pid())
		if err != nil {
			return rssPoint{}, err
		}
		s, _, err := readBPF(tr.pid())
		if err != nil {
			return rssPoint{}, err
		}
		rss, err := vmRSS(tr.pid())
		return rssPoint{at: time.Since(t0), rss: rss, cpu: c, samples: s.samples}, err
	}
	var first, last rssPoint
	end := t0.Add(settle + window)
	for i := 0; ; i++ {
		now := time.Now()
		if every > 0 || now.Sub(t0) >= settle {
			p, err := read()
			if err != nil {
				tr.stop()
				return cpuRun{}, nil, "", err
			}
			points = append(points, p)
			if first.at == 0 && p.at >= settle {
				first = p
			}
			last = p
		}
		if !now.Before(end) {
			break
		}
		next := end
		if every > 0 {
			next = t0.Add(time.Duration(i+1) * every)
		} else if now.Sub(t0) < settle {
			next = t0.Add(settle)
		}
		if next.After(end) {
			next = end
		}
		time.Sleep(time.Until(next))
	}
	st, err := tr.stop()
	if err != nil {
		return cpuRun{}, nil, "", err
	}
	run := cpuRun{samples: last.samples - first.samples, cpu: last.cpu.sub(first.cpu), win: last.at - first.at}
	if run.sum, err = parseSummary(st.stderr); err != nil {
		return cpuRun{}, nil, "", err
	}
	if st.usage != nil {
		run.rss = st.usage.Maxrss
	}
	return run, points, out, nil
}

// fixedCost is bin's CPU per second (/proc/PID/stat) on t stopped: it
// starts wasmtrace, waits for its first sample of t, stops t (SIGSTOP)
// and reads the CPU over window.
func fixedCost(o *options, bin string, t *target, window time.Duration) (time.Duration, error) {
	out := o.tmpFile("fixed.folded")
	defer os.Remove(out)
	tr, err := startWasmtrace(bin, t.pid, longHz, out)
	if err != nil {
		return 0, err
	}
	if err := tr.waitSampling(false, 60*time.Second); err != nil {
		tr.stop()
		return 0, err
	}
	t.pause()
	defer t.resume()
	time.Sleep(2 * time.Second)
	c0, err0 := readCPU(tr.pid())
	t0 := time.Now()
	time.Sleep(window)
	c1, err1 := readCPU(tr.pid())
	win := time.Since(t0)
	_, err = tr.stop()
	if err := errors.Join(err0, err1, err); err != nil {
		return 0, err
	}
	// The scheduler's clock: over a window, a few ms of CPU are a few
	// ticks of /proc/PID/stat (10 ms each).
	return time.Duration(float64(c1.precise-c0.precise) / win.Seconds()), nil
}

// measureLong is part 9.
func measureLong(o *options) (*longResult, error) {
	res := &longResult{guest: o.guest}
	base, from, err := baselineBinary(o)
	if err != nil {
		return nil, err
	}
	res.baseline, res.baselineFrom = base, from
	window := 15 * time.Second
	reps := 2
	if o.quick {
		window, reps = 5*time.Second, 1
	}
	for _, d := range depths {
		t, err := startTarget(fmt.Sprintf("deep %d", d), o.target, "-scenario", "deep", "-depth", strconv.Itoa(d))
		if err != nil {
			return nil, err
		}
		for r := 0; r < reps; r++ {
			whos := []string{"baseline", "now"}
			if r%2 == 1 {
				whos = []string{"now", "baseline"}
			}
			for _, who := range whos {
				bin := o.wasmtrace
				if who == "baseline" {
					bin = base
				}
				run, _, out, err := recordFor(o, bin, t.pid, 2*time.Second, window, 0)
				os.Remove(out)
				if err != nil {
					t.stop()
					return nil, fmt.Errorf("%s at depth %d: %w", who, d, err)
				}
				run.who, run.depth = who, d
				if run.fixed, err = fixedCost(o, bin, t, window); err != nil {
					t.stop()
					return nil, fmt.Errorf("%s's fixed cost at depth %d: %w", who, d, err)
				}
				res.depths = append(res.depths, run)
				st, pr := run.perSample()
				fmt.Fprintf(os.Stderr, "bench:   depth %3d %-8s: %d samples in %v, %.2f µs/sample (%.2f by the scheduler clock), fixed %v/s, net %.2f µs/sample\n",
					d, who, run.samples, run.win.Round(time.Second), st, pr, run.fixed, run.netPerSample())
			}
		}
		t.stop()
	}

	if _, err := os.Stat(o.guest); err != nil {
		return nil, fmt.Errorf("the real guest: %w (make targets builds it and fetches CRuby)", err)
	}
	args := []string{"-threads", "2", "-nest", strconv.Itoa(longNest)}
	if cache := filepath.Join(filepath.Dir(filepath.Dir(o.guest)), "cache"); dirExists(cache) {
		args = append(args, "-cache", cache)
	}
	g, err := startTargetWithin(15*time.Minute, "guest", o.guest, args...)
	if err != nil {
		return nil, err
	}
	defer g.stop()
	every := 5 * time.Second
	baseWin, longWin := 2*time.Minute, o.longFor
	if o.quick {
		every, baseWin = 2*time.Second, 20*time.Second
	}
	run, pts, out, err := recordFor(o, base, g.pid, 10*time.Second, baseWin, every)
	os.Remove(out)
	if err != nil {
		return nil, fmt.Errorf("baseline on the guest: %w", err)
	}
	run.who = "baseline"
	if run.fixed, err = fixedCost(o, base, g, 15*time.Second); err != nil {
		return nil, fmt.Errorf("baseline's fixed cost on the guest: %w", err)
	}
	res.guestBase, res.baseSeries = run, pts
	st, _ := run.perSample()
	fmt.Fprintf(os.Stderr, "bench:   guest baseline: %d samples, %.2f µs/sample, RSS %d → %d KiB\n", run.samples, st, pts[0].rss, pts[len(pts)-1].rss)

	// The long run: its CPU per sample is taken after the first 2
	// minutes, as its flatness is, when its caches and tables are warm.
	settle := 2 * time.Minute
	if o.quick {
		settle = 10 * time.Second
	}
	run, pts, out, err = recordFor(o, o.wasmtrace, g.pid, settle, longWin-settle, every)
	if err != nil {
		return nil, fmt.Errorf("the long recording: %w", err)
	}
	defer os.Remove(out)
	run.who = "now"
	if run.fixed, err = fixedCost(o, o.wasmtrace, g, 15*time.Second); err != nil {
		return nil, fmt.Errorf("the fixed cost on the guest: %w", err)
	}
	res.guestNow, res.series = run, pts
	if res.meanDepth, res.distinct, err = foldedShape(out); err != nil {
		return nil, err
	}
	st, _ = run.perSample()
	fmt.Fprintf(os.Stderr, "bench:   guest now: %d samples, %.2f µs/sample, RSS %d → %d KiB, %.1f frames per sample, %d distinct stacks\n",
		run.samples, st, pts[0].rss, pts[len(pts)-1].rss, res.meanDepth, res.distinct)
	return res, nil
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// foldedShape is the mean number of frames per sample and the number of
// distinct stacks of a folded profile.
func foldedShape(path string) (mean float64, distinct int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	var frames, samples int64
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		i := bytes.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		n, err := strconv.ParseInt(string(line[i+1:]), 10, 64)
		if err != nil {
			continue
		}
		distinct++
		samples += n
		frames += n * int64(bytes.Count(line[:i], []byte(";"))+1)
	}
	if samples == 0 {
		return 0, distinct, fmt.Errorf("no samples in %s", path)
	}
	return float64(frames) / float64(samples), distinct, nil
}

// flatness is the largest deviation of RSS from its median after from,
// relative to that median, and the median.
func flatness(pts []rssPoint, from time.Duration) (dev float64, med float64) {
	var xs []float64
	for _, p := range pts {
		if p.at >= from {
			xs = append(xs, float64(p.rss))
		}
	}
	if len(xs) == 0 {
		return 0, 0
	}
	med = median(xs)
	lo, hi := minMax(xs)
	return max(hi-med, med-lo) / med, med
}

// slope is the least-squares growth of RSS in KiB per second after from.
func slope(pts []rssPoint, from time.Duration) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, p := range pts {
		if p.at < from {
			continue
		}
		x, y := p.at.Seconds(), float64(p.rss)
		n, sx, sy, sxx, sxy = n+1, sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	if n < 2 || n*sxx == sx*sx {
		return 0
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

func (r *report) summaryLong(p printer) {
	l := r.long
	for _, d := range depths {
		now, base := l.depthPerSample(d, "now", false), l.depthPerSample(d, "baseline", false)
		nn, nb := l.depthPerSample(d, "now", true), l.depthPerSample(d, "baseline", true)
		p("| wasmtrace userspace CPU per sample, %d Wasm frames (-F %d; /proc/PID/stat); net of the fixed cost per second | ≤ 3 µs | %.2f µs (baseline %.2f µs); net %.2f µs (baseline %.2f µs) | %s |\n",
			d, longHz, now, base, nn, nb, verdict(now <= 3))
	}
	now, _ := l.guestNow.perSample()
	base, _ := l.guestBase.perSample()
	p("| wasmtrace userspace CPU per sample, real guest (CRuby, 2 threads, %.0f frames per sample); net of the fixed cost | ≤ 3 µs | %.2f µs (baseline %.2f µs); net %.2f µs (baseline %.2f µs) | %s |\n",
		l.meanDepth, now, base, l.guestNow.netPerSample(), l.guestBase.netPerSample(), verdict(now <= 3))
	dev, med := flatness(l.series, 2*time.Minute)
	last := l.series[len(l.series)-1]
	p("| wasmtrace RSS, real guest at -F %d over %s: flat within 10%% after 2 min | flat | max deviation %.1f%% from the median %.1f MiB | %s |\n",
		longHz, last.at.Round(time.Second), 100*dev, med/1024, verdict(dev <= 0.10))
	hour := (float64(last.rss) + slope(l.series, 2*time.Minute)*(time.Hour-last.at).Seconds()) / 1024
	p("| wasmtrace RSS of a 1-hour recording (extrapolated from the flat curve) | < 150 MB | %.1f MiB | %s |\n",
		hour, verdict(dev <= 0.10 && hour*1.048576 < 150))
}

// depthPerSample is the median µs per sample of who's runs at depth.
func (l *longResult) depthPerSample(depth int, who string, net bool) float64 {
	var xs []float64
	for _, r := range l.depths {
		if r.depth == depth && r.who == who {
			st, _ := r.perSample()
			if net {
				st = r.netPerSample()
			}
			xs = append(xs, st)
		}
	}
	return median(xs)
}

func (r *report) sectionLong(p printer, o *options) {
	l := r.long
	p("## 9. A long recording of a real guest\n\n")
	p("The baseline is wasmtrace at %s (`%s`); *now* is `%s`. Userspace CPU per sample is wasmtrace's utime+stime from /proc/PID/stat "+
		"(and, in brackets, its scheduler CPU clock) over a window, divided by the target samples its BPF program sent in that window "+
		"(its own counter): all of wasmtrace's CPU, reading the ring buffer included, per sample. The BPF program's own time is charged to the sampled thread, not to wasmtrace (part 1).\n\n",
		l.baselineFrom, filepath.Base(l.baseline), filepath.Base(o.wasmtrace))
	p("### CPU per sample by depth\n\n")
	p("`-scenario deep -depth N` of %s (one busy thread, the same stack every sample), -F %d, windows of %v after 2 s, the two wasmtraces interleaved.\n\n",
		filepath.Base(o.target), longHz, l.depths[0].win.Round(time.Second))
	p("*Fixed* is wasmtrace's CPU per second (scheduler clock) in a run of its own with the target stopped (SIGSTOP, after the first sample): what it spends whatever the samples, " +
		"chiefly rescanning the target's modules every 200 ms; *net* subtracts it from the scheduler clock's figure: the cost of one more sample.\n\n")
	p("| Wasm frames | who | samples in the window | µs per sample: /proc/PID/stat [scheduler clock] | fixed, ms of CPU per s | net µs per sample | max RSS |\n|---|---|---|---|---|---|---|\n")
	for _, d := range l.depths {
		st, pr := d.perSample()
		p("| %d | %s | %d | **%.2f** [%.2f] | %.2f | %.2f | %.1f MiB |\n", d.depth, d.who, d.samples, st, pr, float64(d.fixed)/1e6, d.netPerSample(), float64(d.rss)/1024)
	}
	p("\n### The real guest\n\n")
	p("`%s -threads 2` running CRuby 3.4 for WASI (`@ruby/3.4-wasm-wasi`, 17,825 functions) with the guest's default work two block levels down "+
		"(testdata/guest -nest 2): %.1f Wasm frames per sample on average and %d distinct stacks in the long recording's folded output. "+
		"Both wasmtraces record it at -F %d, one after the other, the baseline for %v (RSS read every %v), now for %s (after its first 2 minutes, CPU per sample is measured over the rest).\n\n",
		filepath.Base(l.guest), l.meanDepth, l.distinct, longHz, l.baseSeries[len(l.baseSeries)-1].at.Round(time.Second),
		l.series[min(1, len(l.series)-1)].at.Round(time.Second), l.series[len(l.series)-1].at.Round(time.Second))
	for _, g := range []cpuRun{l.guestBase, l.guestNow} {
		st, pr := g.perSample()
		p("- %s: %d samples in %v (%.0f/s), **%.2f µs per sample** [%.2f], fixed %.2f ms of CPU per s, net %.2f µs per sample, %d lost, %d unwind failures, max RSS %.1f MiB.\n",
			g.who, g.samples, g.win.Round(time.Second), float64(g.samples)/g.win.Seconds(), st, pr, float64(g.fixed)/1e6, g.netPerSample(),
			g.sum.lost, g.sum.failures, float64(g.rss)/1024)
	}
	p("\nRSS against time (MiB; since the first sample):\n\n")
	p("| time | baseline | now | now: samples so far |\n|---|---|---|---|\n")
	for i, pt := range l.series {
		b := ""
		if i < len(l.baseSeries) {
			b = fmt.Sprintf("%.1f", float64(l.baseSeries[i].rss)/1024)
		}
		if i%6 == 0 || i == len(l.series)-1 || i < len(l.baseSeries) && i%3 == 0 {
			p("| %s | %s | %.1f | %d |\n", pt.at.Round(time.Second), b, float64(pt.rss)/1024, pt.samples-l.series[0].samples)
		}
	}
	dev, med := flatness(l.series, 2*time.Minute)
	p("\nAfter 2 minutes: median %.1f MiB, largest deviation %.1f%%, least-squares growth %.1f KiB/min (baseline: %.0f KiB/min over its run).\n\n",
		med/1024, 100*dev, 60*slope(l.series, 2*time.Minute), 60*slope(l.baseSeries, 0))
}
