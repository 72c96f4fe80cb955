package dump

import (
	"golang.org/x/sys/unix"

	"github.com/wasmtrace/wasmtrace/walker"
)

// registers reads a stopped thread's PC, FP, SP and thread pointer.
func registers(tid int) (walker.Thread, error) {
	var r unix.PtraceRegs
	if err := unix.PtraceGetRegs(tid, &r); err != nil {
		return walker.Thread{}, errorf(tid, "ptrace getregs", err)
	}
	return walker.Thread{PC: r.Rip, FP: r.Rbp, SP: r.Rsp, ThreadPointer: r.Fs_base}, nil
}
