package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dumpThread is one thread of wasmtrace dump's output.
type dumpThread struct {
	tid, name, state string
	frames           []string // innermost first; "[host]" for host code, "[fiber]" below a fiber
}

var (
	dumpHeader = regexp.MustCompile(`^thread (\d+)(?: \((.*)\))?: (.*)$`)
	dumpFrame  = regexp.MustCompile(`^  #(\d+) +0x[0-9a-f]{16}  (.+)$`)
	dumpMarker = regexp.MustCompile(`^ +(\[host\]|\[fiber\])$`)
)

func parseDump(t *testing.T, out string) []dumpThread {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "pid ") {
		t.Fatalf("dump does not start with the process:\n%s", out)
	}
	var threads []dumpThread
	for _, line := range lines[1:] {
		if m := dumpHeader.FindStringSubmatch(line); m != nil {
			threads = append(threads, dumpThread{tid: m[1], name: m[2], state: m[3]})
			continue
		}
		if len(threads) == 0 {
			t.Fatalf("frame before any thread: %q", line)
		}
		th := &threads[len(threads)-1]
		if m := dumpFrame.FindStringSubmatch(line); m != nil {
			th.frames = append(th.frames, m[2])
		} else if m := dumpMarker.FindStringSubmatch(line); m != nil {
			th.frames = append(th.frames, m[1])
		} else {
			t.Fatalf("unexpected dump line %q in:\n%s", line, out)
		}
	}
	return threads
}

// rootFirst returns a thread's frames root first, ;-joined, as in folded
// stacks.
func rootFirst(frames []string) string {
	r := slices.Clone(frames)
	slices.Reverse(r)
	return strings.Join(r, ";")
}

// validPart reports whether a stack seen at an arbitrary instant fits the
// scenario's full stack: a root-side part of it (the thread was in a
// caller, or returning), maybe in host code on top.
func validPart(stack, full string) bool {
	stack = strings.TrimSuffix(stack, ";[host]")
	return stack == full || strings.HasPrefix(full, stack+";") || stack == "[host]"
}

// wasmtrace dump prints each thread's stack exactly, innermost first, and
// marks the threads without Wasm.
func TestDump(t *testing.T) {
	requireRoot(t)
	for _, v := range versions {
		for _, sc := range []struct {
			name    string
			args    []string
			full    string // root first, as in folded stacks
			workers int    // threads running Wasm
		}{
			{"nested", nil, "outer;outer_mid;[host];inner;inner_leaf", 1},
			{"recursion", nil, "rec_entry;" + repeat("rec", 101), 1},
			{"threads", []string{"-threads", "3"}, "run;chain_a;chain_b;chain_c", 3},
		} {
			t.Run(v+"/"+sc.name, func(t *testing.T) {
				cmd := startTarget(t, targetBin(t, v, false), append([]string{"-scenario", sc.name}, sc.args...)...)
				pid := fmt.Sprint(cmd.Process.Pid)
				// At an arbitrary instant a worker may be between calls or
				// in a caller: dump until each worker showed the full stack.
				complete := map[string]bool{}
				for try := 1; try <= 20 && len(complete) < sc.workers; try++ {
					r := runWasmtrace(t, "dump", "-p", pid)
					if r.code != 0 {
						t.Fatalf("dump exited %d: %s", r.code, r.stderr)
					}
					threads := parseDump(t, r.stdout)
					if threads[0].tid != pid || threads[0].state != "(no Wasm)" || len(threads[0].frames) != 0 {
						t.Errorf("main thread (never runs Wasm): %+v", threads[0])
					}
					for _, th := range threads {
						stack := rootFirst(th.frames)
						switch {
						case th.state == "(no Wasm)":
							if len(th.frames) != 0 {
								t.Errorf("thread %s: (no Wasm) with frames %v", th.tid, th.frames)
							}
						case th.state == "in Wasm" || th.state == "in host code called from Wasm":
							if !validPart(stack, sc.full) {
								t.Errorf("thread %s (%s): stack %q is not part of %q", th.tid, th.state, stack, sc.full)
							}
							if (th.state == "in host code called from Wasm") != (th.frames[0] == "[host]") {
								t.Errorf("thread %s: %s, but innermost frame %q", th.tid, th.state, th.frames[0])
							}
							if stack == sc.full {
								complete[th.tid] = true
							}
						case strings.Contains(th.state, "sampled while entering or leaving Wasm"):
							// A thread stopped inside a transition window.
						default:
							t.Errorf("thread %s: %s %v", th.tid, th.state, th.frames)
						}
					}
				}
				if len(complete) < sc.workers {
					t.Errorf("%d threads showed the full stack %q, want %d", len(complete), sc.full, sc.workers)
				}
				// The process runs on: every thread is running or sleeping,
				// none left stopped or traced.
				r := runWasmtrace(t, "dump", "-p", pid, "--verbose")
				if !strings.Contains(r.stderr, "paused") || !strings.Contains(r.stdout, "[paused at most ") {
					t.Errorf("--verbose does not say the pauses:\n%s\n%s", r.stdout, r.stderr)
				}
				t.Logf("%s", strings.TrimSpace(r.stderr))
				checkNotStopped(t, cmd.Process.Pid)
			})
		}
	}
}

func TestDumpHelp(t *testing.T) {
	r := runWasmtrace(t, "dump", "-h")
	for _, want := range []string{"PTRACE_SEIZE", "PTRACE_INTERRUPT", "PTRACE_DETACH", "paused briefly", "(no Wasm)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("dump -h does not say %q:\n%s", want, r.stderr)
		}
	}
	if r := runWasmtrace(t, "dump"); r.code != 2 || !strings.Contains(r.stderr, "-p PID is required") {
		t.Errorf("dump without -p: exit %d, %s", r.code, r.stderr)
	}
	if r := runWasmtrace(t, "dump", "-p", "999999999"); r.code != 1 || !strings.Contains(r.stderr, "no process with pid 999999999") {
		t.Errorf("dump of a missing pid: exit %d, %s", r.code, r.stderr)
	}
}

// checkNotStopped fails when a thread of pid is stopped or traced.
func checkNotStopped(t *testing.T, pid int) {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("list threads of %d: %v", pid, err)
	}
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // exited
		}
		s := string(b)
		if strings.Contains(s, "State:\tt") || strings.Contains(s, "State:\tT") || !strings.Contains(s, "TracerPid:\t0\n") {
			t.Errorf("%s: thread left stopped or traced:\n%s", p, s)
		}
	}
}
