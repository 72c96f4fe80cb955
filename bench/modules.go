package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ---- 5 and 6: 10,000 modules ----

const (
	// manyModules is the size of the large modules target (the most the
	// test target compiles).
	manyModules = 10000
	// modIters makes calls of about 50 ms in the modules targets of parts 5
	// and 6: a module's work is one function, a call is one loop, so nearly
	// every sample lands inside a loop, 1 Wasm frame deep, away from the
	// calls' entries and exits.
	modIters = 35000000
	// manyTimeout bounds the 10,000-module target's start and wasmtrace's
	// start on it.
	manyTimeout = 5 * time.Minute
)

// startManyModules starts the target with 10,000 compiled modules that
// parts 5 and 6 share, and returns how long it took to print "ready".
func startManyModules(o *options) (*target, time.Duration, error) {
	t0 := time.Now()
	t, err := startTargetWithin(manyTimeout, fmt.Sprintf("modules %d", manyModules), o.target,
		"-scenario", "modules", "-modules", strconv.Itoa(manyModules), "-iters", strconv.Itoa(modIters))
	return t, time.Since(t0), err
}

// measureFirstSampleMany is part 4's measurement on the 10,000-module
// target: o.manyFirstReps starts of wasmtrace, the first also step by step.
func measureFirstSampleMany(o *options, t *target) (*firstResult, error) {
	t.resume()
	return firstSampleOn(t, o.wasmtrace, manyModules, modIters, o.manyFirstReps, 1, manyTimeout)
}

// modWindow is one window of part 6: both targets ran (side by side), or
// both were stopped (exit: every run of both programs is an early exit);
// d holds both tracers' statistics over it, by their target's modules.
type modWindow struct {
	rep    int
	exit   bool
	d      map[int]bpfStats
	window time.Duration
}

// modTracer is one of part 6's two wasmtraces, each on its own target.
type modTracer struct {
	modules      int
	startup      time.Duration // exec to wasmtrace's first sample of its target
	sum          summary
	exact, total int64 // samples whose stack is exactly mod_work; all
}

type modResult struct {
	statsVia string
	windows  []modWindow
	tracers  map[int]*modTracer
	exitWin  time.Duration
}

// modConfigs are part 6's two targets, by modules.
var modConfigs = []int{1, manyModules}

// modExitWindow is the length of part 6's windows with both targets stopped.
const modExitWindow = time.Second

