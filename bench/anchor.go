package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/wasmtrace/wasmtrace/loader"
)

// ---- 7. the anchor: the kernel's own frame-pointer walk ----

// bpfFUserStack is BPF_F_USER_STACK of include/uapi/linux/bpf.h.
const bpfFUserStack = 1 << 8

// anchorBuckets is the number of buckets of the anchor's own-clock
// histogram: as many as wasmtrace's (loader.Timing), of the same width.
var anchorBuckets = len(loader.Timing{}.Buckets)

// anchorMaps are the maps of the anchor program: its counter of target
// samples, its own-clock histogram, a histogram of the frames the kernel
// returned, and the per-CPU buffer the stack is copied into.
type anchorMaps struct {
	cnt, hist, frames, buf *ebpf.Map
	maxStack               int // kernel.perf_event_max_stack: the walk's limit
}

func newAnchorMaps() (*anchorMaps, error) {
	a := &anchorMaps{maxStack: 127}
	if b, err := os.ReadFile("/proc/sys/kernel/perf_event_max_stack"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			a.maxStack = n
		}
	}
	var err error
	mk := func(typ ebpf.MapType, value, entries uint32) *ebpf.Map {
		if err != nil {
			return nil
		}
		var m *ebpf.Map
		m, err = ebpf.NewMap(&ebpf.MapSpec{Type: typ, KeySize: 4, ValueSize: value, MaxEntries: entries})
		return m
	}
	a.cnt = mk(ebpf.PerCPUArray, 8, 1)
	a.hist = mk(ebpf.Array, 8, uint32(anchorBuckets))
	a.frames = mk(ebpf.Array, 8, uint32(a.maxStack+1))
	a.buf = mk(ebpf.PerCPUArray, uint32(8*a.maxStack), 1)
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *anchorMaps) Close() {
	for _, m := range []*ebpf.Map{a.cnt, a.hist, a.frames, a.buf} {
		if m != nil {
			m.Close()
		}
	}
}

// lookupAdd1 adds 1 to the u64 value of map m at the u32 key at R10+off.
func lookupAdd1(m *ebpf.Map, off int16) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.R10), asm.Add.Imm(asm.R2, int32(off)),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
	}
}

// anchorProgram is what perf record -g asks of the kernel on each sample,
// as a BPF program: on each sample of pid (any thread, any mode) it counts
// the sample, then walks the user stack by frame pointers with
// bpf_get_stack(ctx, buf, 8 × perf_event_max_stack, BPF_F_USER_STACK),
// timing the walk with bpf_ktime_get_ns into a histogram like wasmtrace's
// timing map, and counts the frames the kernel returned. It sends nothing
// anywhere.
func anchorProgram(a *anchorMaps, pid int) asm.Instructions {
	ins := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnGetCurrentPidTgid.Call(),
		asm.RSh.Imm(asm.R0, 32),
		asm.JNE.Imm(asm.R0, int32(pid), "out"),
		asm.StoreImm(asm.R10, -4, 0, asm.Word),
	}
	ins = append(ins, lookupAdd1(a.cnt, -4)...)
	ins = append(ins,
		asm.FnKtimeGetNs.Call(),
		asm.Mov.Reg(asm.R7, asm.R0), // t0
		asm.LoadMapPtr(asm.R1, a.buf.FD()),
		asm.Mov.Reg(asm.R2, asm.R10), asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Reg(asm.R2, asm.R0),
		asm.Mov.Imm(asm.R3, int32(8*a.maxStack)),
		asm.Mov.Imm(asm.R4, bpfFUserStack),
		asm.FnGetStack.Call(),
		asm.Mov.Reg(asm.R8, asm.R0), // bytes written, or -errno
		asm.FnKtimeGetNs.Call(),
		asm.Sub.Reg(asm.R0, asm.R7),
		asm.Div.Imm(asm.R0, int32(loader.TimingBucket.Nanoseconds())),
		asm.JLE.Imm(asm.R0, int32(anchorBuckets-1), "bucket"),
		asm.Mov.Imm(asm.R0, int32(anchorBuckets-1)),
		asm.StoreMem(asm.R10, -8, asm.R0, asm.Word).WithSymbol("bucket"),
	)
	ins = append(ins, lookupAdd1(a.hist, -8)...)
	ins = append(ins,
		asm.JSGE.Imm(asm.R8, 0, "nonneg"),
		asm.Mov.Imm(asm.R8, 0),
		asm.RSh.Imm(asm.R8, 3).WithSymbol("nonneg"),
		asm.JLE.Imm(asm.R8, int32(a.maxStack), "frames"),
		asm.Mov.Imm(asm.R8, int32(a.maxStack)),
		asm.StoreMem(asm.R10, -12, asm.R8, asm.Word).WithSymbol("frames"),
	)
	ins = append(ins, lookupAdd1(a.frames, -12)...)
	return append(ins, asm.Mov.Imm(asm.R0, 0).WithSymbol("out"), asm.Return())
}

// readArray reads every u64 of an array map.
func readArray(m *ebpf.Map, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		_ = m.Lookup(uint32(i), &out[i])
	}
	return out
}

// anchorStats reads the anchor's statistics like readBPF reads wasmtrace's:
// samples is its counter of target samples, timing its own-clock histogram.
func anchorStats(pp *perfProgram, a *anchorMaps) (bpfStats, []uint64, error) {
	st, err := pp.prog.Stats()
	if err != nil {
		return bpfStats{}, nil, err
	}
	s := bpfStats{runTime: st.Runtime, runCnt: st.RunCount, samples: sumPerCPU(a.cnt), timing: readArray(a.hist, anchorBuckets)}
	return s, readArray(a.frames, a.maxStack+1), nil
}

// anchorRunOnce is bpfRunOnce for the anchor program: attached at bpfHz to
// every CPU and filtered to t's pid, for one window.
func anchorRunOnce(o *options, a *anchorMaps, t *target, depth int) (bpfRun, error) {
	if depth != 0 {
		t.resume()
		defer t.pause()
	}
	pp, err := attachPerfProgram("wtbench_anchor", anchorProgram(a, t.pid))
	if err != nil {
		return bpfRun{}, fmt.Errorf("bpf_get_stack program: %w", err)
	}
	defer pp.Close()
	time.Sleep(300 * time.Millisecond)
	s0, f0, err := anchorStats(pp, a)
	if err != nil {
		return bpfRun{}, err
	}
	t0 := time.Now()
	time.Sleep(o.bpfWindow)
	s1, f1, err := anchorStats(pp, a)
	if err != nil {
		return bpfRun{}, err
	}
	run := bpfRun{depth: depth, anchor: true, d: s1.sub(s0), window: time.Since(t0), frames: make([]uint64, len(f1))}
	for i := range f1 {
		run.frames[i] = f1[i] - f0[i]
	}
	return run, nil
}

// histMedian is the median of a histogram of small integers (frames).
func histMedian(h []uint64) (med int, n uint64) {
	for _, v := range h {
		n += v
	}
	if n == 0 {
		return 0, 0
	}
	var seen uint64
	for i, v := range h {
		seen += v
		if 2*seen >= n {
			return i, n
		}
	}
	return len(h) - 1, n
}

// anchorFrames merges the anchor's histograms of returned frames at depth.
func (r *bpfResult) anchorFrames(depth int) []uint64 {
	var frames []uint64
	for _, run := range r.runs {
		if run.anchor && run.depth == depth {
			if frames == nil {
				frames = make([]uint64, len(run.frames))
			}
			for i, v := range run.frames {
				frames[i] += v
			}
		}
	}
	return frames
}
