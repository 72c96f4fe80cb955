package e2e

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Modules loaded from precompiled code (testdata/targets scenarios
// precompiled and deserialized): the main module serialized, then loaded
// back with Module::deserialize_file, which maps the .cwasm file itself,
// or with Module::deserialize, which copies the bytes into anonymous
// memory. Both run the chain call chain; the compiled main module stays
// loaded, never called.

const chainStack = "run;chain_a;chain_b;chain_c"

// inspectModule is one module of `wasmtrace inspect`'s list.
type inspectModule struct{ name, origin string }

// inspectModules parses the module list of `wasmtrace inspect`: each
// module's line, then its "code: ORIGIN" line.
func inspectModules(t *testing.T, out string) []inspectModule {
	t.Helper()
	_, list, ok := strings.Cut(out, " compiled modules in memory\n")
	if !ok {
		t.Fatalf("no module list in inspect output:\n%s", out)
	}
	var mods []inspectModule
	for _, line := range strings.Split(list, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 4 && strings.HasPrefix(f[0], "0x") && f[1] == "text":
			mods = append(mods, inspectModule{name: f[3]})
		case len(f) > 1 && f[0] == "code:":
			if len(mods) == 0 || mods[len(mods)-1].origin != "" {
				t.Fatalf("code line without its module in inspect output:\n%s", out)
			}
			mods[len(mods)-1].origin = strings.TrimPrefix(strings.TrimSpace(line), "code: ")
		}
	}
	for _, m := range mods {
		if m.origin == "" {
			t.Fatalf("module %s without its origin in inspect output:\n%s", m.name, out)
		}
	}
	return mods
}

// originsOf returns the origins of the modules named name.
func originsOf(mods []inspectModule, name string) []string {
	var o []string
	for _, m := range mods {
		if m.name == name {
			o = append(o, m.origin)
		}
	}
	return o
}

const (
	inMemory   = "in memory (compiled in process or deserialized from bytes)"
	mappedFrom = "mapped from %s (precompiled, Module::deserialize_file)"
)

func TestPrecompiledStacks(t *testing.T) {
	requireRoot(t)
	for _, v := range versions {
		bin := targetBin(t, v, false)
		for _, sc := range []string{"precompiled", "deserialized"} {
			t.Run(v+"/"+sc, func(t *testing.T) {
				cwasm := filepath.Join(t.TempDir(), "wasmtrace_target.cwasm")
				cmd := startTarget(t, bin, "-scenario", sc, "-cwasm", cwasm)
				pid := fmt.Sprint(cmd.Process.Pid)
				r := runWasmtrace(t, "-p", pid, "-d", "2s", "-F", "499", "--format", "folded", "-o", "-")
				if r.code != 0 {
					t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
				}
				checkStacks(t, folded(t, r.stdout), chainStack, 50)

				ins := runWasmtrace(t, "inspect", "-p", pid)
				if ins.code != 0 {
					t.Fatalf("inspect exited %d: %s", ins.code, ins.stderr)
				}
				// The compiled main module and its reloaded copy.
				want := []string{inMemory, inMemory}
				if sc == "precompiled" {
					want[0] = fmt.Sprintf(mappedFrom, cwasm)
				}
				got := originsOf(inspectModules(t, ins.stdout), "wasmtrace_target")
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("modules wasmtrace_target come from %q, want %q\n%s", got, want, ins.stdout)
				}
			})
		}
	}
}

// The .cwasm file replaced after it was mapped (a new file renamed over
// it, as a deploy would): the mapping keeps the old file, which
// /proc/PID/maps then shows deleted, and wasmtrace reads the image from
// memory, so the stacks stay exact.
func TestPrecompiledFileReplaced(t *testing.T) {
	requireRoot(t)
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			cwasm := filepath.Join(t.TempDir(), "wasmtrace_target.cwasm")
			cmd := startTarget(t, targetBin(t, v, false), "-scenario", "precompiled", "-cwasm", cwasm)
			junk := bytes.Repeat([]byte("\x7fELF\x02\x01\x01\xc8 not this module "), 1000)
			if err := os.WriteFile(cwasm+".new", junk, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(cwasm+".new", cwasm); err != nil {
				t.Fatal(err)
			}
			pid := fmt.Sprint(cmd.Process.Pid)
			r := runWasmtrace(t, "-p", pid, "-d", "2s", "-F", "499", "--format", "folded", "-o", "-")
			if r.code != 0 {
				t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
			}
			checkStacks(t, folded(t, r.stdout), chainStack, 50)
			ins := runWasmtrace(t, "inspect", "-p", pid)
			want := fmt.Sprintf(mappedFrom, cwasm+" (deleted)")
			if got := originsOf(inspectModules(t, ins.stdout), "wasmtrace_target"); !slices.Contains(got, want) {
				t.Errorf("modules wasmtrace_target come from %q, want one %q", got, want)
			}
		})
	}
}

