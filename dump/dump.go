// Package dump takes the current Wasm stack of every thread of a live
// process with the reference walker (walker.Walk), the way a debugger
// would: each thread in turn is stopped with ptrace (PTRACE_SEIZE, then
// PTRACE_INTERRUPT), its registers and thread pointer are read
// (PTRACE_GETREGS), its stack is walked through process_vm_readv while it
// is stopped, and it is let go at once (PTRACE_DETACH). One thread is
// stopped at a time, for the time of one walk; the other threads run on.
package dump

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/wasmtrace/wasmtrace/arch"
	"github.com/wasmtrace/wasmtrace/layout"
	"github.com/wasmtrace/wasmtrace/proc"
	"github.com/wasmtrace/wasmtrace/walker"
)

// ErrExited means the thread exited before its stack was taken.
var ErrExited = errors.New("thread exited")

// Thread is one thread's stack.
type Thread struct {
	TID  int
	Name string
	// Regs are the registers the walk started from.
	Regs walker.Thread
	// Stack is the walk; valid when Err is nil.
	Stack walker.Result
	// Pause bounds how long the thread was held: from PTRACE_INTERRUPT
	// until PTRACE_DETACH returned. It includes the time the thread took
	// to reach the stop (it may have been waiting for a CPU).
	Pause time.Duration
	// Held is the part of Pause after the stop was seen: reading the
	// registers, the walk and the detach.
	Held time.Duration
	// Reads counts the reads of the target's memory made while stopped.
	Reads int
	// Err says why the thread's stack could not be taken (ErrExited when
	// it exited first).
	Err error
}

// Options say how to walk the target.
type Options struct {
	Layout *layout.Layout
	Arch   arch.Arch
	// Stacks says where the target's threads keep their own stacks.
	Stacks proc.Stacks
	// InWasm reports whether a PC is in compiled Wasm code.
	InWasm func(pc uint64) bool
}

// Take takes the stack of every thread of pid, one thread at a time. It
// fails only when the threads cannot be listed; each thread's own failure
// is in its Thread.Err. No thread is left stopped or traced, whatever
// fails.
func Take(pid int, opt Options) ([]Thread, error) {
	tids, err := proc.Threads(pid)
	if err != nil {
		return nil, err
	}
	// ptrace requests are accepted only from the thread that attached:
	// keep this goroutine on one OS thread from SEIZE to DETACH.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	mem := proc.ProcessMemory{PID: pid}
	out := make([]Thread, 0, len(tids))
	for _, tid := range tids {
		th := Thread{TID: tid, Name: proc.ThreadName(pid, tid)}
		th.Err = stopped(tid, func(regs walker.Thread) {
			cache := &proc.PageCache{Mem: mem}
			regs.Main, regs.Stacks = tid == pid, opt.Stacks
			th.Regs = regs
			th.Stack = walker.Walk(cache, opt.Layout, opt.Arch, regs, opt.InWasm)
			th.Reads = cache.Reads
		}, &th.Pause, &th.Held)
		if errors.Is(th.Err, ErrExited) && th.Name == "" {
			continue // gone before it could even be named
		}
		out = append(out, th)
	}
	return out, nil
}

// stopped runs f with the registers of thread tid while the thread is
// stopped, and measures the pause (see Thread.Pause and Thread.Held).
func stopped(tid int, f func(walker.Thread), pause, held *time.Duration) (err error) {
	if err := seize(tid); err != nil {
		return err
	}
	t0 := time.Now()
	var tStop time.Time
	sig := 0
	stoppedOK := false
	defer func() {
		// Detach in every case. A tracee that is not in a ptrace stop
		// cannot be detached; it was not stopped by us then (it exited, or
		// interrupt failed), and the kernel detaches it when wasmtrace
		// exits, which it does right after a dump.
		if derr := detach(tid, sig, stoppedOK); derr != nil && err == nil {
			err = derr
		}
		*pause = time.Since(t0)
		if stoppedOK {
			*held = time.Since(tStop)
		}
	}()
	if err := interrupt(tid); err != nil {
		return err
	}
	if sig, err = waitStop(tid); err != nil {
		return err
	}
	stoppedOK, tStop = true, time.Now()
	regs, err := registers(tid)
	if err != nil {
		return err
	}
	f(regs)
	return nil
}

func errorf(tid int, what string, err error) error {
	return fmt.Errorf("thread %d: %s: %w", tid, what, err)
}
