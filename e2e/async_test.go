package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/wasmtrace/wasmtrace/internal/testtarget"
)

// Async Wasmtime (testdata/async): Wasm on fibers, v37 and v39, with
// Wasmtime's default allocator and with the pooling allocator.
var asyncVersions = []string{"v39", "v37"}

var allocators = []struct {
	name string
	args []string
}{
	{"ondemand", nil},
	{"pooling", []string{"-pooling"}},
}

// The stacks each async scenario may show, root first (testdata/async's
// README): every one is exact for some moment of the scenario. The first
// of each list is where the scenario burns its CPU.
var asyncScenarios = []struct {
	name  string
	args  []string
	exact []string
}{
	{"interleave", []string{"-stores", "2"}, []string{
		"[fiber];s0_run;s0_mid;s0_leaf",
		"[fiber];s1_run;s1_mid;s1_leaf",
		"[fiber];s0_run;s0_mid;[host]",
		"[fiber];s1_run;s1_mid;[host]",
	}},
	{"nested", nil, []string{
		"[fiber];n_outer;n_mid;[host];[fiber];n_inner;n_leaf",
		"[fiber];h_outer;h_mid;[host]",
		"[fiber];n_outer;n_mid;[host]",
	}},
}

// checkAsync asserts that at least 99% of the samples with Wasm on the
// stack (and of those whose walk failed) have one of the exact stacks, or
// a root-side part of one that ends in a Wasm frame (sampled in a caller,
// which does a little work after its call returns), that no other Wasm
// stack appears, that the main stacks were seen, and returns the failures
// by reason.
func checkAsync(t *testing.T, got map[string]int, exact []string, main int, minSamples int) map[string]int {
	t.Helper()
	ok := map[string]bool{}
	for _, s := range exact {
		frames := strings.Split(s, ";")
		for i := 2; i <= len(frames); i++ {
			if last := frames[i-1]; i == len(frames) || !strings.HasPrefix(last, "[") {
				ok[strings.Join(frames[:i], ";")] = true
			}
		}
	}
	good, wasm := 0, 0
	failed := map[string]int{}
	for stack, n := range got {
		switch {
		case stack == "[no Wasm]":
			continue
		case ok[stack]:
			good += n
		case strings.HasPrefix(stack, "[unwind failed"):
			failed[stack] += n
		default:
			t.Errorf("a stack that the scenario never has (%d samples): %s", n, stack)
		}
		wasm += n
	}
	if wasm < minSamples {
		t.Fatalf("only %d samples with Wasm on the stack, want at least %d; got %v", wasm, minSamples, got)
	}
	if float64(good) < 0.99*float64(wasm) {
		t.Errorf("%d of %d Wasm samples exact (want >= 99%%); got %v", good, wasm, got)
	}
	for _, s := range exact[:main] {
		if got[s] < minSamples/10 {
			t.Errorf("main stack %q: %d samples; got %v", s, got[s], got)
		}
	}
	t.Logf("%d/%d samples exact; failures %v", good, wasm, failed)
	return failed
}

func TestAsyncStacks(t *testing.T) {
	requireRoot(t)
	for _, v := range asyncVersions {
		bin := testtarget.AsyncBin(t, v)
		for _, alloc := range allocators {
			for _, sc := range asyncScenarios {
				t.Run(fmt.Sprintf("%s/%s/%s", v, alloc.name, sc.name), func(t *testing.T) {
					args := append([]string{"-scenario", sc.name}, alloc.args...)
					cmd := startTarget(t, bin, append(args, sc.args...)...)
					r := runWasmtrace(t, "-p", fmt.Sprint(cmd.Process.Pid), "-d", "2s", "-F", "499", "--format", "folded", "-o", "-")
					if r.code != 0 {
						t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
					}
					checkAsync(t, folded(t, r.stdout), sc.exact, 2, 200)
				})
			}
		}
	}
}

// Several threads, each polling its own stores: each thread's stacks are
// its own fibers' (a suspended fiber is on no thread), and --verify finds
// the kernel and Go walkers identical.
func TestAsyncThreadsVerify(t *testing.T) {
	requireRoot(t)
	for _, v := range asyncVersions {
		t.Run(v, func(t *testing.T) {
			cmd := startTarget(t, testtarget.AsyncBin(t, v), "-scenario", "threads", "-threads", "2", "-stores", "2", "-pooling")
			r := runWasmtrace(t, "-p", fmt.Sprint(cmd.Process.Pid), "-d", "4s", "-F", "999", "--verify", "--threads", "--format", "folded", "-o", "-")
			if r.code != 0 {
				t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
			}
			checkVerified(t, r.stderr, 2000)
			perThread := byThread(t, r.stdout)
			busy := 0
			for thread, stacks := range perThread {
				if wasmSamples(stacks) < 100 {
					continue // not a Wasm thread
				}
				busy++
				t.Run(thread, func(t *testing.T) { checkAsync(t, stacks, asyncScenarios[0].exact, 2, 100) })
			}
			if busy != 2 {
				t.Errorf("%d threads with Wasm samples, want 2: %v", busy, perThread)
			}
		})
	}
}