// The mapped .cwasm damaged while wasmtrace samples it: truncated right
// after .text (the pages the target executes stay; the rest of the image,
// section headers included, can no longer be read), or rewritten in place
// after .text (a private mapping shows the file's new bytes in the pages
// the process has not written). wasmtrace rereads the image from memory,
// finds it no longer parses, drops the module (the next range update
// tells the kernel) and counts the samples in its code like those in any
// code outside known modules (today the kernel walker reports them as
// [no Wasm]); it keeps running and exits 0. No frame is ever named from
// the damaged bytes.
func TestPrecompiledFileDamaged(t *testing.T) {
	requireRoot(t)
	damages := []struct {
		name   string
		damage func(t *testing.T, path string, textEnd int64)
	}{
		{"truncated", func(t *testing.T, path string, textEnd int64) {
			if err := os.Truncate(path, textEnd); err != nil {
				t.Fatal(err)
			}
		}},
		{"rewritten", func(t *testing.T, path string, textEnd int64) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xff}, int(fi.Size()-textEnd)), textEnd); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, v := range versions {
		bin := targetBin(t, v, false)
		for _, d := range damages {
			t.Run(v+"/"+d.name, func(t *testing.T) {
				cwasm := filepath.Join(t.TempDir(), "wasmtrace_target.cwasm")
				cmd := startTarget(t, bin, "-scenario", "precompiled", "-cwasm", cwasm)
				textEnd := pageAfterText(t, cwasm)

				w := startWasmtrace(t, "-p", fmt.Sprint(cmd.Process.Pid), "-d", "4s", "-F", "499", "--format", "folded", "-o", "-")
				time.Sleep(1500 * time.Millisecond) // about 1 s of good samples
				d.damage(t, cwasm, textEnd)
				r := w.wait(t)

				if r.code != 0 || strings.Contains(r.stderr, "panic") {
					t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
				}
				if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
					t.Fatalf("target gone after the damage: %v", err)
				}
				got := folded(t, r.stdout)
				total, exact := 0, got[chainStack]
				for stack, n := range got {
					total += n
					for _, fr := range strings.Split(stack, ";") {
						if !strings.HasPrefix(fr, "[") && !strings.HasPrefix(fr, "0x") && !slices.Contains(strings.Split(chainStack, ";"), fr) {
							t.Errorf("frame %q named from damaged bytes (%d samples): %s", fr, n, stack)
						}
					}
				}
				if exact < 50 {
					t.Errorf("%d exact samples before the damage, want at least 50; got %v", exact, got)
				}
				if !strings.Contains(r.stderr, fmt.Sprintf("wasmtrace: %d samples", total)) {
					t.Errorf("summary does not count the %d samples printed: %s", total, r.stderr)
				}
				t.Logf("%d samples, %d exact: %v", total, exact, got)

				// Attaching afresh: never a crash. (Prepare refuses a
				// process with an image it cannot parse; if it does, the
				// reason names the file.)
				ins := runWasmtrace(t, "inspect", "-p", fmt.Sprint(cmd.Process.Pid))
				if strings.Contains(ins.stderr, "panic") || (ins.code != 0 && !strings.Contains(ins.stderr, cwasm)) {
					t.Errorf("inspect after the damage exited %d: %s", ins.code, ins.stderr)
				}
				t.Logf("inspect after the damage: exit %d %s", ins.code, strings.TrimSpace(ins.stderr))
			})
		}
	}
}

// pageAfterText returns the file offset of the first page after the
// image's .text in the .cwasm at path.
func pageAfterText(t *testing.T, path string) int64 {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	text := f.Section(".text")
	if text == nil {
		t.Fatalf("%s: no .text", path)
	}
	page := uint64(os.Getpagesize())
	return int64((text.Offset + text.Size + page - 1) &^ (page - 1))
}

// runningWasmtrace is a wasmtrace started in the background.
type runningWasmtrace struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr chan string
}

// startWasmtrace starts wasmtrace with args and returns once it says it
// is sampling.
func startWasmtrace(t *testing.T, args ...string) *runningWasmtrace {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	w := &runningWasmtrace{cmd: exec.CommandContext(ctx, wasmtraceBin, args...), stderr: make(chan string, 1)}
	w.cmd.Stdout = &w.stdout
	errPipe, err := w.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sampling := make(chan bool, 1)
	go func() {
		var all strings.Builder
		br := bufio.NewReader(errPipe)
		said := false
		for {
			line, err := br.ReadString('\n')
			all.WriteString(line)
			if !said && strings.Contains(line, "sampling pid") {
				sampling <- true
				said = true
			}
			if err != nil {
				break
			}
		}
		close(sampling)
		w.stderr <- all.String()
	}()
	select {
	case ok := <-sampling:
		if !ok {
			w.cmd.Wait()
			t.Fatalf("wasmtrace stopped before sampling: %s", <-w.stderr)
		}
	case <-time.After(time.Minute):
		t.Fatalf("wasmtrace did not start sampling within a minute")
	}
	return w
}

// wait waits for wasmtrace to end.
func (w *runningWasmtrace) wait(t *testing.T) result {
	t.Helper()
	stderr := <-w.stderr
	err := w.cmd.Wait()
	r := result{stdout: w.stdout.String(), stderr: stderr}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run wasmtrace: %v", err)
	}
	return r
}
