package symbolize

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/wasmtrace/wasmtrace/proc"
)

// TestCapture writes the images of a live Wasmtime process into testdata,
// which is how the golden images were made:
//
//	WASMTRACE_CAPTURE_PID=1234 WASMTRACE_CAPTURE_PREFIX=v39 go test -run TestCapture ./symbolize/
//
// It is skipped unless WASMTRACE_CAPTURE_PID is set.
func TestCapture(t *testing.T) {
	pidStr := os.Getenv("WASMTRACE_CAPTURE_PID")
	if pidStr == "" {
		t.Skip("set WASMTRACE_CAPTURE_PID to capture images from a live process")
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil {
		t.Fatal(err)
	}
	prefix := os.Getenv("WASMTRACE_CAPTURE_PREFIX")
	if prefix == "" {
		prefix = "capture"
	}
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	mem := proc.ProcessMemory{PID: pid}
	mods, err := FindModules(mem, maps)
	if err != nil {
		t.Logf("skipped: %v", err)
	}
	for i, m := range mods {
		img := make([]byte, m.size)
		if _, err := mem.ReadAt(img, m.Base); err != nil {
			t.Fatal(err)
		}
		name := filepath.Join("testdata", fmt.Sprintf("%s-%d.elf", prefix, i))
		if err := os.WriteFile(name, img, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: base %#x text %#x-%#x %d funcs, version %q module %q", name, m.Base, m.TextStart, m.TextEnd, len(m.Funcs), m.Version, m.Name)
	}
}
