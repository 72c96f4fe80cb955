package dump

import (
	"errors"

	"golang.org/x/sys/unix"
)

// seize makes us the thread's tracer without stopping it.
func seize(tid int) error {
	err := unix.PtraceSeize(tid)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ESRCH):
		return ErrExited
	case errors.Is(err, unix.EPERM):
		return errorf(tid, "ptrace", errors.New("operation not permitted (run as root; or the thread is already traced, by a debugger?)"))
	}
	return errorf(tid, "ptrace seize", err)
}

func interrupt(tid int) error {
	if err := unix.PtraceInterrupt(tid); err != nil {
		if errors.Is(err, unix.ESRCH) {
			reap(tid)
			return ErrExited
		}
		return errorf(tid, "ptrace interrupt", err)
	}
	return nil
}

// waitStop waits until the thread is in a ptrace stop. It returns the
// signal to hand back on detach: a signal that arrived before our
// interrupt stops the thread first (signal-delivery-stop), and would be
// lost if not re-injected.
func waitStop(tid int) (int, error) {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			return 0, ErrExited
		case err != nil:
			return 0, errorf(tid, "wait", err)
		case ws.Exited() || ws.Signaled():
			return 0, ErrExited
		case !ws.Stopped():
			continue
		}
		event := (uint32(ws) >> 16) & 0xff
		if event == unix.PTRACE_EVENT_STOP {
			return 0, nil // our interrupt, or a group stop
		}
		if event != 0 {
			return 0, nil // another ptrace event: none is enabled, but no signal to pass
		}
		return int(ws.StopSignal()), nil
	}
}

// detach lets the thread go, re-injecting sig. When the thread is not in
// a ptrace stop (stopped is false), PTRACE_DETACH would fail: interrupt it
// first so that the detach succeeds.
func detach(tid, sig int, stopped bool) error {
	if !stopped {
		if unix.PtraceInterrupt(tid) != nil {
			reap(tid)
			return nil // gone
		}
		var err error
		if sig, err = waitStop(tid); err != nil {
			return nil // gone
		}
	}
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(tid), 0, uintptr(sig), 0, 0)
	if e != 0 && e != unix.ESRCH {
		return errorf(tid, "ptrace detach", e)
	}
	return nil
}

// reap collects a traced thread that exited, if it is there to collect.
func reap(tid int) {
	var ws unix.WaitStatus
	unix.Wait4(tid, &ws, unix.WALL|unix.WNOHANG, nil)
}
