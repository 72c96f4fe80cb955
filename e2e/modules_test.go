package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wasmtrace/wasmtrace/internal/testtarget"
)

// A host with 10,000 compiled modules, each called in turn (testdata/targets
// scenario modules): every one is known to the kernel walker, stacks are
// exact, and the recording starts at once.
func TestTenThousandModules(t *testing.T) {
	requireRoot(t)
	// Compiling 10,000 modules takes the target 10-40 s.
	cmd := testtarget.StartWithin(t, 3*time.Minute, targetBin(t, "v39", false), "-scenario", "modules", "-modules", "10000")
	start := time.Now()
	r := runWasmtrace(t, "-p", fmt.Sprint(cmd.Process.Pid), "-d", "3s", "-F", "499", "--format", "folded", "-o", "-")
	wall := time.Since(start)
	if r.code != 0 {
		t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
	}
	checkStacks(t, folded(t, r.stdout), "mod_work", 200)
	if strings.Contains(r.stderr, "more compiled modules than") {
		t.Errorf("modules left out:\n%s", r.stderr)
	}
	// 3 s of recording; start-up and the end's writing take the rest.
	if wall > 6*time.Second {
		t.Errorf("record -d 3s took %s with 10,000 modules", wall)
	}
	t.Logf("record -d 3s: %s", wall.Round(time.Millisecond))
}
