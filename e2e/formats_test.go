package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A real recording of each test program, in each file format, opened by the
// tool it is for: go tool pprof, speedscope's own schema, a headless browser.
func TestFormatsOfRealProfiles(t *testing.T) {
	requireRoot(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found (make deps-test): %v", err)
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (make deps-test): %v", err)
	}
	validator := filepath.Join(repoRoot, "profile/testdata/speedscope/validate.js")
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			target := startTarget(t, targetBin(t, v, false), "-scenario", "nested")
			dir := t.TempDir()
			for _, name := range []string{"p.pb.gz", "p.speedscope.json", "p.svg"} {
				r := runWasmtrace(t, "-p", fmt.Sprint(target.Process.Pid), "-d", "1s", "-F", "499", "-o", filepath.Join(dir, name))
				if r.code != 0 {
					t.Fatalf("record -o %s exited %d: %s", name, r.code, r.stderr)
				}
			}
			out, err := exec.Command("go", "tool", "pprof", "-top", filepath.Join(dir, "p.pb.gz")).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "inner_leaf") || !strings.Contains(string(out), "outer_mid") {
				t.Errorf("go tool pprof -top: %v\n%s", err, out)
			}
			out, err = exec.Command(node, validator, filepath.Join(dir, "p.speedscope.json")).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "valid p.speedscope.json") {
				t.Errorf("speedscope schema: %v\n%s", err, out)
			}
			// The browser's DOM after the flame graph's script ran holds
			// every function as a frame label.
			dom, err := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
				"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--user-data-dir="+t.TempDir(), "--dump-dom", "file://"+filepath.Join(dir, "p.svg")).Output()
			if err != nil {
				t.Fatalf("chromium --dump-dom: %v", err)
			}
			for _, f := range []string{"outer", "outer_mid", "[host]", "inner", "inner_leaf"} {
				if !strings.Contains(string(dom), ">"+f+"<") {
					t.Errorf("the rendered flame graph has no frame %q", f)
				}
			}
			if t.Failed() {
				os.WriteFile(filepath.Join(os.TempDir(), "wasmtrace-"+v+".dom.html"), dom, 0o644)
			}
		})
	}
}
