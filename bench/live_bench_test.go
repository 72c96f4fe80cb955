package main

import (
	"log/slog"
	"os"
	"testing"

	"github.com/wasmtrace/wasmtrace/proc"
	"github.com/wasmtrace/wasmtrace/record"
	"github.com/wasmtrace/wasmtrace/symbolize"
)

// The live benchmarks run on a test target with 100 compiled modules
// (testdata/targets, -scenario modules): set WASMTRACE_BENCH_TARGET to the
// target binary and run as root (make bench does both).

var modulesTarget *target

func TestMain(m *testing.M) {
	code := m.Run()
	if modulesTarget != nil {
		modulesTarget.stop()
	}
	os.Exit(code)
}

// liveModules returns the pid of a running target with 100 compiled
// modules, or skips.
func liveModules(b *testing.B) int {
	b.Helper()
	bin := os.Getenv("WASMTRACE_BENCH_TARGET")
	if bin == "" || os.Geteuid() != 0 {
		b.Skip("set WASMTRACE_BENCH_TARGET to a test target binary and run as root")
	}
	if modulesTarget == nil {
		t, err := startTarget("modules", bin, "-scenario", "modules", "-iters", "700000")
		if err != nil {
			b.Fatal(err)
		}
		modulesTarget = t
	}
	return modulesTarget.pid
}

func liveSymbolizer(b *testing.B) *symbolize.Symbolizer {
	pid := liveModules(b)
	s := symbolize.New(pid, proc.ProcessMemory{PID: pid})
	if _, err := s.Refresh(); err != nil {
		b.Logf("refresh: %v", err)
	}
	if n := len(s.Modules()); n < firstModules {
		b.Fatalf("found %d modules, want at least %d", n, firstModules)
	}
	return s
}

// BenchmarkSymbolizerLookup names one PC (a Wasm function's middle, in
// turn across all the modules): what each frame of each sample costs.
func BenchmarkSymbolizerLookup(b *testing.B) {
	s := liveSymbolizer(b)
	var pcs []uint64
	for _, m := range s.Modules() {
		for _, f := range m.Funcs {
			pcs = append(pcs, (f.Start+f.End)/2)
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, _, ok := s.Lookup(pcs[i%len(pcs)]); !ok {
			b.Fatal("lookup failed")
		}
	}
}

// BenchmarkSymbolizerRefresh is the rescan wasmtrace does every 200 ms, with
// 101 modules in memory and none new.
func BenchmarkSymbolizerRefresh(b *testing.B) {
	s := liveSymbolizer(b)
	for b.Loop() {
		if added, err := s.Refresh(); added != 0 || err != nil {
			b.Fatalf("refresh: added %d, %v", added, err)
		}
	}
}

// BenchmarkPrepare is record.Prepare on the 100-module target: finding the
// layout in the binary and symbolizing every module, before sampling.
func BenchmarkPrepare(b *testing.B) {
	pid := liveModules(b)
	log := slog.New(slog.DiscardHandler)
	for b.Loop() {
		if _, err := record.Prepare(pid, log); err != nil {
			b.Fatal(err)
		}
	}
}
