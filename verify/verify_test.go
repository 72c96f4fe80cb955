package verify

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/wasmtrace/wasmtrace/arch"
	"github.com/wasmtrace/wasmtrace/layout"
	"github.com/wasmtrace/wasmtrace/loader"
	"github.com/wasmtrace/wasmtrace/proc"
	"github.com/wasmtrace/wasmtrace/walker"
)

var l39 = &layout.Layout{
	Version: "39.0.0", Generation: layout.EntryFP,
	TLSOffset: -0x68, TLSMask: ^uint64(1),
	CTSStore: 0x10, CTSPrev: 0xa8, CTSOld: 0xb0,
	SavedExitPC: 0x20, SavedExitFP: 0x28, SavedEntry: 0x30,
	StoreExitFP: 0x28, StoreExitPC: 0x30, StoreEntry: 0x40,
}

const (
	tp    = 0x7f0000000000
	cts   = 0x7ffd00000800
	esc   = 0x7ffd00000900
	store = 0x600000
	entry = 0x7ffd00001000 // entry trampoline FP
	fp0   = 0x7ffd00000f80
	fp1   = 0x7ffd00000fc0
)

var ranges = [][2]uint64{{0x500000, 0x510000}}

// The thread's own stack, from its TCB.
var stacks = proc.Stacks{TCBBlock: 0x690}

// A thread in Wasm, two frames deep: 0x500020 called by 0x500010.
func memory() *walker.Snapshot {
	m := &walker.Snapshot{}
	m.SetWord(tp-0x68, cts|1)
	m.SetWord(cts+0x10, store)
	m.SetWord(cts+0xa8, 0)
	m.SetWord(cts+0xb0, esc)
	for _, off := range []uint64{0x20, 0x28, 0x30} {
		m.SetWord(esc+off, 0)
	}
	m.SetWord(store+0x28, 0xbad0)
	m.SetWord(store+0x30, 0xbad0)
	m.SetWord(store+0x40, entry)
	m.SetWord(fp0, fp1)
	m.SetWord(fp0+8, 0x500010)
	m.SetWord(fp1, entry)
	m.SetWord(fp1+8, 0x400000)
	m.Set(0x500020, []byte{0x90})
	m.SetWord(tp+0x690, 0x7ffc00000000)
	m.SetWord(tp+0x698, 0x200000000)
	return m
}

// logger plays the kernel: it logs what a walk reads.
type logger struct {
	mem proc.Memory
	log []loader.Read
}

func (g *logger) ReadAt(p []byte, addr uint64) (int, error) {
	n, err := g.mem.ReadAt(p, addr)
	r := loader.Read{Addr: addr, Size: uint32(len(p))}
	if err != nil {
		r.Errno = 14
	} else {
		for i, b := range p {
			r.Value |= uint64(b) << (8 * i)
		}
	}
	g.log = append(g.log, r)
	return n, err
}

// kernelSample walks mem as the kernel would and returns its sample.
func kernelSample(mem proc.Memory, th walker.Thread) loader.Sample {
	g := &logger{mem: mem}
	inWasm := func(pc uint64) bool { return pc >= ranges[0][0] && pc < ranges[0][1] }
	res := walker.Walk(g, l39, arch.AMD64, th, inWasm)
	s := loader.Sample{
		TID: 42, Comm: "worker", Where: loader.Where(res.Where), Stop: uint8(res.Stop),
		UserPC: th.PC, UserFP: th.FP, UserSP: th.SP, PCs: res.PCs,
		Fibers: res.Fibers, StackEnds: res.StackEnds, OnFiber: res.OnFiber, CTS: res.CTS,
		Log: &loader.ReadLog{FSBase: th.ThreadPointer, Gen: 1, Ranges: ranges, Reads: g.log},
	}
	for _, a := range res.ActStart {
		s.ActStart = append(s.ActStart, uint16(a))
	}
	return s
}

var thread = walker.Thread{PC: 0x500020, FP: fp0, SP: fp0 - 0x10, ThreadPointer: tp, Stacks: stacks}

func TestIdentical(t *testing.T) {
	s := kernelSample(memory(), thread)
	if !slices.Equal(s.PCs, []uint64{0x500020, 0x500010}) || s.Stop != 0 {
		t.Fatalf("test stack walks to %#x, stop %d", s.PCs, s.Stop)
	}
	if d := Compare(s, l39, arch.AMD64, stacks); d != nil {
		t.Fatalf("difference: %v", d.Reasons)
	}
	// A failed read logged as failed replays as failed.
	m := memory()
	m.Forget(fp1, 16)
	s = kernelSample(m, thread)
	if s.Stop != uint8(walker.StopRead) {
		t.Fatalf("stop %d", s.Stop)
	}
	if d := Compare(s, l39, arch.AMD64, stacks); d != nil {
		t.Fatalf("difference: %v", d.Reasons)
	}
}

