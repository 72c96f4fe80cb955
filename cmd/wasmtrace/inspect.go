package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/wasmtrace/wasmtrace/layout"
	"github.com/wasmtrace/wasmtrace/record"
	"github.com/wasmtrace/wasmtrace/symbolize"
)

func cmdInspect(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	pid := fs.Int("p", 0, "`PID` of the process to inspect (required)")
	verbose := fs.Bool("v", false, "show every cross-check in full, and every function of every module")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: wasmtrace inspect -p PID [-v]

Shows what wasmtrace found in the process: the Wasmtime version and
generation, where its per-thread state lives, each offset with the
instruction of the binary it was decoded from and how it was cross-checked
(the table of verified builds, the process's JIT code, its live memory),
and the compiled modules, each with where its code came from: "in
memory" (compiled in process or deserialized from bytes) or "mapped from
FILE" (a precompiled .cwasm file). Reads only; the process is not stopped.

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
	l := t.Layout
	fmt.Fprintf(stdout, "pid %d (%s), %s\n", t.PID, t.Comm, t.Arch.Name)
	version := "Wasmtime " + l.Version
	if l.Version == "" {
		version = "Wasmtime (version unknown)"
	}
	if f := factNamed(l.Provenance, "version"); f != nil {
		version += " (" + f.How + ")"
	}
	if l.Library != "" {
		version += " in the shared library " + l.Library
	}
	fmt.Fprintf(stdout, "%s, %s generation\n", version, l.Generation.Short())
	fmt.Fprintf(stdout, "State: %s.\n", l.Where())

	table := "on"
	if !layout.TableEnabled() {
		table = "off (" + layout.TableEnv + "=off)"
	}
	fmt.Fprintf(stdout, "\nLayout: every offset decoded from the binary's code; table of verified builds %s\n", table)
	// Facts named Struct.field are grouped under their struct.
	group := ""
	for _, f := range l.Provenance {
		if f.What == "version" {
			continue
		}
		name, value := f.What, f.Value
		if st, fl, ok := strings.Cut(f.What, "."); ok {
			if st != group {
				fmt.Fprintf(stdout, "  %s\n", st)
				group = st
			}
			name = "  " + fl
		} else {
			group = ""
		}
		if f.What == "thread-local tag mask" {
			value = "bit 0"
			if f.Value == "0xffffffffffffffff" {
				value = "none"
			}
		}
		fmt.Fprintf(stdout, "  %-30s %-8s %-26s %s\n", name, value, "["+checkTags(f.Check)+"]", f.How)
		if *verbose && f.Check != "" {
			fmt.Fprintf(stdout, "  %-30s %-8s %-26s checks: %s\n", "", "", "", f.Check)
		}
	}
	if len(l.Live) > 0 {
		fmt.Fprintln(stdout, "\nLive checks (memory read, process not stopped)")
		for _, f := range l.Live {
			fmt.Fprintf(stdout, "  %s: %s\n", f.What, f.How)
		}
	}
	// Where threads' own stacks are: what tells them from fiber stacks.
	fmt.Fprintf(stdout, "\nThreads' own stacks: %s\n", t.StacksHow)

	mods := t.Syms.Modules()
	fmt.Fprintf(stdout, "\n%d compiled modules in memory\n", len(mods))
	for _, m := range mods {
		n, tramp, adapters := 0, 0, 0
		for _, f := range m.Funcs {
			switch f.Kind {
			case symbolize.WasmFunction:
				n++
			case symbolize.Trampoline:
				tramp++
			case symbolize.Adapter:
				adapters++
			}
		}
		name := m.Name
		if m.Component != nil {
			name = "component"
		} else if name == "" {
			name = "(unnamed)"
		}
		fmt.Fprintf(stdout, "  %#x  text %#x-%#x  %-16s %s\n", m.Base, m.TextStart, m.TextEnd, name, inspectCounts(m, n, tramp, adapters))
		fmt.Fprintf(stdout, "      code: %s\n", codeOrigin(m))
		if m.Component != nil {
			for _, c := range m.Component.Cores {
				fmt.Fprintf(stdout, "      core module %-4d %-16s %s\n", c.Index, coreModuleName(c), plural(c.Funcs, "function"))
			}
		}
		if *verbose {
			for _, f := range m.Funcs {
				where := ""
				if c := m.CoreOf(f); c != nil {
					where = fmt.Sprintf("core module %d: ", c.Index)
					if export, ok := c.Exports[f.Index]; ok && f.Kind == symbolize.Adapter {
						where += "export " + export + ": "
					}
				}
				fmt.Fprintf(stdout, "      %#x-%#x  %-10s %s%s\n", f.Start, f.End, f.Kind, where, f.Name)
			}
		}
	}
	return nil
}

// codeOrigin says where a module's code came from. Module::new and
// Module::deserialize (and Wasmtime's compilation cache, which
// deserializes what it read) leave byte-identical images in anonymous
// memory: nothing tells them apart.
func codeOrigin(m *symbolize.Module) string {
	if m.File != "" {
		return m.Origin() + " (precompiled, Module::deserialize_file)"
	}
	return m.Origin() + " (compiled in process or deserialized from bytes)"
}

// inspectCounts summarises a module's code: "12 functions, 8
// trampolines", and for a component its core modules and adapters first.
func inspectCounts(m *symbolize.Module, funcs, tramp, adapters int) string {
	s := fmt.Sprintf("%s, %s", plural(funcs, "function"), plural(tramp, "trampoline"))
	if m.Component == nil {
		return s
	}
	s = plural(len(m.Component.Cores), "core module") + ": " + s
	if adapters > 0 {
		s += ", " + plural(adapters, "adapter function")
	}
	return s
}

// coreModuleName is how inspect shows a component's core module.
func coreModuleName(c *symbolize.CoreModule) string {
	switch {
	case c.Adapter:
		return "(fused adapters)"
	case c.Name != "":
		return c.Name
	case !c.Described:
		return "(not described)"
	}
	return "(unnamed)"
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func factNamed(facts []layout.Fact, what string) *layout.Fact {
	for i := range facts {
		if facts[i].What == what {
			return &facts[i]
		}
	}
	return nil
}

// checkTags summarises a fact's cross-checks in a few words.
func checkTags(check string) string {
	var tags []string
	for _, c := range []struct{ has, tag string }{
		{"agrees with decoded from", "code ok"},
		{"not cross-checked", "unchecked"},
		{"table not consulted", "table off"},
		{"no table entry", "not in table"},
		{"table for", "table ok"},
		{"live JIT code agrees", "JIT ok"},
		{"live: ", "live"},
	} {
		if strings.Contains(check, c.has) && !contains(tags, c.tag) {
			tags = append(tags, c.tag)
		}
	}
	if len(tags) == 0 {
		return "-"
	}
	return strings.Join(tags, ", ")
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
