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

	"github.com/wasmtrace/wasmtrace/profile"
	"github.com/wasmtrace/wasmtrace/record"
)

func cmdRecord(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	pid := fs.Int("p", 0, "`PID` of the process to trace (required)")
	hz := fs.Int("F", 99, "sampling frequency in `HZ` per CPU")
	var dur time.Duration
	fs.Var(durationFlag{&dur}, "d", "stop after `DURATION` (5s, 1m); default: until Ctrl-C")
	out := fs.String("o", "-", "write the profile to `FILE` (- for stdout)")
	format := fs.String("format", "text", "`FORMAT` of the profile: text (top functions) or folded (flame graph input)")
	threads := fs.Bool("threads", false, "root each stack at its thread (tid and name)")
	verbose := fs.Bool("v", false, "log what wasmtrace does on stderr")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: wasmtrace record -p PID [-F HZ] [-d DURATION] [-o FILE] [--format text|folded] [--threads]

Samples the process's threads on every CPU and prints where its WebAssembly
spends CPU. Stacks list Wasm functions; [host] marks host code (on top: a host
function Wasm called; in between: host code that called back into Wasm);
[no Wasm] counts samples with no Wasm on the stack.

`)
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *pid == 0 {
		fmt.Fprintln(stderr, "wasmtrace record: -p PID is required")
		return errUsage
	}
	if *format != "text" && *format != "folded" {
		fmt.Fprintf(stderr, "wasmtrace record: unknown format %q (text, folded)\n", *format)
		return errUsage
	}
	if *hz < 1 || *hz > 10000 {
		fmt.Fprintf(stderr, "wasmtrace record: -F %d is out of range 1..10000\n", *hz)
		return errUsage
	}
	log := newLogger(stderr, *verbose)

	t, err := record.Prepare(*pid, log)
	if err != nil {
		return err
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
	fmt.Fprintf(stderr, "wasmtrace: sampling pid %d (%s, Wasmtime %s) at %d Hz%s\n",
		t.PID, t.Comm, t.Layout.Version, *hz, untilText(dur))
	p, st, runErr := record.Run(ctx, t, record.Options{PID: *pid, Hz: *hz, Duration: dur, Threads: *threads, Log: log})
	if p == nil {
		closeOut()
		return runErr
	}
	var werr error
	switch *format {
	case "folded":
		werr = p.WriteFolded(w)
	default:
		werr = p.WriteTop(w, 25)
	}
	if cerr := closeOut(); werr == nil {
		werr = cerr
	}
	summarize(stderr, p, st)
	if werr != nil {
		return fmt.Errorf("write profile to %s: %w", *out, werr)
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
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}
