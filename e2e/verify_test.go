package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
)

var summaryLine = regexp.MustCompile(`\d+ samples, .* lost`)

var verifiedLine = regexp.MustCompile(`(?m)^wasmtrace: verified (\d+) samples: (\d+) identical, (\d+) differ(.*)$`)

// record --verify replays every sample's kernel walk with the Go walker:
// on every scenario of every Wasmtime version the two must agree on every
// sample, read for read and frame for frame.
func TestVerify(t *testing.T) {
	requireRoot(t)
	scenarios := []struct {
		name string
		args []string
		min  int // verified samples this scenario must give at least
	}{
		{"chain", nil, 100},
		{"nested", nil, 100},
		{"hostburn", nil, 100},
		{"recursion", nil, 100},
		{"threads", []string{"-threads", "3"}, 100},
		{"late", []string{"-late", "1s"}, 50},
		{"all", nil, 100},
		{"idle", nil, 0},
	}
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			bin := targetBin(t, v, false)
			total := 0
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) {
					cmd := startTarget(t, bin, append([]string{"-scenario", sc.name}, sc.args...)...)
					r := runWasmtrace(t, "record", "-p", fmt.Sprint(cmd.Process.Pid), "-d", "5s", "-F", "499",
						"--verify", "--format", "folded", "-o", "-")
					m := verifiedLine.FindStringSubmatch(r.stderr)
					if m == nil {
						t.Fatalf("exit %d, no verification line in:\n%s", r.code, r.stderr)
					}
					n, _ := strconv.Atoi(m[1])
					same, _ := strconv.Atoi(m[2])
					differ, _ := strconv.Atoi(m[3])
					total += n
					t.Logf("%s (%s)", m[0], summaryLine.FindString(r.stderr))
					if differ != 0 || same != n || r.code != 0 {
						t.Errorf("exit %d; the walkers differ:\n%s", r.code, r.stderr)
					}
					if m[4] != "" {
						t.Errorf("samples not checked: %s", m[4])
					}
					if n < sc.min {
						t.Errorf("%d samples verified, want at least %d:\n%s", n, sc.min, r.stderr)
					}
				})
			}
			t.Logf("%s: %d samples verified", v, total)
			if total < 500 {
				t.Errorf("%s: %d samples verified in all, want at least 500", v, total)
			}
		})
	}
}

// Differences make the exit status 4, documented in record -h.
func TestVerifyHelp(t *testing.T) {
	r := runWasmtrace(t, "record", "-h")
	for _, want := range []string{"--verify[=FRACTION]", "4 --verify found", "verified N samples: N identical, 0 differ"} {
		if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(r.stderr + r.stdout) {
			t.Errorf("record -h does not say %q:\n%s", want, r.stderr)
		}
	}
	r = runWasmtrace(t, "record", "-p", "1", "--verify=2")
	if r.code != 2 {
		t.Errorf("--verify=2: exit %d, want 2 (bad usage)", r.code)
	}
}

// checkVerified asserts that wasmtrace's --verify summary on stderr says
// at least min samples were checked, all identical, none left unchecked.
func checkVerified(t *testing.T, stderr string, min int) {
	t.Helper()
	m := verifiedLine.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no verification summary: %s", stderr)
	}
	n, _ := strconv.Atoi(m[1])
	same, _ := strconv.Atoi(m[2])
	differ, _ := strconv.Atoi(m[3])
	if differ != 0 || n < min || same != n || m[4] != "" {
		t.Errorf("verified %d samples, %d identical, %d differ%s: want >= %d, all identical\n%s", n, same, differ, m[4], min, stderr)
	}
	t.Logf("verified %d samples, all identical", n)
}
