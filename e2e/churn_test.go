package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmtrace/wasmtrace/internal/testtarget"
)

var churnFrameRE = regexp.MustCompile(`^churn_(entry|mid|leaf)_(\d+)$`)

// A host that compiles and frees modules continuously, about 50 a second
// (testdata/targets scenario churn), their code often where the module
// before it was: no sample is named with a module other than the one it
// was taken in. Every module K names its frames with K and even and odd
// modules differ in shape, so a sample named with a freed module's table
// shows as a frame of another K, a chain of the wrong shape or an address
// in no function. Most samples are named (code notes, loader/code.go and
// record/notes.go); those that are not are unresolved addresses, never
// another module's functions.
func TestModuleChurn(t *testing.T) {
	requireRoot(t)
	cmd, out := testtarget.StartWithLines(t, time.Minute, targetBin(t, "v39", false), "-scenario", "churn", "-life", "30ms")
	r := runWasmtrace(t, "-p", fmt.Sprint(cmd.Process.Pid), "-d", "4s", "-F", "499", "--format", "folded", "-o", "-")
	if r.code != 0 {
		t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
	}
	rate := churnRate(t, out)
	if rate < 35 {
		t.Errorf("the target compiled and freed %.0f modules a second, want about 50", rate)
	}
	named, unresolved, failed, other := 0, 0, 0, 0
	for stack, n := range folded(t, r.stdout) {
		frames := strings.Split(stack, ";")
		switch {
		case stack == "[no Wasm]":
			continue // compiling, or the Go runtime
		case strings.HasPrefix(stack, "[unwind failed: "):
			failed += n
			continue
		case strings.HasPrefix(frames[0], "0x"):
			unresolved += n
			for _, f := range frames {
				if !strings.HasPrefix(f, "0x") {
					t.Errorf("stack %q (%d): unresolved and named frames mixed", stack, n)
				}
			}
			continue
		}
		if !churnValid(frames) {
			t.Errorf("stack %q (%d samples) is not one module's chain", stack, n)
			other += n
			continue
		}
		named += n
	}
	all := named + unresolved + failed + other
	t.Logf("%.0f modules/s; %d samples in Wasm: %d named exactly, %d unresolved, %d unwind failures; wasmtrace: %s",
		rate, all, named, unresolved, failed, strings.TrimSpace(r.stderr))
	if all < 500 {
		t.Fatalf("%d samples in Wasm, want at least 500", all)
	}
	// Measured here: 93-97% named on a quiet machine, 69-85% with a load
	// of 5 on its 2 cores: a module freed before wasmtrace reads its code
	// note (30 ms here) cannot be read any more, and its samples stay
	// unresolved. The bound is for the loaded case; what must never
	// happen is checked above: a sample named with another module.
	if named*100 < all*50 {
		t.Errorf("%d of %d samples named, want at least 50%%", named, all)
	}
	if failed*100 > all {
		t.Errorf("%d of %d samples are unwind failures, want under 1%%", failed, all)
	}
}

// churnValid reports whether frames (root first) can be a stack of
// module K's code, K named by the entry: its chain entry;mid;leaf for an
// even K or entry;leaf for an odd one, or a prefix of it (a sample in the
// entry or in mid itself), every frame of the same K.
func churnValid(frames []string) bool {
	m := churnFrameRE.FindStringSubmatch(frames[0])
	if m == nil || m[1] != "entry" {
		return false
	}
	k, _ := strconv.Atoi(m[2])
	chain := []string{fmt.Sprintf("churn_entry_%d", k), fmt.Sprintf("churn_mid_%d", k), fmt.Sprintf("churn_leaf_%d", k)}
	if k%2 == 1 {
		chain = []string{chain[0], chain[2]}
	}
	if len(frames) > len(chain) {
		return false
	}
	for i, f := range frames {
		if f != chain[i] {
			return false
		}
	}
	return true
}

var churnLineRE = regexp.MustCompile(`^churn compiled=(\d+) freed=(\d+)$`)

// churnRate reads the target's "churn" lines printed so far (one a
// second) and returns the modules freed per second between the first and
// the last.
func churnRate(t *testing.T, out <-chan string) float64 {
	t.Helper()
	var freed []int
	timeout := time.After(10 * time.Second)
	for len(freed) < 4 {
		select {
		case l, ok := <-out:
			if !ok {
				t.Fatal("the churn target exited")
			}
			if m := churnLineRE.FindStringSubmatch(l); m != nil {
				n, _ := strconv.Atoi(m[2])
				freed = append(freed, n)
			}
		case <-timeout:
			t.Fatalf("the churn target printed %d progress lines in 10 s", len(freed))
		}
	}
	return float64(freed[len(freed)-1]-freed[0]) / float64(len(freed)-1)
}
