// Command bench measures what wasmtrace costs, on this machine, in one run
// (`make bench`, as root):
//
//  1. the BPF program's own time per sample of the target, from the
//     kernel's BPF statistics, at Wasm stack depths 3, 30 and 100;
//  2. the target's slowdown with no tracer, wasmtrace and perf record -g
//     at 99 and 999 Hz, interleaved, as medians of ratios to the baseline;
//  3. wasmtrace's own CPU and memory at 999 Hz, and the highest sample
//     rate it keeps up with without losing samples;
//  4. the time from starting wasmtrace to the first sample of a process
//     with 100 compiled modules;
//  5. the same with 10,000 compiled modules (the target is started once,
//     for parts 5 and 6, and its own start is reported apart);
//  6. the BPF program's time per sample with 10,000 modules against 1, on
//     1-frame stacks, in the same run;
//  7. the anchor for part 1: the kernel's own frame-pointer walk,
//     bpf_get_stack(BPF_F_USER_STACK) (what perf record -g uses), from a
//     small BPF program of the benchmark's own, in part 1's rounds on the
//     same targets at the same depths;
//  8. Go benchmarks of the userspace hot paths (-gobench);
//  9. a long recording of a real guest (CRuby for WASI, testdata/guest):
//     wasmtrace's RSS against time over -long (10 minutes) at 999 Hz, and
//     its userspace CPU per sample at depths 3, 30 and 100 and on the
//     guest, beside a baseline wasmtrace (-baseline, or built from
//     -baseline-rev).
//
// It prints a Markdown report and writes it to -o (bench/results/latest.md).
// The method of each measurement is in the report itself. The test
// targets are testdata/targets (scenarios deep and modules).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

type options struct {
	wasmtrace string
	target    string
	out       string
	repo      string
	tmp       string

	bpfReps   int
	bpfWindow time.Duration
	reps      int
	window    time.Duration
	rates     []int
	rateWin   time.Duration
	firstReps int
	// manyFirstReps are part 5's starts; modReps part 6's repetitions.
	manyFirstReps int
	modReps       int
	goBench       bool
	goTool        string
	parts         string
	quick         bool
	// Part 9.
	guest       string
	baseline    string
	baselineRev string
	longFor     time.Duration
}

func (o *options) part(n byte) bool { return strings.IndexByte(o.parts, n) >= 0 }