// --verify where fiber stacks come and go: Wasmtime's default allocator
// maps a new stack for each nested call.
func TestAsyncVerifyNested(t *testing.T) {
	requireRoot(t)
	for _, v := range asyncVersions {
		t.Run(v, func(t *testing.T) {
			cmd := startTarget(t, testtarget.AsyncBin(t, v), "-scenario", "nested")
			// 5 s: 2,000 verified samples even when the target gets under
			// half a core (a loaded CI machine gave it 62% of one in 3 s).
			r := runWasmtrace(t, "-p", fmt.Sprint(cmd.Process.Pid), "-d", "5s", "-F", "999", "--verify", "--format", "folded", "-o", "-")
			if r.code != 0 {
				t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
			}
			checkVerified(t, r.stderr, 2000)
			checkAsync(t, folded(t, r.stdout), asyncScenarios[1].exact, 2, 1000)
		})
	}
}

// wasmtrace dump shows each thread's current fiber stack: the Wasm of the
// fiber it runs now, never that of a fiber suspended on it.
func TestAsyncDump(t *testing.T) {
	requireRoot(t)
	full := map[string]bool{}
	for _, sc := range asyncScenarios {
		for _, s := range sc.exact {
			full[s] = true
		}
	}
	for _, v := range asyncVersions {
		for _, alloc := range allocators {
			t.Run(v+"/"+alloc.name, func(t *testing.T) {
				cmd := startTarget(t, testtarget.AsyncBin(t, v), append([]string{"-scenario", "all"}, alloc.args...)...)
				pid := fmt.Sprint(cmd.Process.Pid)
				seen := map[string]bool{}
				wanted := []string{asyncScenarios[0].exact[0], asyncScenarios[1].exact[0], asyncScenarios[1].exact[1]}
				missing := func() []string {
					var out []string
					for _, w := range wanted {
						if !seen[w] && !seen[strings.ReplaceAll(w, "s0_", "s1_")] {
							out = append(out, w)
						}
					}
					return out
				}
				for try := 1; try <= 40 && len(missing()) > 0; try++ {
					r := runWasmtrace(t, "dump", "-p", pid)
					if r.code != 0 {
						t.Fatalf("dump exited %d: %s", r.code, r.stderr)
					}
					for _, th := range parseDump(t, r.stdout) {
						stack := rootFirst(th.frames)
						switch {
						case th.state == "(no Wasm)":
						case strings.HasSuffix(th.state, ", on a fiber") && strings.HasPrefix(th.state, "in "):
							if !full[stack] && !fiberPart(stack, full) {
								t.Errorf("thread %s (%s): stack %q is no moment of the scenarios", th.tid, th.state, stack)
							}
							if full[stack] {
								seen[stack] = true
							}
						case strings.Contains(th.state, "walk stopped: sampled while switching fibers"),
							strings.Contains(th.state, "walk stopped: sampled while entering or leaving Wasm"):
						default:
							t.Errorf("thread %s: %s %v", th.tid, th.state, th.frames)
						}
					}
				}
				for _, w := range missing() {
					t.Errorf("no dump showed %q; saw %v", w, seen)
				}
				checkNotStopped(t, cmd.Process.Pid)
			})
		}
	}
}

// fiberPart reports whether stack is a root-side part of one of the full
// stacks, maybe in host code on top: a thread caught in a caller.
func fiberPart(stack string, full map[string]bool) bool {
	for f := range full {
		if validPart(stack, f) {
			return true
		}
	}
	return false
}

// wasmtrace trace trap reports a trap raised on a fiber with its stack.
func TestAsyncTraceTrap(t *testing.T) {
	requireRoot(t)
	line := regexp.MustCompile(`^\S+ pid=\d+ tid=\d+ trap kind="unreachable" SIGILL ILL_ILLOPN pc=0x[0-9a-f]+ addr=0x[0-9a-f]+ stack=(\S+)$`)
	for _, v := range asyncVersions {
		t.Run(v, func(t *testing.T) {
			cmd := startTarget(t, testtarget.AsyncBin(t, v), "-scenario", "trap", "-pooling")
			r := runWasmtrace(t, "trace", "-p", fmt.Sprint(cmd.Process.Pid), "-d", "2s", "trap")
			if r.code != 0 {
				t.Fatalf("trace exited %d: %s", r.code, r.stderr)
			}
			n := 0
			for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
				m := line.FindStringSubmatch(l)
				if m == nil {
					t.Errorf("unexpected line %q", l)
					continue
				}
				if m[1] != "[fiber];t_outer;t_leaf" {
					t.Errorf("trap stack %q, want [fiber];t_outer;t_leaf", m[1])
				}
				n++
			}
			if n < 4 {
				t.Errorf("%d traps in 2 s, want at least 4 (the target traps 4-5 times a second):\n%s", n, r.stdout)
			}
		})
	}
}
