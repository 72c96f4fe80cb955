package profile_test

import (
	"fmt"
	"testing"

	"github.com/wasmtrace/wasmtrace/profile"
)

// BenchmarkAdd aggregates samples as a recording does: 30-frame Wasm
// stacks (with a [host] marker in the middle), 16 distinct stacks over 4
// threads.
func BenchmarkAdd(b *testing.B) {
	var samples []profile.Sample
	for i := 0; i < 16; i++ {
		var frames []profile.Frame
		for d := 0; d < 30; d++ {
			if d == 15 {
				frames = append(frames, profile.HostFrame())
				continue
			}
			frames = append(frames, profile.WasmFrame(fmt.Sprintf("func_%d_%d", d, i%(d+1)), "bench_module"))
		}
		samples = append(samples, profile.Sample{Frames: frames, PID: 100, TID: 100 + i%4, Thread: "worker"})
	}
	p := profile.New()
	for i := 0; b.Loop(); i++ {
		p.Add(samples[i%len(samples)])
	}
}

// BenchmarkAddStack counts samples by StackID, as a recording does for a
// stack it has seen before (record's stack cache): no frame is compared.
func BenchmarkAddStack(b *testing.B) {
	p := profile.New()
	var stacks []profile.StackID
	for i := 0; i < 16; i++ {
		st := profile.StackID(0)
		for d := 0; d < 30; d++ {
			st = p.Push(st, p.Frame(profile.WasmFrame(fmt.Sprintf("func_%d_%d", d, i%(d+1)), "bench_module")))
		}
		stacks = append(stacks, st)
	}
	threads := []profile.ThreadID{p.Thread(100, "p", 100, "worker"), p.Thread(100, "p", 101, "worker")}
	for i := 0; b.Loop(); i++ {
		p.AddStack(stacks[i%len(stacks)], threads[i%2], 1)
	}
}