func main() {
	var o options
	quick := flag.Bool("quick", false, "a short run with fewer repetitions (to try the benchmark, not for figures)")
	flag.StringVar(&o.wasmtrace, "wasmtrace", "bin/wasmtrace", "the wasmtrace `binary` to measure")
	flag.StringVar(&o.target, "target", "testdata/targets/bin/target-v39", "the test target `binary`")
	flag.StringVar(&o.out, "o", "bench/results/latest.md", "write the report to `FILE` too")
	flag.StringVar(&o.repo, "repo", ".", "the wasmtrace repository (for the Go benchmarks)")
	flag.BoolVar(&o.goBench, "gobench", true, "run the Go benchmarks")
	flag.StringVar(&o.goTool, "go", "go", "the go `command` for the Go benchmarks")
	parts := flag.String("parts", "12345679a", "which `PARTS` to run: 1 BPF cost, 2 slowdown (3 needs it), 3 rates, 4 first sample, "+
		"5 first sample with 10,000 modules, 6 BPF cost with 10,000 modules against 1, 7 bpf_get_stack next to part 1 (runs part 1's rounds), "+
		"9 a long recording of a real guest (RSS against time, CPU per sample), a the agent's cost per traced process")
	only := flag.String("only", "", "run only `PARTS` (as -parts), without the Go benchmarks: -only 9")
	flag.StringVar(&o.guest, "guest", "testdata/guest/bin/guest-v39", "the real guest's embedder `binary` for part 9 (make targets builds it)")
	flag.StringVar(&o.baseline, "baseline", "", "the wasmtrace `binary` part 9 compares with (default: built from -baseline-rev)")
	flag.StringVar(&o.baselineRev, "baseline-rev", "c0dc073", "the `COMMIT` whose wasmtrace part 9 builds as its baseline")
	flag.DurationVar(&o.longFor, "long", 10*time.Minute, "how long part 9 records the real guest (at least 10m for figures)")
	reps := flag.Int("reps", 0, "repetitions of the slowdown runs (default 8; -quick 2)")
	flag.Parse()
	o.parts = *parts
	o.quick = *quick
	if *only != "" {
		o.parts, o.goBench = *only, false
	}

	o.bpfReps, o.bpfWindow = 3, 3*time.Second
	o.reps, o.window = 8, 4*time.Second
	o.rates, o.rateWin = []int{999, 2000, 5000, 10000}, 3*time.Second
	o.firstReps = 5
	o.manyFirstReps, o.modReps = 3, 8
	if *quick {
		o.bpfReps, o.bpfWindow = 1, time.Second
		o.reps, o.window = 2, 1500*time.Millisecond
		o.rates, o.rateWin = []int{999, 10000}, time.Second
		o.firstReps = 2
		o.manyFirstReps, o.modReps = 1, 2
	}
	if *reps > 0 {
		o.reps = *reps
	}
	if err := run(&o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run(o *options) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (BPF, perf events, other processes' memory)")
	}
	for _, p := range []*string{&o.wasmtrace, &o.target, &o.repo, &o.guest} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	for _, p := range []string{o.wasmtrace, o.target} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w (make bench builds it)", err)
		}
	}
	tmp, err := os.MkdirTemp("", "wasmtrace-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	o.tmp = tmp
	defer closeCounterMaps()

	rep := &report{started: time.Now(), machine: describeMachine()}
	step := func(name string, f func() error) error {
		t0 := time.Now()
		fmt.Fprintf(os.Stderr, "bench: %s...\n", name)
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(os.Stderr, "bench: %s done in %.0fs\n", name, time.Since(t0).Seconds())
		return nil
	}
	if o.part('1') || o.part('7') {
		name := "BPF cost per sample"
		if o.part('7') {
			name += ", with bpf_get_stack"
		}
		if err := step(name, func() (err error) { rep.bpf, err = measureBPF(o, o.part('7'), o.part('1')); return }); err != nil {
			return err
		}
	}
	if o.part('2') || o.part('3') {
		if err := step("target slowdown", func() (err error) { rep.slow, err = measureSlowdown(o); return }); err != nil {
			return err
		}
	}
	if o.part('3') {
		if err := step("sample rates", func() (err error) { rep.rates, err = measureRates(o); return }); err != nil {
			return err
		}
	}
	if o.part('4') {
		if err := step("time to first sample", func() (err error) { rep.first, err = measureFirstSample(o); return }); err != nil {
			return err
		}
	}
	if o.part('5') || o.part('6') {
		var big *target
		if err := step(fmt.Sprintf("start the %d-module target", manyModules), func() (err error) {
			big, rep.manyStart, err = startManyModules(o)
			return
		}); err != nil {
			return err
		}
		defer big.stop()
		if o.part('5') {
			if err := step(fmt.Sprintf("time to first sample, %d modules", manyModules), func() (err error) {
				rep.firstMany, err = measureFirstSampleMany(o, big)
				return
			}); err != nil {
				return err
			}
		}
		if o.part('6') {
			if err := step(fmt.Sprintf("BPF cost per sample, %d modules against 1", manyModules), func() (err error) {
				rep.many, err = measureManyBPF(o, big)
				return
			}); err != nil {
				return err
			}
		}
		big.stop()
	}
	if o.part('9') {
		if err := step("a long recording of a real guest", func() (err error) { rep.long, err = measureLong(o); return }); err != nil {
			return err
		}
	}
	if o.part('a') {
		if err := step("the agent's cost per traced process", func() (err error) { agentRes, err = measureAgent(o); return }); err != nil {
			return err
		}
	}
	if o.goBench {
		if err := step("Go benchmarks", func() (err error) { rep.goBench, err = runGoBench(o); return }); err != nil {
			return err
		}
	}
	rep.finished = time.Now()
	rep.loadEnd = loadAverage()

	text := rep.markdown(o) + agentMarkdown(agentRes)
	fmt.Print(text)
	if o.out != "" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", o.out)
	}
	return nil
}

// tmpFile is a fresh path in the run's temporary directory.
func (o *options) tmpFile(name string) string {
	f, err := os.CreateTemp(o.tmp, name)
	if err != nil {
		return filepath.Join(o.tmp, name+fmt.Sprint(time.Now().UnixNano()))
	}
	f.Close()
	os.Remove(f.Name())
	return f.Name()
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
