package profile

import (
	"os"
	"os/exec"
	"testing"
)

// requireTool returns the path of the first of names found on PATH. A
// missing tool skips the test, except under CI=true, where it fails: CI
// must run every check.
func requireTool(t *testing.T, install string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found, and CI=true forbids skipping; install: %s", names[0], install)
	}
	t.Skipf("%s not found; install: %s", names[0], install)
	return ""
}
