package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/wasmtrace/wasmtrace/profile"
	"github.com/wasmtrace/wasmtrace/record"
)

func cmdTop(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	pid := fs.Int("p", 0, "`PID` of the process to watch (required)")
	hz := fs.Int("F", 99, "sampling frequency in `HZ` per CPU")
	var dur time.Duration
	fs.Var(durationFlag{&dur}, "d", "stop after `DURATION`; default: until q or Ctrl-C")
	maxStacks := fs.Int("max-stacks", 0, "keep at most `N` distinct stacks: beyond, the rarest are folded into their\ncallers as [folded], and the header says how many (default: unlimited)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: wasmtrace top -p PID [-F HZ] [-d DURATION] [--max-stacks N]

A live view of where the process's WebAssembly spends CPU, refreshed every
second: for each function, its share of the last second's samples (SELF%:
as the leaf, TOTAL%: anywhere on the stack) and its CPU time since the
start. Press q or Ctrl-C to quit. Works over ssh; without a terminal it
prints one table per second.

Example:
  sudo wasmtrace top -p 1234

`)
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *pid == 0 {
		fmt.Fprintln(stderr, "wasmtrace top: -p PID is required")
		return errUsage
	}
	if *maxStacks < 0 {
		fmt.Fprintf(stderr, "wasmtrace top: --max-stacks %d must not be negative\n", *maxStacks)
		return errUsage
	}
	opening := record.OpenAsync(*hz)
	defer opening.Close()
	t, err := record.Prepare(*pid, newLogger(stderr, false))
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// In a terminal, read keys raw so q quits without Enter; Ctrl-C then
	// arrives as a byte, not a signal.
	tty := term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd()))
	if tty {
		old, err := term.MakeRaw(int(os.Stdin.Fd()))
		if err == nil {
			defer term.Restore(int(os.Stdin.Fd()), old)
		}
		go func() {
			r := bufio.NewReader(os.Stdin)
			for {
				b, err := r.ReadByte()
				if err != nil || b == 'q' || b == 'Q' || b == 3 {
					cancel()
					return
				}
			}
		}()
		fmt.Fprint(stdout, "\x1b[?1049h\x1b[?25l") // alternate screen, hide cursor
		defer fmt.Fprint(stdout, "\x1b[?25h\x1b[?1049l")
	}

	v := &topView{out: stdout, tty: tty, t: t, hz: *hz, prev: map[string]profile.Func{}}
	_, _, runErr := record.Run(ctx, t, record.Options{PID: *pid, Hz: *hz, Duration: dur, Tick: v.draw, Opening: opening, MaxStacks: *maxStacks})
	return runErr
}

// topView draws one screen per tick: the last interval's shares, and
// cumulative CPU time.
type topView struct {
	out      io.Writer
	tty      bool
	t        *record.Target
	hz       int
	prev     map[string]profile.Func
	prevN    int
	prevLost uint64
}

func (v *topView) draw(p *profile.Profile, st *record.Stats) {
	funcs := p.Funcs()
	window := p.Total() - v.prevN
	type row struct {
		name              string
		self, total       int // last interval
		selfAll, totalAll int
	}
	rows := make([]row, 0, len(funcs))
	for _, f := range funcs {
		pr := v.prev[f.Name]
		rows = append(rows, row{f.Name, f.Self - pr.Self, f.Total - pr.Total, f.Self, f.Total})
	}
	// Most CPU in the last interval first, then since the start.
	sortRows := func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.self != b.self {
			return a.self > b.self
		}
		if a.total != b.total {
			return a.total > b.total
		}
		return a.selfAll > b.selfAll
	}
	sort.Slice(rows, sortRows)

	height := 24
	if v.tty {
		if _, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil && h > 5 {
			height = h
		}
	}
	bw := bufio.NewWriter(v.out)
	nl := "\n"
	if v.tty {
		bw.WriteString("\x1b[H\x1b[2J")
		nl = "\r\n" // raw mode: no newline translation
	}
	secs := func(n int) float64 { return float64(n) / float64(v.hz) }
	fmt.Fprintf(bw, "wasmtrace top: pid %d (%s), Wasmtime %s   %.0fs   %d samples/s   %d lost   q to quit%s",
		v.t.PID, v.t.Comm, v.t.Layout.Version, p.Duration.Seconds(), window, st.Lost-v.prevLost, nl)
	if stacks, samples := p.Folded(); stacks > 0 {
		fmt.Fprintf(bw, "--max-stacks %d: the rarest stacks folded %d times (%d samples) into their callers as %s%s",
			p.MaxStacks, stacks, samples, profile.FoldedMarker, nl)
	}
	fmt.Fprintf(bw, "%s%7s %7s %9s %9s  %s%s", nl, "SELF%", "TOTAL%", "SELF(s)", "TOTAL(s)", "FUNCTION", nl)
	for i, r := range rows {
		if i >= height-4 {
			break
		}
		fmt.Fprintf(bw, "%6.1f%% %6.1f%% %9.2f %9.2f  %s%s",
			share(r.self, window), share(r.total, window), secs(r.selfAll), secs(r.totalAll), r.name, nl)
	}
	if !v.tty {
		bw.WriteString(nl)
	}
	bw.Flush()

	v.prev = make(map[string]profile.Func, len(funcs))
	for _, f := range funcs {
		v.prev[f.Name] = f
	}
	v.prevN = p.Total()
	v.prevLost = st.Lost
}

func share(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}
