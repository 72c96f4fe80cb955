package proc

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Span is one range of a vectored read: Buf is filled from Addr.
type Span struct {
	Addr uint64
	Buf  []byte
	// Err is set by the read: nil when all of Buf was read, otherwise
	// why not (wrapping ErrUnreadable for memory the target has not
	// mapped). Buf's contents are then unspecified.
	Err error
}

// ManyReader is a Memory that can read many ranges in one go.
type ManyReader interface {
	Memory
	// ReadMany fills every span it can and sets each span's Err.
	ReadMany(spans []Span)
}

// Bounds of one process_vm_readv call made by ReadMany.
const (
	// maxIovecs is IOV_MAX, the kernel's limit on both the local and
	// the remote vector.
	maxIovecs = 1024
	// maxCallBytes bounds the bytes one call copies (a span larger than
	// this is read alone), so that one call never pins and copies an
	// unbounded amount of the target's memory.
	maxCallBytes = 8 << 20
)

// readv is unix.ProcessVMReadv; tests replace it.
var readv = func(pid int, local []unix.Iovec, remote []unix.RemoteIovec) (int, error) {
	return unix.ProcessVMReadv(pid, local, remote, 0)
}

// ReadMany fills spans from pid's memory with as few process_vm_readv(2)
// calls as it can: each call carries up to 1024 spans and 8 MiB. The
// kernel copies the spans in order and stops at the first byte it cannot
// read, returning the count copied so far, so a call tells exactly which
// span failed: that one is marked unreadable and the next call resumes
// after it. A failure that is not about one span (the process exited, no
// permission) is set on every span not yet read. If the kernel refuses the
// vector itself (EINVAL, e.g. a lower IOV_MAX), the spans of that call are
// read one by one.
func ReadMany(pid int, spans []Span) {
	local := make([]unix.Iovec, 0, min(len(spans), maxIovecs))
	remote := make([]unix.RemoteIovec, 0, min(len(spans), maxIovecs))
	for i := 0; i < len(spans); {
		if len(spans[i].Buf) == 0 {
			spans[i].Err = nil
			i++
			continue
		}
		// One call: spans[i:j], none empty.
		local, remote = local[:0], remote[:0]
		total := 0
		j := i
		for ; j < len(spans) && len(local) < maxIovecs; j++ {
			n := len(spans[j].Buf)
			if n == 0 {
				break // read on its own turn, keeps the accounting simple
			}
			if len(local) > 0 && total+n > maxCallBytes {
				break
			}
			var iov unix.Iovec
			iov.Base = &spans[j].Buf[0]
			iov.SetLen(n)
			local = append(local, iov)
			remote = append(remote, unix.RemoteIovec{Base: uintptr(spans[j].Addr), Len: n})
			total += n
		}
		n, err := readv(pid, local, remote)
		switch {
		case err == nil:
		case errors.Is(err, unix.EFAULT):
			n = 0 // nothing of spans[i] could be read
		case errors.Is(err, unix.EINVAL):
			for k := i; k < j; k++ {
				spans[k].Err = readOne(pid, spans[k].Buf, spans[k].Addr)
			}
			i = j
			continue
		default:
			for k := i; k < len(spans); k++ {
				spans[k].Err = fmt.Errorf("read %d bytes at %#x of pid %d: %w", len(spans[k].Buf), spans[k].Addr, pid, err)
			}
			return
		}
		k := i
		for ; k < j && n >= len(spans[k].Buf); k++ {
			n -= len(spans[k].Buf)
			spans[k].Err = nil
		}
		if k < j {
			// The copy stopped in spans[k]: the rest of the call was
			// not attempted and is read by the next one.
			spans[k].Err = fmt.Errorf("read %d bytes at %#x of pid %d: %w", len(spans[k].Buf), spans[k].Addr, pid, ErrUnreadable)
			k++
		}
		i = k
	}
}

// readOne reads one span with a single-element vector.
func readOne(pid int, p []byte, addr uint64) error {
	_, err := ProcessMemory{PID: pid}.ReadAt(p, addr)
	return err
}

// ReadMany reads spans from the process (see the function ReadMany).
func (m ProcessMemory) ReadMany(spans []Span) { ReadMany(m.PID, spans) }

// ReadSpans fills spans from mem: in a few vectored reads when mem is a
// ManyReader, otherwise one ReadAt each.
func ReadSpans(mem Memory, spans []Span) {
	if len(spans) == 0 {
		return
	}
	if mr, ok := mem.(ManyReader); ok {
		mr.ReadMany(spans)
		return
	}
	for i := range spans {
		if len(spans[i].Buf) == 0 {
			spans[i].Err = nil
			continue
		}
		_, spans[i].Err = mem.ReadAt(spans[i].Buf, spans[i].Addr)
	}
}