func TestDifferences(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(s *loader.Sample)
		want   []string
	}{
		{"another frame", func(s *loader.Sample) { s.PCs[1]++ }, []string{"frame 1: kernel 0x500011, Go 0x500010"}},
		{"one frame more", func(s *loader.Sample) { s.PCs = append(s.PCs, 5) }, []string{"frames: kernel 3, Go 2"}},
		{"another stop", func(s *loader.Sample) { s.Stop = uint8(walker.StopFPOrder) }, []string{`stop: kernel "frame pointer not increasing", Go "ok"`}},
		{"another where", func(s *loader.Sample) { s.Where = loader.InHost }, []string{"where: kernel host, Go wasm"}},
		{"activations", func(s *loader.Sample) { s.ActStart = append(s.ActStart, 1) }, []string{"activation starts: kernel [0 1], Go [0]"}},
		{"fibers", func(s *loader.Sample) { s.Fibers, s.OnFiber = 1, true }, []string{"fibers: kernel activations 1, stack ends 0, on a fiber: true; Go 0, 0, false"}},
		{"an extra kernel read", func(s *loader.Sample) {
			s.Log.Reads = append(s.Log.Reads, loader.Read{Addr: 0x1234, Size: 8})
		}, []string{"the kernel read 8 bytes at 0x1234, the Go walker had stopped"}},
		{"a read missing from the log", func(s *loader.Sample) {
			s.Log.Reads = s.Log.Reads[:len(s.Log.Reads)-1]
		}, []string{"read 19: the Go walker read 8 bytes at 0x7ffd00000930 (logged elsewhere), the kernel had stopped"}},
		{"another address", func(s *loader.Sample) {
			s.Log.Reads[4].Addr += 8
		}, []string{"read 4: the Go walker read 8 bytes at 0x600030 (never logged by the kernel), the kernel read 8 bytes at 0x600038", "where: kernel wasm, Go no-wasm"}},
		{"another thread pointer", func(s *loader.Sample) { s.Log.FSBase += 0x1000 }, []string{"read 0: the Go walker read 8 bytes at 0x7f0000000f98 (never logged by the kernel)"}},
		{"a copy that disagreed with a direct read", func(s *loader.Sample) { s.Log.CopyMismatch = true },
			[]string{"a word the kernel took from its copy of user memory differed from a direct read of it"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := kernelSample(memory(), thread)
			c.change(&s)
			d := Compare(s, l39, arch.AMD64, stacks)
			if d == nil {
				t.Fatal("no difference found")
			}
			got := strings.Join(d.Reasons, "\n")
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("reasons\n%s\ndo not say\n%s", got, w)
				}
			}
		})
	}
}

func TestVerifierReport(t *testing.T) {
	v := New()
	good := kernelSample(memory(), thread)
	bad := kernelSample(memory(), thread)
	bad.PCs[0] = 0x500021
	v.Check(good, l39, arch.AMD64, stacks)
	v.Check(bad, l39, arch.AMD64, stacks)
	v.Check(loader.Sample{}, l39, arch.AMD64, stacks) // not logged: ignored
	v.Check(loader.Sample{Log: &loader.ReadLog{Overflow: true, Ranges: ranges}}, l39, arch.AMD64, stacks)
	v.Check(loader.Sample{Log: &loader.ReadLog{NoRegs: true}}, l39, arch.AMD64, stacks)
	v.Check(loader.Sample{Log: &loader.ReadLog{}}, l39, arch.AMD64, stacks)
	var b bytes.Buffer
	v.Write(&b, 5, func(pc uint64) string {
		if pc == 0x500010 {
			return "caller"
		}
		return ""
	})
	out := b.String()
	for _, want := range []string{
		"verified 2 samples: 1 identical, 1 differ; 3 not checked (1 compiled-code ranges of the walk no longer known, 1 read log full, 1 user registers unreadable)\n",
		"difference 1: tid 42 (worker), pc 0x500020",
		"  frame 0: kernel 0x500021, Go 0x500020\n",
		"  kernel: wasm, ok: 0x500021 0x500010 (caller)\n",
		"  Go:     wasm, ok: 0x500020 0x500010 (caller)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report\n%s\ndoes not say\n%s", out, want)
		}
	}
	b.Reset()
	v.Write(&b, 0, nil)
	if !strings.Contains(b.String(), "... and 1 more differences") {
		t.Errorf("capped report: %s", b.String())
	}
}

func TestFormatResult(t *testing.T) {
	r := walker.Result{Where: walker.InHost, Stop: walker.StopOK, PCs: []uint64{1, 2, 3}, ActStart: []int{0, 2}}
	if got, want := FormatResult(r, nil), "host, ok: 0x1 0x2 | 0x3"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := FormatResult(walker.Result{}, nil), "no-wasm, ok: no frames"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
