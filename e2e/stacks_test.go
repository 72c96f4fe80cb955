package e2e

import (
	"fmt"
	"strings"
	"testing"
)

var versions = []string{"v39", "v37", "v3"}

func repeat(f string, n int) string {
	return strings.TrimSuffix(strings.Repeat(f+";", n), ";")
}

// The scenarios of testdata/targets and the one stack each must produce,
// root first.
var scenarios = []struct {
	name string
	want string
}{
	{"chain", "run;chain_a;chain_b;chain_c"},
	{"nested", "outer;outer_mid;[host];inner;inner_leaf"},
	{"hostburn", "hb_outer;hb_mid;[host]"},
	{"recursion", "rec_entry;" + repeat("rec", 101)},
}

// checkStacks asserts that at least 95% of the samples with Wasm on the
// stack (and those whose walk failed) have exactly the expected stack, that
// every other Wasm stack is a root-side part of it, and that there are
// enough samples to mean something.
func checkStacks(t *testing.T, got map[string]int, want string, minSamples int) {
	t.Helper()
	exact, wasm := 0, 0
	for stack, n := range got {
		if stack == "[no Wasm]" {
			continue
		}
		wasm += n
		switch {
		case stack == want:
			exact += n
		case isMarkerRoot(stack):
		case !strings.HasPrefix(want, stack+";"):
			t.Errorf("unexpected stack (%d samples): %s", n, stack)
		}
	}
	if wasm < minSamples {
		t.Fatalf("only %d samples with Wasm on the stack, want at least %d; got %v", wasm, minSamples, got)
	}
	if float64(exact) < 0.95*float64(wasm) {
		t.Errorf("%d of %d Wasm samples have the exact stack %q (want >= 95%%); got %v", exact, wasm, want, got)
	}
	t.Logf("%d/%d samples exact", exact, wasm)
}

func TestScenarioStacks(t *testing.T) {
	requireRoot(t)
	for _, v := range versions {
		bin := targetBin(t, v, false)
		for _, sc := range scenarios {
			t.Run(fmt.Sprintf("%s/%s", v, sc.name), func(t *testing.T) {
				cmd := startTarget(t, bin, "-scenario", sc.name)
				r := runWasmtrace(t, "-p", fmt.Sprint(cmd.Process.Pid), "-d", "2s", "-F", "499", "--format", "folded", "-o", "-")
				if r.code != 0 {
					t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
				}
				checkStacks(t, folded(t, r.stdout), sc.want, 50)
			})
		}
	}
}

// Several OS threads, each in its own store: --threads roots each stack at
// its thread, and every thread shows the whole chain.
func TestThreads(t *testing.T) {
	requireRoot(t)
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			cmd := startTarget(t, targetBin(t, v, false), "-scenario", "threads", "-threads", "3")
			r := runWasmtrace(t, "-p", fmt.Sprint(cmd.Process.Pid), "-d", "3s", "-F", "499", "--threads", "--format", "folded")
			if r.code != 0 {
				t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
			}
			perThread := byThread(t, r.stdout)
			busy := 0
			for thread, stacks := range perThread {
				if wasmSamples(stacks) < 20 {
					continue // a Go runtime thread, not a Wasm worker
				}
				busy++
				t.Run(thread, func(t *testing.T) { checkStacks(t, stacks, "run;chain_a;chain_b;chain_c", 20) })
			}
			if busy < 3 {
				t.Errorf("%d threads with samples, want 3: %v", busy, perThread)
			}
		})
	}
}

// A module compiled after wasmtrace started is found and symbolized.
// Until the next rescan (every 200 ms) tells the kernel about its code, the
// kernel takes a sample in it for host code and its walk cannot be trusted:
// wasmtrace must count such samples as unwind failures, never attribute
// them, and they must stay within about one rescan's worth.
func TestModuleCompiledWhileTracing(t *testing.T) {
	requireRoot(t)
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			cmd := startTarget(t, targetBin(t, v, false), "-scenario", "late", "-late", "1s")
			r := runWasmtrace(t, "-p", fmt.Sprint(cmd.Process.Pid), "-d", "3s", "-F", "499", "--format", "folded")
			if r.code != 0 {
				t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
			}
			got := folded(t, r.stdout)
			// Before the next rescan, a sample in the new module is either
			// in a module known since, or in code not known at all.
			early := 0
			for _, why := range []string{"[unwind failed: module compiled after the last range update]", "[unwind failed: code wasmtrace has not seen yet]"} {
				early += got[why]
				delete(got, why)
			}
			if limit := 499 * 3 / 10; early > limit { // 300 ms at 499 Hz
				t.Errorf("%d samples before the kernel knew the module's code, want at most %d", early, limit)
			}
			checkStacks(t, got, "late_run;late_leaf", 30)
		})
	}
}

// byThread splits folded stacks rooted at threads (--threads) by thread.
func byThread(t *testing.T, out string) map[string]map[string]int {
	t.Helper()
	perThread := map[string]map[string]int{}
	for stack, n := range folded(t, out) {
		thread, rest, _ := strings.Cut(stack, ";")
		if !strings.HasPrefix(thread, "tid ") {
			t.Fatalf("stack not rooted at a thread: %q", stack)
		}
		if perThread[thread] == nil {
			perThread[thread] = map[string]int{}
		}
		perThread[thread][rest] += n
	}
	return perThread
}

// wasmSamples counts the samples with Wasm on the stack.
func wasmSamples(stacks map[string]int) int {
	n := 0
	for stack, c := range stacks {
		if stack != "[no Wasm]" {
			n += c
		}
	}
	return n
}
