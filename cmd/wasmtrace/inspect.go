package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/wasmtrace/wasmtrace/record"
	"github.com/wasmtrace/wasmtrace/symbolize"
)

func cmdInspect(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	pid := fs.Int("p", 0, "`PID` of the process to inspect (required)")
	verbose := fs.Bool("v", false, "list every function of every module")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: wasmtrace inspect -p PID [-v]

Shows what wasmtrace found in the process: the Wasmtime version and
generation, where its per-thread state lives and how each offset was
established, and the compiled modules in memory. Reads only; the process is
not stopped.

`)
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *pid == 0 {
		fmt.Fprintln(stderr, "wasmtrace inspect: -p PID is required")
		return errUsage
	}
	t, err := record.Prepare(*pid, newLogger(stderr, false))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pid %d (%s), %s\n", t.PID, t.Comm, t.Arch.Name)
	fmt.Fprint(stdout, t.Layout.String())
	mods := t.Syms.Modules()
	fmt.Fprintf(stdout, "%d compiled modules in memory\n", len(mods))
	for _, m := range mods {
		n, tramp := 0, 0
		for _, f := range m.Funcs {
			switch f.Kind {
			case symbolize.WasmFunction:
				n++
			case symbolize.Trampoline:
				tramp++
			}
		}
		name := m.Name
		if name == "" {
			name = "(unnamed)"
		}
		fmt.Fprintf(stdout, "  %#x  text %#x-%#x  %-16s %d functions, %d trampolines\n", m.Base, m.TextStart, m.TextEnd, name, n, tramp)
		if *verbose {
			for _, f := range m.Funcs {
				fmt.Fprintf(stdout, "      %#x-%#x  %-10s %s\n", f.Start, f.End, f.Kind, f.Name)
			}
		}
	}
	return nil
}
