package testtarget

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The guest target of testdata/guest: a Wasmtime embedder (guest-VERSION,
// built by build.sh) running a large real guest, CRuby 3.4 for WASI from
// the npm package @ruby/3.4-wasm-wasi (downloaded by fetch.sh into
// testdata/guest/cache).

// GuestVersions are the Wasmtime versions with a guest host.
var GuestVersions = []string{"v39", "v37", "v3"}

// GuestBin returns testdata/guest/bin/guest-VERSION, building it with
// build.sh when missing, like Bin.
func GuestBin(tb testing.TB, version string) string {
	tb.Helper()
	return built(tb, filepath.Join(Root(), "testdata/guest/bin", "guest-"+version), "testdata/guest/build.sh", version)
}

// GuestWasm returns testdata/guest/cache/ruby.debug+stdlib.wasm (with a
// name section), running fetch.sh (idempotent, quick once downloaded) so
// that it is the pinned package's.
func GuestWasm(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(Root(), "testdata/guest/cache/ruby.debug+stdlib.wasm")
	if _, err := os.Stat(path); err != nil && testing.Short() && !InCI() {
		tb.Skipf("%s not downloaded (make targets); skipped in -short mode", path)
	}
	out, err := exec.Command(filepath.Join(Root(), "testdata/guest/fetch.sh")).CombinedOutput()
	if err != nil {
		tb.Fatalf("fetch the guest: %v\n%s", err, out)
	}
	return path
}

// StartGuest runs the guest host bin on wasm with the given number of Ruby
// threads, waits for its "ready" line, and kills it when the test ends.
// The compiled module is kept next to wasm (-cache): Wasmtime compiles the
// 49 MB module in 30 s to a few minutes (on a busy 2-CPU machine), and
// deserializing it leaves the same image in memory in a few seconds. So
// StartGuest waits up to 5 minutes.
func StartGuest(tb testing.TB, bin, wasm string, threads int) *exec.Cmd {
	tb.Helper()
	return StartWithin(tb, 5*time.Minute, bin, "-wasm", wasm, "-threads", strconv.Itoa(threads), "-cache", filepath.Dir(wasm))
}
