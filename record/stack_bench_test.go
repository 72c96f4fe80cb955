package record

import (
	"fmt"
	"log/slog"
	"os"
	"testing"

	"github.com/wasmtrace/wasmtrace/internal/testtarget"
	"github.com/wasmtrace/wasmtrace/loader"
	"github.com/wasmtrace/wasmtrace/profile"
)

// BenchmarkStack counts one kernel sample of 3, 30 and 100 Wasm frames in
// a profile, as Run does for every sample: symbolized (or found in the
// caches) and aggregated. The frames are real:
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
	// cached: the same stack every time, as most samples are (the stack
	// cache answers); stacks: a stack not cached whose PCs are (the PC
	// cache answers, the trie is walked); cold: nothing cached, every PC
	// looked up and named.
	for _, mode := range []string{"cached", "stacks", "cold"} {
		for _, depth := range []int{3, 30, 100} {
			b.Run(fmt.Sprintf("%s/depth=%d", mode, depth), func(b *testing.B) {
				s := loader.Sample{PID: uint32(pid), TID: uint32(pid) + 1, Comm: "target", Where: loader.InWasm,
					UserPC: leaf, PCs: make([]uint64, depth), ActStart: []uint16{0}}
				s.PCs[0] = leaf
				for i := 1; i < depth; i++ {
					s.PCs[i] = leaf + 1 // a return address: looked up at -1
				}
				p := profile.New()
				sb := newStackBuilder(t.Syms, &Stats{Stops: map[string]int{}}, p)
				sb.add(p, s, "target")
				for b.Loop() {
					switch mode {
					case "stacks":
						clear(sb.stacks)
					case "cold":
						clear(sb.stacks)
						clear(sb.pcs)
						clear(sb.checked)
					}
					sb.add(p, s, "target")
				}
				if got := p.Samples(); len(got) != 1 || len(got[0].Frames) != depth {
					b.Fatalf("%d samples, want one of %d frames", len(got), depth)
				}
			})
		}
	}
}

func startDeepTarget(b *testing.B, bin string) int {
	b.Helper()
	return testtarget.Start(b, bin, "-scenario", "deep", "-depth", "1", "-iters", "700000").Process.Pid
}