// measureManyBPF is part 1's measurement on two modules targets with the
// same calls (1 Wasm frame, about 50 ms each): one with 10,000 modules,
// one with 1. Each has its own wasmtrace -F 999, started once and kept
// for the whole part (wasmtrace takes long to start on 10,000 modules).
// The two targets run side by side, so that what the machine does to one
// window (other processes, the host) it does to both; between those
// windows both are stopped (SIGSTOP) for a shorter window in which every
// run of both programs is an early exit, which gives each program's
// early-exit cost. Repetitions are interleaved in a rotated order.
func measureManyBPF(o *options, big *target) (*modResult, error) {
	via, undo, err := enableBPFStats("part 6")
	if err != nil {
		return nil, err
	}
	defer undo()
	res := &modResult{statsVia: via, tracers: map[int]*modTracer{}, exitWin: modExitWindow}
	one, err := startTarget("modules 1", o.target, "-scenario", "modules", "-modules", "1", "-iters", strconv.Itoa(modIters))
	if err != nil {
		return nil, err
	}
	defer one.stop()
	targets := map[int]*target{1: one, manyModules: big}
	resume := func() {
		for _, t := range targets {
			t.resume()
		}
	}
	pause := func() {
		for _, t := range targets {
			t.pause()
		}
	}
	resume()
	defer resume()
	tracers := map[int]*tracer{}
	outs := map[int]string{}
	defer func() {
		for _, tr := range tracers {
			if tr.cmd.ProcessState == nil {
				tr.stop()
			}
		}
		for _, out := range outs {
			os.Remove(out)
		}
	}()
	for _, n := range []int{manyModules, 1} {
		outs[n] = o.tmpFile("modules.folded")
		tr, err := startWasmtrace(o.wasmtrace, targets[n].pid, bpfHz, outs[n])
		if err != nil {
			return nil, err
		}
		tracers[n] = tr
		if err := tr.waitSampling(false, manyTimeout); err != nil {
			return nil, err
		}
		res.tracers[n] = &modTracer{modules: n, startup: time.Since(tr.t0)}
		fmt.Fprintf(os.Stderr, "bench:   wasmtrace on %d modules: first sample after %v\n", n, res.tracers[n].startup.Round(time.Millisecond))
	}
	pause()
	read := func() (map[int]bpfStats, error) {
		m := map[int]bpfStats{}
		for n, tr := range tracers {
			s, ok, err := readBPF(tr.pid())
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, fmt.Errorf("wasmtrace on %d modules: no BPF program or counters", n)
			}
			m[n] = s
		}
		return m, nil
	}
	for r := 0; r < o.modReps; r++ {
		for _, exit := range rotate([]bool{false, true}, r) {
			win := o.bpfWindow
			if exit {
				win = modExitWindow
			} else {
				resume()
			}
			time.Sleep(300 * time.Millisecond)
			s0, err0 := read()
			t0 := time.Now()
			time.Sleep(win)
			s1, err1 := read()
			w := modWindow{rep: r, exit: exit, d: map[int]bpfStats{}, window: time.Since(t0)}
			pause()
			if err := errors.Join(err0, err1); err != nil {
				return nil, err
			}
			for m := range s1 {
				w.d[m] = s1[m].sub(s0[m])
			}
			res.windows = append(res.windows, w)
			for _, n := range modConfigs {
				d := w.d[n]
				what := "both running"
				if exit {
					what = "both stopped"
				}
				fmt.Fprintf(os.Stderr, "bench:   %d %s, %5d modules: %d runs, %d target samples, %v/run\n",
					r, what, n, d.runCnt, d.samples, d.runTime/time.Duration(max(1, d.runCnt)))
			}
		}
	}
	resume()
	for n, tr := range tracers {
		st, err := tr.stop()
		if err != nil {
			return nil, err
		}
		mt := res.tracers[n]
		if mt.sum, err = parseSummary(st.stderr); err != nil {
			return nil, err
		}
		if mt.exact, mt.total, err = foldedDepth(outs[n], "mod_work", 1); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// exitCost is the median time of an early exit of the tracer of the
// target with modules modules: its time per run in the windows where both
// targets were stopped.
func (r *modResult) exitCost(modules int) time.Duration {
	var xs []float64
	for _, w := range r.windows {
		if d := w.d[modules]; w.exit && d.runCnt > 0 {
			xs = append(xs, float64(d.runTime)/float64(d.runCnt))
		}
	}
	return time.Duration(median(xs))
}

// targetCost is the time per target sample of the tracer of the target
// with modules modules in window w, raw and net of its early exits (as
// bpfResult.targetCost).
func (r *modResult) targetCost(w modWindow, modules int) (raw, net time.Duration) {
	d := w.d[modules]
	if w.exit || d.samples == 0 {
		return 0, 0
	}
	n := float64(d.samples)
	raw = time.Duration(float64(d.runTime) / n)
	net = time.Duration((float64(d.runTime) - (float64(d.runCnt)-n)*float64(r.exitCost(modules))) / n)
	return raw, net
}

// net is the median and range of the net cost per target sample of the
// tracer of the target with modules modules, over the windows with both
// targets running, and the raw median.
func (r *modResult) net(modules int) (med, lo, hi, raw time.Duration) {
	var nets, raws []float64
	for _, w := range r.windows {
		if w.exit {
			continue
		}
		rw, n := r.targetCost(w, modules)
		nets, raws = append(nets, float64(n)), append(raws, float64(rw))
	}
	l, h := minMax(nets)
	return time.Duration(median(nets)), time.Duration(l), time.Duration(h), time.Duration(median(raws))
}

// timing merges the tracer's own-clock histograms of the windows with both
// targets running.
func (r *modResult) timing(modules int) []uint64 {
	var h []uint64
	for _, w := range r.windows {
		d := w.d[modules]
		if w.exit || d.timing == nil {
			continue
		}
		if h == nil {
			h = make([]uint64, len(d.timing))
		}
		for i, v := range d.timing {
			h[i] += v
		}
	}
	return h
}

// pairRatios are the windows' ratios of the 10,000-module target's net
// cost per sample to the 1-module target's, measured at the same time.
func (r *modResult) pairRatios() []float64 {
	var out []float64
	for _, w := range r.windows {
		_, a := r.targetCost(w, manyModules)
		_, b := r.targetCost(w, 1)
		if !w.exit && a > 0 && b > 0 {
			out = append(out, float64(a)/float64(b))
		}
	}
	return out
}

// ratios are the 10,000-module target's cost over the 1-module target's:
// the median of the windows' ratios of net costs (kernel statistics), the
// ratio of the net medians, and the ratio of the own-clock medians.
func (r *modResult) ratios() (paired, net, clock float64) {
	many, _, _, _ := r.net(manyModules)
	one, _, _, _ := r.net(1)
	cm, _, _, _ := histStats(r.timing(manyModules))
	c1, _, _, _ := histStats(r.timing(1))
	return median(r.pairRatios()), float64(many) / float64(one), float64(cm) / float64(c1)
}
