// Package testtarget builds and runs, for tests and benchmarks, the real
// Wasmtime embedders of testdata/targets: programs with known Wasm call
// chains (see testdata/targets/README.md).
package testtarget

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Root is the repository's top directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// InCI reports whether the tests run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireRoot skips a test that needs root (BPF, other processes' memory),
// except in CI, where it fails.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if InCI() {
		tb.Fatal("this test needs root (BPF and /proc/PID/mem), and CI=true forbids skipping")
	}
	tb.Skip("needs root")
}

// Bin returns testdata/targets/bin/target-VERSION (with -stripped: the copy
// without a symbol table), building it with build.sh when missing. A build
// failure fails the test in CI and with -short skips it elsewhere.
func Bin(tb testing.TB, version string, stripped bool) string {
	tb.Helper()
	bin := filepath.Join(Root(), "testdata/targets/bin", "target-"+version)
	args := []string{version, filepath.Dir(bin)}
	if stripped {
		bin += "-stripped"
		args = append(args, "stripped")
	}
	return built(tb, bin, "testdata/targets/build.sh", args...)
}

// built returns bin, running the repository's script with args to build
// it when it is missing: in -short mode outside CI, a missing bin skips
// the test instead.
func built(tb testing.TB, bin, script string, args ...string) string {
	tb.Helper()
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if testing.Short() && !InCI() {
		tb.Skipf("%s not built (make targets); skipped in -short mode", bin)
	}
	out, err := exec.Command(filepath.Join(Root(), script), args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("build %s: %v\n%s", filepath.Base(bin), err, out)
	}
	return bin
}

// Start runs bin with args, waits for its "ready" line, and kills it when
// the test ends.
func Start(tb testing.TB, bin string, args ...string) *exec.Cmd {
	tb.Helper()
	return StartWithin(tb, 30*time.Second, bin, args...)
}

// StartWithin is Start, waiting up to timeout for "ready".
func StartWithin(tb testing.TB, timeout time.Duration, bin string, args ...string) *exec.Cmd {
	tb.Helper()
	cmd, _ := StartWithLines(tb, timeout, bin, args...)
	return cmd
}

// StartWithLines is StartWithin, and also returns the lines the program
// prints after "ready" (the most recent 1000 kept unread; older ones are
// dropped).
func StartWithLines(tb testing.TB, timeout time.Duration, bin string, args ...string) (*exec.Cmd, <-chan string) {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ready := make(chan bool, 1)
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stdout)
		isReady := false
		for sc.Scan() {
			if !isReady && sc.Text() == "ready" {
				isReady = true
				ready <- true
				continue
			}
			if isReady {
				select {
				case lines <- sc.Text():
				default:
				}
			}
		}
		close(ready)
		close(lines)
	}()
	select {
	case ok := <-ready:
		if !ok {
			tb.Fatalf("%s %v exited before ready", bin, args)
		}
	case <-time.After(timeout):
		tb.Fatalf("%s %v did not print ready within %s", bin, args, timeout)
	}
	return cmd, lines
}
