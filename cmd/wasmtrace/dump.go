package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/wasmtrace/wasmtrace/dump"
	"github.com/wasmtrace/wasmtrace/record"
	"github.com/wasmtrace/wasmtrace/symbolize"
)

func cmdDump(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dump", flag.ContinueOnError)
	pid := fs.Int("p", 0, "`PID` of the process (required)")
	var verbose bool
	fs.BoolVar(&verbose, "verbose", false, "say how long each thread was paused and how many reads its walk made")
	fs.BoolVar(&verbose, "v", false, "same as --verbose")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: wasmtrace dump -p PID [--verbose]

Prints the current WebAssembly stack of every thread of the process,
innermost frame first, with thread id and name. [host] marks host code: at
the top, a host function Wasm called; in between, host code that called back
into Wasm. A thread with no Wasm on its stack shows (no Wasm).

How the stacks are read: one thread at a time, wasmtrace attaches to the
thread with ptrace (PTRACE_SEIZE), stops it (PTRACE_INTERRUPT), reads its
registers and thread pointer (PTRACE_GETREGS: rip, rbp, rsp, fs_base), walks
its Wasm frames with the reference walker, reading the stack through
process_vm_readv, and detaches at once (PTRACE_DETACH), handing back any
signal that arrived meanwhile. Each thread is therefore paused briefly
(typically well under a millisecond; --verbose prints each pause); the other
threads keep running. No thread is left stopped or traced, whatever fails.
Needs root (or CAP_SYS_PTRACE); fails for threads already traced by a
debugger. Names come from the compiled modules in the process's memory.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *pid == 0 {
		fmt.Fprintln(stderr, "wasmtrace dump: -p PID is required")
		return errUsage
	}
	t, err := record.Prepare(*pid, newLogger(stderr, false))
	if err != nil {
		return err
	}
	ranges := t.Syms.TextRanges()
	inWasm := func(pc uint64) bool {
		for _, r := range ranges {
			if pc >= r[0] && pc < r[1] {
				return true
			}
		}
		return false
	}
	start := time.Now()
	threads, err := dump.Take(t.PID, dump.Options{Layout: t.Layout, Arch: t.Arch, Stacks: t.Stacks, InWasm: inWasm})
	if err != nil {
		return err
	}
	took := time.Since(start)
	// Modules compiled since Prepare: look again before naming.
	if _, err := t.Syms.Refresh(); err != nil {
		newLogger(stderr, verbose).Debug("rescan modules", "err", err)
	}
	fmt.Fprintf(stdout, "pid %d (%s), Wasmtime %s, %d threads\n", t.PID, t.Comm, t.Layout.Version, len(threads))
	name := func(pc uint64) (string, bool, bool) {
		f, _, ok := t.Syms.Lookup(pc)
		if !ok {
			return "", false, false
		}
		return f.Name, f.Kind == symbolize.Trampoline, true
	}
	if err := dump.Write(stdout, threads, name, verbose); err != nil {
		return err
	}
	if verbose {
		var longest, total time.Duration
		n := 0
		for _, th := range threads {
			if th.Pause > 0 {
				n++
				total += th.Pause
				longest = max(longest, th.Pause)
			}
		}
		if n > 0 {
			fmt.Fprintf(stderr, "wasmtrace dump: paused %d threads one at a time, %s on average, %s at most; %s in all\n",
				n, (total / time.Duration(n)).Round(time.Microsecond), longest.Round(time.Microsecond), took.Round(time.Microsecond))
		}
	}
	return nil
}
