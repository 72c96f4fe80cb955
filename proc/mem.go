// Package proc reads what the kernel exposes about a running process:
// its memory, its mappings and its threads. Everything it returns comes
// from the target, so callers treat it as untrusted input.
package proc

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// Memory reads another address space. Reads never write to, stop or signal
// the target.
type Memory interface {
	// ReadAt fills p from address addr. It returns an error when any byte
	// of the range cannot be read.
	ReadAt(p []byte, addr uint64) (int, error)
}

// ErrUnreadable is returned (wrapped) for addresses the target has not mapped.
var ErrUnreadable = errors.New("address not readable")

// ProcessMemory reads a live process with process_vm_readv(2), which needs
// no ptrace stop and fails cleanly on unmapped ranges.
type ProcessMemory struct{ PID int }

func (m ProcessMemory) ReadAt(p []byte, addr uint64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	local := []unix.Iovec{{Base: &p[0]}}
	local[0].SetLen(len(p))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(p)}}
	n, err := unix.ProcessVMReadv(m.PID, local, remote, 0)
	if err != nil {
		if errors.Is(err, unix.EFAULT) {
			return 0, fmt.Errorf("read %d bytes at %#x of pid %d: %w", len(p), addr, m.PID, ErrUnreadable)
		}
		return 0, fmt.Errorf("read %d bytes at %#x of pid %d: %w", len(p), addr, m.PID, err)
	}
	if n < len(p) {
		return n, fmt.Errorf("read %d bytes at %#x of pid %d: short read of %d: %w", len(p), addr, m.PID, n, ErrUnreadable)
	}
	return n, nil
}

// ReaderAt adapts Memory to io.ReaderAt with addresses relative to base, so
// that an ELF image in memory can be handed to debug/elf as if it were a file.
// Reads past limit bytes fail, which bounds what a corrupt header can make a
// parser read.
type ReaderAt struct {
	Mem   Memory
	Base  uint64
	Limit int64
}

func (r ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= r.Limit {
		return 0, io.EOF
	}
	want := p
	if rest := r.Limit - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	n, err := r.Mem.ReadAt(want, r.Base+uint64(off))
	if err != nil {
		return n, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Word reads one little-endian 64-bit word.
func Word(m Memory, addr uint64) (uint64, error) {
	var b [8]byte
	if _, err := m.ReadAt(b[:], addr); err != nil {
		return 0, err
	}
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56, nil
}
