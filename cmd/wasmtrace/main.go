// Command wasmtrace samples the WebAssembly stacks of a running process that
// embeds Wasmtime, using eBPF, without restarting it or enabling anything in
// it.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

const usage = `wasmtrace samples where a running Wasmtime process spends CPU, by Wasm function.

Usage:
  wasmtrace -p PID [flags]          same as "wasmtrace record -p PID"
  wasmtrace record -p PID [flags]   sample stacks and write a profile
  wasmtrace record -a [flags]       the same for every process that runs Wasmtime
  wasmtrace top -p PID              a live view, refreshed every second
  wasmtrace inspect -p PID          show how wasmtrace sees the process's Wasmtime
  wasmtrace dump -p PID             print every thread's Wasm stack now (pauses each thread briefly)
  wasmtrace trace -p PID EVENT...   print the Wasm stack of each trap, system call, block or uprobe
  wasmtrace agent [flags]           profile every Wasmtime process continuously, export OTLP profiles
  wasmtrace version

Run "wasmtrace COMMAND -h" for the flags of a command.

Examples:
  sudo wasmtrace -p 1234                     top functions, until Ctrl-C
  sudo wasmtrace -p 1234 -d 10s -o wasm.svg  interactive flame graph
  sudo wasmtrace -p 1234 -d 10s -o wasm.pb.gz && go tool pprof -top wasm.pb.gz
  sudo wasmtrace -a -d 30s -o all.folded     every Wasmtime process on the host
  sudo wasmtrace top -p 1234                 live view
  sudo wasmtrace dump -p 1234                every thread's Wasm stack, now
  sudo wasmtrace trace -p 1234 trap syscall:write   Wasm stacks of traps and writes
`

// version is set by the linker for releases.
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries an exit status for errors that are not failures of
// wasmtrace itself.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "record"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "record":
		err = cmdRecord(args, stdout, stderr)
	case "top":
		err = cmdTop(args, stdout, stderr)
	case "inspect":
		err = cmdInspect(args, stdout, stderr)
	case "dump":
		err = cmdDump(args, stdout, stderr)
	case "trace":
		err = cmdTrace(args, stdout, stderr)
	case "agent":
		err = cmdAgent(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "wasmtrace", version)
	case "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "wasmtrace: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, errHelp) {
		return 0
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	fmt.Fprintf(stderr, "wasmtrace: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}
