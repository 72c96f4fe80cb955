package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// helperCost is what one call of a BPF helper costs on this machine, as
// the kernel's BPF statistics see it from a perf_event program.
type helperCost struct {
	name string
	per  time.Duration // per call
}

// helperVariant is a perf_event program that, on each sample of the target
// taken in user mode, calls a helper calls times.
type helperVariant struct {
	name  string
	calls int
	body  func(big *ebpf.Map) asm.Instructions
}

// offsets in struct bpf_perf_event_data (x86-64 pt_regs).
const (
	ctxCS = 17 * 8
	ctxSP = 19 * 8
)

func readUser(size int32) func(*ebpf.Map) asm.Instructions {
	return func(*ebpf.Map) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R1, asm.R10), asm.Add.Imm(asm.R1, -32), asm.Mov.Imm(asm.R2, size),
			asm.Mov.Reg(asm.R3, asm.R7), asm.FnProbeReadUser.Call(),
		}
	}
}

// readUserBig copies size bytes of the user stack from sp into a per-CPU
// map value: what walking a copy of the stack would cost.
func readUserBig(size int32) func(*ebpf.Map) asm.Instructions {
	return func(big *ebpf.Map) asm.Instructions {
		return asm.Instructions{
			asm.LoadMapPtr(asm.R1, big.FD()),
			asm.Mov.Reg(asm.R2, asm.R10), asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.Mov.Reg(asm.R1, asm.R0), asm.Mov.Imm(asm.R2, size), asm.Mov.Reg(asm.R3, asm.R7),
			asm.FnProbeReadUser.Call(),
		}
	}
}

var helperVariants = []helperVariant{
	{"(none: the pid check and a counter)", 0, nil},
	{"bpf_probe_read_user, 8 bytes of the stack (100 in a row)", 100, readUser(8)},
	{"bpf_probe_read_user, 8 bytes of the stack (the run's only read)", 1, readUser(8)},
	{"bpf_probe_read_user, 16 bytes of the stack", 100, readUser(16)},
	{"bpf_probe_read_user, 4 KiB of the stack", 1, readUserBig(4096)},
	{"bpf_probe_read_user, 8 KiB of the stack", 1, readUserBig(8192)},
	{"bpf_ktime_get_ns", 100, func(*ebpf.Map) asm.Instructions { return asm.Instructions{asm.FnKtimeGetNs.Call()} }},
	{"bpf_get_current_comm", 100, func(*ebpf.Map) asm.Instructions {
		return asm.Instructions{asm.Mov.Reg(asm.R1, asm.R10), asm.Add.Imm(asm.R1, -32), asm.Mov.Imm(asm.R2, 16), asm.FnGetCurrentComm.Call()}
	}},
}

// measureHelpers runs each helper variant on samples of pid (a busy target)
// at 999 Hz and returns the cost of one helper call: (the variant's time
// − the empty variant's, per run) per target sample / calls. BPF statistics
// must be enabled.
func measureHelpers(pid int, window time.Duration) ([]helperCost, error) {
	cnt, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, err
	}
	defer cnt.Close()
	big, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8192, MaxEntries: 1})
	if err != nil {
		return nil, err
	}
	defer big.Close()
	var emptyPerRun float64
	var out []helperCost
	for _, v := range helperVariants {
		ins := asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.FnGetCurrentPidTgid.Call(),
			asm.RSh.Imm(asm.R0, 32),
			asm.JNE.Imm(asm.R0, int32(pid), "out"),
			asm.StoreImm(asm.R10, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, cnt.FD()),
			asm.Mov.Reg(asm.R2, asm.R10), asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
			asm.LoadMem(asm.R7, asm.R6, ctxSP, asm.DWord),
			asm.LoadMem(asm.R8, asm.R6, ctxCS, asm.DWord),
			asm.And.Imm(asm.R8, 3),
			asm.JEq.Imm(asm.R8, 0, "out"), // kernel mode: sp is not the user stack
		}
		for i := 0; i < v.calls; i++ {
			ins = append(ins, v.body(big)...)
		}
		ins = append(ins, asm.Mov.Imm(asm.R0, 0).WithSymbol("out"), asm.Return())
		rt, rc, nt, err := runHelperProgram(ins, cnt, window)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		if v.calls == 0 {
			emptyPerRun = float64(rt) / float64(max(rc, 1))
			continue
		}
		extra := float64(rt) - float64(rc)*emptyPerRun
		out = append(out, helperCost{v.name, time.Duration(extra / float64(max(nt, 1)) / float64(v.calls))})
	}
	return out, nil
}

// runHelperProgram loads ins, attaches it to 999 Hz cpu-clock events on
// every CPU for window, and returns its run time, runs and target runs.
func runHelperProgram(ins asm.Instructions, cnt *ebpf.Map, window time.Duration) (time.Duration, uint64, uint64, error) {
	pp, err := attachPerfProgram("wtbench_helper", ins)
	if err != nil {
		return 0, 0, 0, err
	}
	defer pp.Close()
	time.Sleep(200 * time.Millisecond)
	s0, err := pp.prog.Stats()
	if err != nil {
		return 0, 0, 0, err
	}
	n0 := sumPerCPU(cnt)
	time.Sleep(window)
	s1, err := pp.prog.Stats()
	if err != nil {
		return 0, 0, 0, err
	}
	return s1.Runtime - s0.Runtime, s1.RunCount - s0.RunCount, sumPerCPU(cnt) - n0, nil
}

// perfProgram is one of the benchmark's own small perf_event programs,
// attached to bpfHz cpu-clock events on every CPU (the events wasmtrace
// opens: system-wide, sampling by frequency).
type perfProgram struct {
	prog  *ebpf.Program
	links []link.Link
	fds   []int
}

// attachPerfProgram loads ins as a perf_event program and attaches it.
func attachPerfProgram(name string, ins asm.Instructions) (*perfProgram, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.PerfEvent, Instructions: ins, License: "GPL"})
	if err != nil {
		return nil, err
	}
	pp := &perfProgram{prog: prog}
	cpus, err := onlineCPUs()
	if err != nil {
		pp.Close()
		return nil, err
	}
	for _, cpu := range cpus {
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK,
			Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{})), Sample: bpfHz, Bits: unix.PerfBitFreq}
		fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			pp.Close()
			return nil, fmt.Errorf("perf event on cpu %d: %w", cpu, err)
		}
		pp.fds = append(pp.fds, fd)
		l, err := link.AttachRawLink(link.RawLinkOptions{Target: fd, Program: prog, Attach: ebpf.AttachPerfEvent})
		if err != nil {
			pp.Close()
			return nil, err
		}
		pp.links = append(pp.links, l)
	}
	return pp, nil
}

func (pp *perfProgram) Close() {
	for _, l := range pp.links {
		l.Close()
	}
	for _, fd := range pp.fds {
		unix.Close(fd)
	}
	pp.prog.Close()
}

func sumPerCPU(m *ebpf.Map) uint64 {
	var per []uint64
	var t uint64
	if m.Lookup(uint32(0), &per) == nil {
		for _, v := range per {
			t += v
		}
	}
	return t
}

// onlineCPUs parses /sys/devices/system/cpu/online ("0-3,5").
func onlineCPUs() ([]int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, err
	}
	var cpus []int
	for _, part := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("parse cpu list %q", b)
		}
		z := a
		if isRange {
			if z, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("parse cpu list %q", b)
			}
		}
		for c := a; c <= z; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
