package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/wasmtrace/wasmtrace/profile"
	"github.com/wasmtrace/wasmtrace/record"
)

func cmdRecord(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	pid := fs.Int("p", 0, "`PID` of the process to trace")
	var all bool
	fs.BoolVar(&all, "a", false, "trace every process that runs Wasmtime, including ones started later")
	fs.BoolVar(&all, "all", false, "same as -a")
	hz := fs.Int("F", 99, "sampling frequency in `HZ` per CPU")
	var dur time.Duration
	fs.Var(durationFlag{&dur}, "d", "stop after `DURATION` (5s, 1m); default: until Ctrl-C")
	out := fs.String("o", "-", "write the profile to `FILE` (- for stdout)")
	format := fs.String("format", "", "`FORMAT` of the profile: text, folded, pprof, svg, speedscope\n(default: from the -o file name; text on stdout)")
	threads := fs.Bool("threads", false, "split the profile by thread: root each stack at its thread (tid and name);\none speedscope profile per thread")
	maxStacks := fs.Int("max-stacks", 0, "keep at most `N` distinct stacks: beyond, the rarest are folded into their\ncallers as [folded], and the count folded is reported (default: unlimited)")
	verbose := fs.Bool("v", false, "log what wasmtrace does on stderr")
	var verifyFrac float64
	fs.Var(verifyFlag{&verifyFrac}, "verify", "check the kernel's walk of `FRACTION` of the samples (all if bare) against\nthe Go walker; differences make the exit status 4 (see above)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: wasmtrace record -p PID|-a [-F HZ] [-d DURATION] [-o FILE] [--format FORMAT] [--threads] [--max-stacks N] [--verify[=FRACTION]]

Samples the process's threads on every CPU and prints where its WebAssembly
spends CPU. Stacks list Wasm functions; [host] marks host code (on top: a host
function Wasm called; in between: host code that called back into Wasm);
[no Wasm] counts samples with no Wasm on the stack. With -a, every process
that runs Wasmtime is traced, including processes started (or compiling
their first module) later and those in other PID namespaces (containers);
stacks are rooted at "pid N (name)", N being the pid as seen from wasmtrace.

Formats (--format FORMAT, or chosen by the -o file name; stdout gets text):
  text        top functions by self time
              sudo wasmtrace record -p 1234 -d 10s
  folded      folded stacks (*.folded), for flamegraph.pl and inferno
              sudo wasmtrace record -p 1234 -d 10s -o wasm.folded
  pprof       gzipped profile.proto (*.pb.gz, *.pprof), labels pid, tid, thread
              sudo wasmtrace record -p 1234 -d 10s -o wasm.pb.gz && go tool pprof -http=: wasm.pb.gz
  svg         interactive flame graph (*.svg): click to zoom, search; open in a browser
              sudo wasmtrace record -p 1234 -d 10s -o wasm.svg
  speedscope  speedscope JSON (*.speedscope.json), open in https://www.speedscope.app
              sudo wasmtrace record -p 1234 -d 10s -o wasm.speedscope.json

`)
		fmt.Fprint(fs.Output(), verifyHelp+"\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if (*pid == 0) == !all {
		fmt.Fprintln(stderr, "wasmtrace record: give either -p PID or -a")
		return errUsage
	}
	f, err := profile.ChooseFormat(*format, *out)
	if err != nil {
		fmt.Fprintf(stderr, "wasmtrace record: %v\n", err)
		return errUsage
	}
	if *hz < 1 || *hz > 10000 {
		fmt.Fprintf(stderr, "wasmtrace record: -F %d is out of range 1..10000\n", *hz)
		return errUsage
	}
	if *maxStacks < 0 {
		fmt.Fprintf(stderr, "wasmtrace record: --max-stacks %d must not be negative\n", *maxStacks)
		return errUsage
	}
	log := newLogger(stderr, *verbose)

	var t *record.Target
	var opening *record.Opening
	if !all {
		// The kernel walker loads while the target is examined.
		opening = record.OpenAsync(*hz)
		defer opening.Close()
		if t, err = record.Prepare(*pid, log); err != nil {
			return err
		}
	}
	// Open the output before sampling, so a bad path fails at once.
	w, closeOut, err := openOutput(*out, stdout)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first Ctrl-C, a second one ends wasmtrace at once.
		<-ctx.Done()
		stop()
	}()
	opt := record.Options{PID: *pid, Hz: *hz, Duration: dur, Log: log, Verify: verifyFrac, Opening: opening, MaxStacks: *maxStacks}
	if isTerminal(stderr) {
		opt.Tick = statusLine(stderr)
	}
	var p *profile.Profile
	var st *record.Stats
	var runErr error
	if all {
		fmt.Fprintf(stderr, "wasmtrace: sampling every Wasmtime process at %d Hz%s\n", *hz, untilText(dur))
		p, st, runErr = record.RunAll(ctx, opt)
	} else {
		fmt.Fprintf(stderr, "wasmtrace: sampling pid %d (%s, Wasmtime %s) at %d Hz%s\n",
			t.PID, t.Comm, t.Layout.Version, *hz, untilText(dur))
		p, st, runErr = record.Run(ctx, t, opt)
	}
	if opt.Tick != nil {
		fmt.Fprint(stderr, "\r\x1b[K") // clear the status line
	}
	if p == nil {
		closeOut()
		return runErr
	}
	p.ByThread = *threads
	p.ByProcess = all
	werr := p.Write(w, f)
	if cerr := closeOut(); werr == nil {
		werr = cerr
	}
	summarize(stderr, p, st)
	if werr != nil {
		return fmt.Errorf("write profile to %s: %w", *out, werr)
	}
	if err := reportVerify(stderr, st.Verify, t); err != nil {
		return err
	}
	if runErr != nil {
		if errors.Is(runErr, record.ErrTargetExited) {
			return &exitError{code: 3, err: fmt.Errorf("%w; the %d samples taken before are written", runErr, p.Total())}
		}
		return runErr
	}
	return nil
}

func untilText(d time.Duration) string {
	if d == 0 {
		return "; Ctrl-C to stop"
	}
	return " for " + d.String()
}

// summarize reports the recording's quality on stderr.
func summarize(stderr io.Writer, p *profile.Profile, st *record.Stats) {
	failed := 0
	for _, n := range st.Stops {
		failed += n
	}
	fmt.Fprintf(stderr, "wasmtrace: %d samples, %d with Wasm on the stack, %d unwind failures, %d lost\n",
		p.Total(), p.WithWasm(), failed, st.Lost)
	for why, n := range st.Stops {
		fmt.Fprintf(stderr, "wasmtrace:   %d samples: %s\n", n, why)
	}
	if stacks, samples := p.Folded(); stacks > 0 {
		fmt.Fprintf(stderr, "wasmtrace: --max-stacks %d: folded the rarest stacks %d times (%d samples) into their callers as %s\n",
			p.MaxStacks, stacks, samples, profile.FoldedMarker)
	}
}

func openOutput(path string, stdout io.Writer) (io.Writer, func() error, error) {
	if path == "-" || path == "" {
		return stdout, func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("create output file: %w", err)
	}
	return f, f.Close, nil
}

func newLogger(stderr io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	// Warnings are read by people, not parsed: no timestamp unless -v.
	dropTime := func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 && !verbose {
			return slog.Attr{}
		}
		return a
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: dropTime}))
}

// statusLine returns a Tick that keeps one line on a terminal up to date.
func statusLine(w io.Writer) func(*profile.Profile, *record.Stats) {
	return func(p *profile.Profile, st *record.Stats) {
		fmt.Fprintf(w, "\r\x1b[K%5.0fs  %d samples  %d with Wasm  %d processes  %d lost",
			p.Duration.Seconds(), p.Total(), p.WithWasm(), st.Processes, st.Lost)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
