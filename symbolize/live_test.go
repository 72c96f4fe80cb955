package symbolize

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/wasmtrace/wasmtrace/internal/testtarget"
	"github.com/wasmtrace/wasmtrace/proc"
)

// TestLiveTargets runs the test programs of testdata/targets (building
// them when needed) and symbolizes them while they run, including a
// module compiled after the first Refresh.
func TestLiveTargets(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("CI") != "true" {
		t.Skip("needs root (or CI=true) to read another process's memory")
	}
	for _, c := range []struct{ version, engine string }{
		{"v39", "39"}, {"v37", "37.0.0"}, {"v3", "3.0.0"},
	} {
		t.Run(c.version, func(t *testing.T) {
			t.Parallel()
			bin := targetBinary(t, c.version)
			cmd := exec.Command(bin, "-scenario", "late", "-late", "1500ms")
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			lines := readLines(out)
			waitLine(t, lines, "ready")

			pid := cmd.Process.Pid
			s := New(pid, proc.ProcessMemory{PID: pid})
			added, err := s.Refresh()
			if err != nil {
				t.Errorf("Refresh: %v", err)
			}
			main := moduleNamed(s, "wasmtrace_target")
			if main == nil {
				t.Fatalf("module wasmtrace_target not found (added %d)", added)
			}
			if main.Version != c.engine {
				t.Errorf("version %q, want %q", main.Version, c.engine)
			}
			checkNames(t, s, main, "run", "chain_a", "chain_b", "chain_c", "outer", "outer_mid",
				"inner", "inner_leaf", "hb_outer", "hb_mid", "rec_entry", "rec")
			if moduleNamed(s, "wasmtrace_late") != nil {
				t.Errorf("late module found before it was compiled")
			}

			waitLine(t, lines, "late-started")
			added, err = s.Refresh()
			if err != nil {
				t.Errorf("Refresh: %v", err)
			}
			late := moduleNamed(s, "wasmtrace_late")
			if added < 1 || late == nil {
				t.Fatalf("late module not found (added %d)", added)
			}
			checkNames(t, s, late, "late_run", "late_leaf")
			if moduleNamed(s, "wasmtrace_target") != main {
				t.Errorf("main module was parsed again")
			}
			for _, m := range s.Modules() {
				t.Logf("module %q %s at %#x, text %#x-%#x, %d funcs", m.Name, m.Version, m.Base, m.TextStart, m.TextEnd, len(m.Funcs))
			}
		})
	}
}

func moduleNamed(s *Symbolizer, name string) *Module {
	for _, m := range s.Modules() {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// checkNames checks that m has a Wasm function for each name and that
// the Symbolizer finds it at every address of its range ends and middle.
func checkNames(t *testing.T, s *Symbolizer, m *Module, names ...string) {
	t.Helper()
	var got []string
	for _, f := range m.Funcs {
		if f.Kind != WasmFunction {
			continue
		}
		got = append(got, f.Name)
		for _, pc := range []uint64{f.Start, (f.Start + f.End) / 2, f.End - 1} {
			if g, gm, ok := s.Lookup(pc); !ok || gm != m || g != f {
				t.Errorf("Lookup(%#x) = %+v, want %s", pc, g, f.Name)
			}
		}
	}
	for _, n := range names {
		if !slices.Contains(got, n) {
			t.Errorf("module %q: no function %q in %q", m.Name, n, got)
		}
	}
	ranges := s.TextRanges()
	if !slices.Contains(ranges, [2]uint64{m.TextStart, m.TextEnd}) {
		t.Errorf("TextRanges %#x lacks %#x-%#x", ranges, m.TextStart, m.TextEnd)
	}
}

func targetBinary(t *testing.T, version string) string {
	t.Helper()
	return testtarget.Bin(t, version, false)
}

func readLines(r io.Reader) <-chan string {
	ch := make(chan string)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
		close(ch)
	}()
	return ch
}

func waitLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("target exited before printing %q", want)
			}
			if l == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %q from target", want)
		}
	}
}
