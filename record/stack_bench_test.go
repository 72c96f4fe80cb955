package record

import (
	"fmt"
	"log/slog"
	"os"
	"testing"

	"github.com/wasmtrace/wasmtrace/internal/testtarget"
	"github.com/wasmtrace/wasmtrace/loader"
)

// BenchmarkStack turns one kernel sample of 3, 30 and 100 Wasm frames into
// a symbolized stack, as Run does for every sample. The frames are real:
// PCs in the deep function of a live test target (testdata/targets,
// -scenario deep). It needs root and WASMTRACE_BENCH_TARGET set to the
// target binary (make bench does both).
func BenchmarkStack(b *testing.B) {
	bin := os.Getenv("WASMTRACE_BENCH_TARGET")
	if bin == "" || os.Geteuid() != 0 {
		b.Skip("set WASMTRACE_BENCH_TARGET to a test target binary and run as root")
	}
	pid := startDeepTarget(b, bin)
	t, err := Prepare(pid, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	var leaf uint64
	for _, m := range t.Syms.Modules() {
		for _, f := range m.Funcs {
			if m.Name == "wasmtrace_bench" && f.Name == "deep" {
				leaf = (f.Start + f.End) / 2
			}
		}
	}
	if leaf == 0 {
		b.Fatal("function deep of module wasmtrace_bench not found")
	}
	for _, depth := range []int{3, 30, 100} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			s := loader.Sample{PID: uint32(pid), TID: uint32(pid) + 1, Comm: "target", Where: loader.InWasm,
				UserPC: leaf, PCs: make([]uint64, depth), ActStart: []uint16{0}}
			s.PCs[0] = leaf
			for i := 1; i < depth; i++ {
				s.PCs[i] = leaf + 1 // a return address: looked up at -1
			}
			sb := stackBuilder{syms: t.Syms, stats: &Stats{Stops: map[string]int{}}}
			for b.Loop() {
				if got := sb.stack(s); len(got.Frames) != depth {
					b.Fatalf("%d frames, want %d", len(got.Frames), depth)
				}
			}
		})
	}
}

func startDeepTarget(b *testing.B, bin string) int {
	b.Helper()
	return testtarget.Start(b, bin, "-scenario", "deep", "-depth", "1", "-iters", "700000").Process.Pid
}
