package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Each kind of bad input gets one clear sentence and a non-zero exit.
func TestErrors(t *testing.T) {
	requireRoot(t)
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Process.Kill()
	stripped := startTarget(t, targetBin(t, "v39", true), "-scenario", "chain")

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no such pid", []string{"-p", "999999999", "-d", "1s"}, 1, "no process with pid 999999999"},
		{"not wasmtime", []string{"-p", fmt.Sprint(sleeper.Process.Pid), "-d", "1s"}, 1, "no Wasmtime in this process"},
		{"stripped", []string{"-p", fmt.Sprint(stripped.Process.Pid), "-d", "1s"}, 1, "stripped"},
		{"missing pid", []string{"record"}, 2, "give either -p PID or -a"},
		{"bad duration", []string{"-p", "1", "-d", "soon"}, 2, "not a duration"},
		{"bad format", []string{"-p", "1", "--format", "xml"}, 2, `unknown format "xml"`},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runWasmtrace(t, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit code %d, want %d (stderr: %s)", r.code, tc.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr %q does not say %q", r.stderr, tc.want)
			}
			if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("stderr shows a Go panic: %s", r.stderr)
			}
		})
	}
}

// Without privileges wasmtrace says what it needs.
func TestUnprivileged(t *testing.T) {
	requireRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) not found: %v", err)
	}
	target := startTarget(t, targetBin(t, "v39", false), "-scenario", "chain")
	// The binary must be reachable by the unprivileged user.
	bin, err := os.CreateTemp("", "wasmtrace-unpriv")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(wasmtraceBin)
	if err != nil {
		t.Fatal(err)
	}
	bin.Write(data)
	bin.Chmod(0o755)
	bin.Close()
	defer os.Remove(bin.Name())
	out, err := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		bin.Name(), "-p", fmt.Sprint(target.Process.Pid), "-d", "1s").CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("unprivileged wasmtrace: err %v, want exit 1; output: %s", err, out)
	}
	if !strings.Contains(string(out), "run as root") {
		t.Errorf("output %q does not say to run as root", out)
	}
}

// A target that exits mid-record: exit status 3, a sentence saying so, and
// the samples taken before are still written.
func TestTargetExits(t *testing.T) {
	requireRoot(t)
	target := startTarget(t, targetBin(t, "v39", false), "-scenario", "chain")
	go func() {
		time.Sleep(1500 * time.Millisecond)
		target.Process.Kill()
	}()
	r := runWasmtrace(t, "-p", fmt.Sprint(target.Process.Pid), "-d", "10s", "--format", "folded")
	if r.code != 3 {
		t.Fatalf("exit code %d, want 3; stderr: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "target process exited") {
		t.Errorf("stderr %q does not say the target exited", r.stderr)
	}
	got := folded(t, r.stdout)
	if got["run;chain_a;chain_b;chain_c"] < 20 {
		t.Errorf("samples before the exit were not written: %v", got)
	}
}
