package dump

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/wasmtrace/wasmtrace/walker"
)

// Code: 0x1000-0x1fff Wasm function "f<hex>"; 0x3000-0x3fff a trampoline.
func testNamer(pc uint64) (string, bool, bool) {
	switch {
	case pc >= 0x1000 && pc < 0x2000:
		return "f" + string("0123456789abcdef"[pc>>4&0xf]), false, true
	case pc >= 0x3000 && pc < 0x4000:
		return "trampoline", true, true
	}
	return "", false, false
}

func TestWrite(t *testing.T) {
	threads := []Thread{
		{TID: 10, Name: "main", Stack: walker.Result{}},
		{TID: 11, Name: "worker", Pause: 420 * time.Microsecond, Held: 42 * time.Microsecond, Reads: 7, Stack: walker.Result{
			Where: walker.InWasm, PCs: []uint64{0x1010, 0x1021, 0x1031, 0x1041}, ActStart: []int{0, 2},
		}},
		{TID: 12, Stack: walker.Result{
			Where: walker.InHost, PCs: []uint64{0x1051, 0x3001, 0x9001}, ActStart: []int{0, 1},
		}},
		{TID: 13, Name: "gone", Err: ErrExited},
		{TID: 14, Name: "odd", Err: errors.New("thread 14: ptrace: boom")},
		{TID: 15, Name: "bad", Stack: walker.Result{Where: walker.InWasm, Stop: walker.StopFPOrder, PCs: []uint64{0x1010}, ActStart: []int{0}}},
		{TID: 16, Name: "entering", Stack: walker.Result{Where: walker.InWasm, Stop: walker.StopTransition}},
		{TID: 17, Name: "nested fibers", Stack: walker.Result{
			Where: walker.InWasm, PCs: []uint64{0x1010, 0x1021, 0x1031, 0x1041}, ActStart: []int{0, 2},
			Fibers: 0b11, StackEnds: 0b01, OnFiber: true,
		}},
		{TID: 18, Name: "signal stack", Stack: walker.Result{
			Where: walker.InHost, PCs: []uint64{0x1051}, ActStart: []int{0}, OnFiber: true,
		}},
	}
	var b bytes.Buffer
	if err := Write(&b, threads, testNamer, true); err != nil {
		t.Fatal(err)
	}
	want := `thread 10 (main): (no Wasm)
thread 11 (worker): in Wasm  [paused at most 420µs, held 42µs, 7 reads]
  #0   0x0000000000001010  f1
  #1   0x0000000000001021  f2
                          [host]
  #2   0x0000000000001031  f3
  #3   0x0000000000001041  f4
thread 12: in host code called from Wasm
                          [host]
  #0   0x0000000000001051  f5
                          [host]
  #1   0x0000000000009001  0x9001
thread 13 (gone): exited during the dump
thread 14 (odd): stack not taken: thread 14: ptrace: boom
thread 15 (bad): in Wasm, walk stopped: frame pointer not increasing
  #0   0x0000000000001010  f1
thread 16 (entering): in Wasm, walk stopped: sampled while entering or leaving Wasm
thread 17 (nested fibers): in Wasm, on a fiber
  #0   0x0000000000001010  f1
  #1   0x0000000000001021  f2
                          [fiber]
                          [host]
  #2   0x0000000000001031  f3
  #3   0x0000000000001041  f4
                          [fiber]
thread 18 (signal stack): in host code called from Wasm
                          [host]
  #0   0x0000000000001051  f5
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
