// Package e2e runs the wasmtrace command against real Wasmtime embedders
// (testdata/targets, built by `make targets`) and asserts the exact stacks
// it reports. It needs root; under CI=true anything that prevents a real
// run is a failure, never a skip.
package e2e

import (
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

	"github.com/wasmtrace/wasmtrace/internal/testtarget"
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

func requireRoot(t *testing.T) { t.Helper(); testtarget.RequireRoot(t) }

func targetBin(t *testing.T, version string, stripped bool) string {
	t.Helper()
	return testtarget.Bin(t, version, stripped)
}

func startTarget(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	return testtarget.Start(t, bin, args...)
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
