package loader

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Event is what made the kernel walk a thread's stack.
type Event uint16

const (
	// EventSample is a perf sample (record); no arguments.
	EventSample = Event(wasmtraceWtEventWT_EVENT_SAMPLE)
	// EventTrap is a signal of a faulting instruction about to be
	// delivered: Args are the signal, si_code and si_addr.
	EventTrap = Event(wasmtraceWtEventWT_EVENT_TRAP)
	// EventSyscall is the entry of a chosen system call: Args are its
	// number, first and third arguments.
	EventSyscall = Event(wasmtraceWtEventWT_EVENT_SYSCALL)
	// EventOffCPU is a thread back on CPU: Args[0] is how long it was
	// off (ns); the stack is the one it left with.
	EventOffCPU = Event(wasmtraceWtEventWT_EVENT_OFFCPU)
	// EventUprobe is a uprobe hit: Args[0] is the probe's index in
	// TraceOptions.Uprobes.
	EventUprobe = Event(wasmtraceWtEventWT_EVENT_UPROBE)
	// EventCode is a traced process making memory executable (mprotect
	// with PROT_EXEC returned): Args are its start, length and protection.
	// It carries no stack. Walks take that code for Wasm from then on
	// (see CodeEvents); the symbolizer should locate it before the
	// samples that follow.
	EventCode = Event(wasmtraceWtEventWT_EVENT_CODE)
	// EventUnmap is a traced process entering munmap: Args are its start
	// and length. No stack. Samples after it are not in that memory's old
	// code.
	EventUnmap = Event(wasmtraceWtEventWT_EVENT_UNMAP)
)

// IsNote reports whether e tells of the process's code rather than of a
// stack: EventCode, EventUnmap.
func (e Event) IsNote() bool { return e == EventCode || e == EventUnmap }

func (e Event) String() string {
	switch e {
	case EventSample:
		return "sample"
	case EventTrap:
		return "trap"
	case EventSyscall:
		return "syscall"
	case EventOffCPU:
		return "offcpu"
	case EventUprobe:
		return "uprobe"
	case EventCode:
		return "code"
	case EventUnmap:
		return "unmap"
	}
	return fmt.Sprintf("event(%d)", uint16(e))
}

// Uprobe is a function of an executable or library to trace.
type Uprobe struct {
	Binary, Symbol string
}

// TraceOptions choose the events of OpenTrace.
type TraceOptions struct {
	Trap     bool
	Syscalls []int // system call numbers
	OffCPU   bool
	// MinBlock is the shortest off-CPU time reported.
	MinBlock time.Duration
	Uprobes  []Uprobe
	// PID limits uprobes to one process (0: every process; the kernel
	// program still filters to traced processes).
	PID int
	// MaxRate is the most events sent per second, 0 for no limit; the
	// others are counted (Counters.Dropped).
	MaxRate int
}

// OpenTrace loads the kernel walker and attaches it to the events in o
// instead of sampling. Only processes added with SetProcess are walked.
func OpenTrace(o TraceOptions) (*Tracer, error) {
	if !o.Trap && len(o.Syscalls) == 0 && !o.OffCPU && len(o.Uprobes) == 0 {
		return nil, errors.New("no events to trace")
	}
	if o.MaxRate < 0 {
		return nil, fmt.Errorf("maximum rate %d is negative", o.MaxRate)
	}
	var progs []string
	for name, on := range map[string]bool{
		progTrap: o.Trap, progSyscall: len(o.Syscalls) > 0,
		progOffCPU: o.OffCPU, progUprobe: len(o.Uprobes) > 0,
	} {
		if on {
			progs = append(progs, name)
		}
	}
	t, err := load(append(progs, progCode, progUnmap)...)
	if err != nil {
		return nil, err
	}
	t.attachCode()
	if err := t.attachTrace(o); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *Tracer) attachTrace(o TraceOptions) error {
	cfg := wasmtraceWtTraceConfig{MaxPerSec: uint64(o.MaxRate), MinBlockNs: uint64(o.MinBlock.Nanoseconds())}
	if err := t.objs.TraceConfig.Put(uint32(0), cfg); err != nil {
		return fmt.Errorf("configure trace: %w", err)
	}
	for _, nr := range o.Syscalls {
		if err := t.objs.Syscalls.Put(uint32(nr), uint32(1)); err != nil {
			return fmt.Errorf("trace system call %d: %w", nr, err)
		}
	}
	attachRaw := func(tp string, on bool, name string) error {
		if !on {
			return nil
		}
		var l link.Link
		var err error
		switch tp {
		case "signal_deliver":
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: t.objs.WasmtraceTrap})
		case "sys_enter":
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: t.objs.WasmtraceSyscall})
		case "sched_switch":
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: t.objs.WasmtraceOffcpu})
		}
		if err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
				err = ErrPermission
			}
			return fmt.Errorf("attach %s to raw tracepoint %s: %w", name, tp, err)
		}
		t.links = append(t.links, l)
		return nil
	}
	if err := attachRaw("signal_deliver", o.Trap, "trap"); err != nil {
		return err
	}
	if err := attachRaw("sys_enter", len(o.Syscalls) > 0, "syscall"); err != nil {
		return err
	}
	if err := attachRaw("sched_switch", o.OffCPU, "offcpu"); err != nil {
		return err
	}
	for i, u := range o.Uprobes {
		ex, err := link.OpenExecutable(u.Binary)
		if err != nil {
			return fmt.Errorf("uprobe %s:%s: %w", u.Binary, u.Symbol, err)
		}
		l, err := ex.Uprobe(u.Symbol, t.objs.WasmtraceUprobe, &link.UprobeOptions{PID: o.PID, Cookie: uint64(i)})
		if err != nil {
			return fmt.Errorf("uprobe %s:%s: %w", u.Binary, u.Symbol, err)
		}
		t.links = append(t.links, l)
	}
	return nil
}
