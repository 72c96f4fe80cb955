package testtarget

import (
	"path/filepath"
	"testing"
)

// AsyncBin returns testdata/async/bin/async-VERSION (VERSION v39 or v37),
// the Wasmtime embedder that runs Wasm on async fibers (see
// testdata/async/README.md), building it with testdata/async/build.sh when
// missing. Like Bin, a build failure fails the test in CI and with -short
// skips it elsewhere. Run it with Start (it prints "ready" too).
func AsyncBin(tb testing.TB, version string) string {
	tb.Helper()
	dir := filepath.Join(Root(), "testdata/async/bin")
	return built(tb, filepath.Join(dir, "async-"+version), "testdata/async/build.sh", version, dir)
}
