package walker

import (
	"bytes"
	"errors"
	"testing"

	"github.com/wasmtrace/wasmtrace/proc"
)

func TestSnapshot(t *testing.T) {
	var s Snapshot
	buf := make([]byte, 8)
	if n, err := s.ReadAt(buf, 0x1000); n != 0 || !errors.Is(err, proc.ErrUnreadable) {
		t.Fatalf("empty snapshot: read %d, %v", n, err)
	}
	// A word across a chunk boundary.
	s.SetWord(0x103c, 0x1122334455667788)
	if v, err := proc.Word(&s, 0x103c); err != nil || v != 0x1122334455667788 {
		t.Fatalf("word across chunks: %#x, %v", v, err)
	}
	// Partly known ranges fail, saying how much was read.
	if n, err := s.ReadAt(buf, 0x1040); n != 4 || !errors.Is(err, proc.ErrUnreadable) {
		t.Fatalf("partial read: %d, %v", n, err)
	}
	s.Set(0x1038, []byte{1, 2, 3, 4})
	if _, err := s.ReadAt(buf, 0x1038); err != nil || !bytes.Equal(buf, []byte{1, 2, 3, 4, 0x88, 0x77, 0x66, 0x55}) {
		t.Fatalf("overwrite: % x, %v", buf, err)
	}
	s.Forget(0x103e, 1)
	if n, _ := s.ReadAt(buf, 0x1038); n != 6 {
		t.Fatalf("forgotten byte read: %d bytes", n)
	}
	s.Forget(0x9000, 8) // nothing there: no effect
	// The top of the address space.
	top := ^uint64(0) - 3
	s.Set(top, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if n, err := s.ReadAt(buf[:4], top); n != 4 || err != nil {
		t.Fatalf("last bytes: %d, %v", n, err)
	}
	if n, err := s.ReadAt(buf, top); n != 4 || !errors.Is(err, proc.ErrUnreadable) {
		t.Fatalf("read wrapping around: %d, %v", n, err)
	}
	if _, err := s.ReadAt(buf[:1], 0); err == nil {
		t.Fatal("bytes past the top were stored at 0")
	}
	s.Forget(top, 8)
	if n, _ := s.ReadAt(buf[:1], top); n != 0 {
		t.Fatal("Forget at the top did nothing")
	}
	if n, err := s.ReadAt(nil, 0x5); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}
}
