// Package e2e runs the wasmtrace command against real Wasmtime embedders
// (testdata/targets, built by `make targets`) and asserts the exact stacks
// it reports. It needs root; under CI=true anything that prevents a real
// run is a failure, never a skip.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	wasmtraceBin string
	repoRoot     string
)

func TestMain(m *testing.M) {
	root, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "wasmtrace-e2e")
	if err != nil {
		panic(err)
	}
	wasmtraceBin = filepath.Join(dir, "wasmtrace")
	build := exec.Command("go", "build", "-o", wasmtraceBin, "./cmd/wasmtrace")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build wasmtrace: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireRoot skips a test that needs root, except in CI where it fails.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("end-to-end tests need root (BPF and /proc/PID/mem), and CI=true forbids skipping")
	}
	t.Skip("needs root")
}

// targetBin returns a built test target, building it if needed.
func targetBin(t *testing.T, version string, stripped bool) string {
	t.Helper()
	bin := filepath.Join(repoRoot, "testdata/targets/bin", "target-"+version)
	if stripped {
		bin += "-stripped"
	}
	if _, err := os.Stat(bin); err != nil {
		args := []string{version, filepath.Dir(bin)}
		if stripped {
			args = append(args, "stripped")
		}
		cmd := exec.Command(filepath.Join(repoRoot, "testdata/targets/build.sh"), args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build target %s: %v\n%s", version, err, out)
		}
	}
	return bin
}

// startTarget runs a scenario and waits for its "ready" line.
func startTarget(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s %v did not print ready", bin, args)
	}
	return cmd
}

type result struct {
	stdout, stderr string
	code           int
}

func runWasmtrace(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, wasmtraceBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run wasmtrace: %v", err)
	}
	return r
}

// folded parses folded output into stack -> count.
func folded(t *testing.T, s string) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		n, err := strconv.Atoi(line[i+1:])
		if i < 0 || err != nil {
			t.Fatalf("malformed folded line %q", line)
		}
		m[line[:i]] += n
	}
	return m
}

func isMarkerRoot(stack string) bool {
	return stack == "[no Wasm]" || strings.HasPrefix(stack, "[unwind failed")
}
