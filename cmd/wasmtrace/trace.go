package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/wasmtrace/wasmtrace/loader"
	"github.com/wasmtrace/wasmtrace/profile"
	"github.com/wasmtrace/wasmtrace/record"
	"github.com/wasmtrace/wasmtrace/trace"
)

func cmdTrace(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	pid := fs.Int("p", 0, "`PID` of the process to trace")
	var dur time.Duration
	fs.Var(durationFlag{&dur}, "d", "stop after `DURATION` (5s, 1m); default: until Ctrl-C")
	summary := fs.Bool("summary", false, "print no event; at the end, aggregate the events by stack\n(offcpu weighted by microseconds blocked) and write them like record")
	out := fs.String("o", "-", "with --summary, write the aggregate to `FILE` (- for stdout)")
	format := fs.String("format", "", "with --summary, the `FORMAT`: text, folded, pprof, svg, speedscope\n(default: from the -o file name; text on stdout)")
	minBlock := 1 * time.Millisecond
	fs.Var(durationFlag{&minBlock}, "min-block", "offcpu: report blocking of at least `DURATION`")
	maxRate := fs.Int("max-rate", 1000, "send at most `N` events per second (0: no limit); the rest are counted")
	function := fs.String("function", "", "keep only events whose Wasm stack has a function matching `REGEX`")
	verbose := fs.Bool("v", false, "log what wasmtrace does on stderr")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: wasmtrace trace -p PID [flags] EVENT...

Prints one line per event as it happens: time, pid, tid, the event and its
arguments, then "stack=" and the thread's Wasm stack, root first, [host]
marking host code (on top: the host function Wasm called; in between: host
code that called back into Wasm). With --summary, counts the events by stack
instead and writes them in any format of record.

`+trace.EventHelp+`

Examples:
  sudo wasmtrace trace -p 1234 trap
  sudo wasmtrace trace -p 1234 syscall:write syscall:openat
  sudo wasmtrace trace -p 1234 --summary -d 10s -o offcpu.svg offcpu
  sudo wasmtrace trace -p 1234 uprobe:/usr/lib/x86_64-linux-gnu/libc.so.6:malloc

Flags:
`)
		fs.PrintDefaults()
	}
	fs.SetOutput(stderr)
	// Flags and events may come in any order.
	var events []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return errHelp
			}
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		events = append(events, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if *pid == 0 {
		fmt.Fprintln(stderr, "wasmtrace trace: give -p PID")
		return errUsage
	}
	specs, err := trace.ParseEvents(events)
	if err != nil {
		fmt.Fprintf(stderr, "wasmtrace trace: %v\n", err)
		return errUsage
	}
	if *maxRate < 0 {
		fmt.Fprintln(stderr, "wasmtrace trace: --max-rate must not be negative")
		return errUsage
	}
	var re *regexp.Regexp
	if *function != "" {
		if re, err = regexp.Compile(*function); err != nil {
			fmt.Fprintf(stderr, "wasmtrace trace: --function: %v\n", err)
			return errUsage
		}
	}
	f, err := profile.ChooseFormat(*format, *out)
	if err != nil {
		fmt.Fprintf(stderr, "wasmtrace trace: %v\n", err)
		return errUsage
	}
	log := newLogger(stderr, *verbose)
	t, err := record.Prepare(*pid, log)
	if err != nil {
		return err
	}
	w, closeOut := stdout, func() error { return nil }
	if *summary {
		if w, closeOut, err = openOutput(*out, stdout); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.String()
	}
	opt := trace.Options{
		Events: specs, MinBlock: minBlock, MaxRate: *maxRate, Function: re, Duration: dur, Log: log,
		Attached: func() {
			fmt.Fprintf(stderr, "wasmtrace: tracing %s in pid %d (%s, Wasmtime %s)%s\n",
				strings.Join(names, " "), t.PID, t.Comm, t.Layout.Version, untilText(dur))
		},
	}
	if !*summary {
		opt.OnEvent = func(e trace.Event) {
			args := ""
			if e.Args != "" {
				args = " " + e.Args
			}
			fmt.Fprintf(stdout, "%s pid=%d tid=%d %s%s stack=%s\n",
				e.Time.Format("15:04:05.000000"), e.Stack.PID, e.Stack.TID, e.Name, args, e.Folded())
		}
	}
	p, st, runErr := trace.Run(ctx, t, opt)
	if p == nil {
		closeOut()
		return runErr
	}
	var werr error
	if *summary {
		for _, e := range specs {
			if e.Kind == loader.EventOffCPU {
				fmt.Fprintln(stderr, "wasmtrace: in the summary each event counts 1, and offcpu one per microsecond blocked")
			}
		}
		werr = p.Write(w, f)
		if cerr := closeOut(); werr == nil {
			werr = cerr
		}
	}
	failed := 0
	for _, n := range st.Unwind.Stops {
		failed += n
	}
	fmt.Fprintf(stderr, "wasmtrace: %d events in %.1fs, %d shown, %d dropped over --max-rate, %d lost, %d unwind failures\n",
		st.Events, st.Duration.Seconds(), st.Kept, st.Dropped, st.Lost, failed)
	for why, n := range st.Unwind.Stops {
		fmt.Fprintf(stderr, "wasmtrace:   %d events: %s\n", n, why)
	}
	if werr != nil {
		return fmt.Errorf("write summary to %s: %w", *out, werr)
	}
	if runErr != nil {
		if errors.Is(runErr, record.ErrTargetExited) {
			return &exitError{code: 3, err: runErr}
		}
		return runErr
	}
	return nil
}
