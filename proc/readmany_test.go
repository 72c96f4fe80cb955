package proc

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// guarded maps n pages of this process's memory filled with a pattern,
// with the pages listed in holes made unreadable (PROT_NONE), and one more
// unreadable page after them, so that no read reaches other memory.
func guarded(t testing.TB, n int, holes ...int) (mem []byte, base uint64) {
	t.Helper()
	pg := os.Getpagesize()
	holes = append(holes, n)
	mem, err := unix.Mmap(-1, 0, (n+1)*pg, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	for i := range mem[:n*pg] {
		mem[i] = byte(i*7 + i/4096)
	}
	for _, h := range holes {
		if err := unix.Mprotect(mem[h*pg:(h+1)*pg], unix.PROT_NONE); err != nil {
			t.Fatal(err)
		}
	}
	return mem[:n*pg], uint64(uintptr(unsafe.Pointer(&mem[0])))
}

// checkSpans compares what ReadMany made of spans with one ReadAt each.
func checkSpans(t *testing.T, spans []Span) {
	t.Helper()
	self := ProcessMemory{PID: os.Getpid()}
	for i, sp := range spans {
		want := make([]byte, len(sp.Buf))
		_, err := self.ReadAt(want, sp.Addr)
		if (err == nil) != (sp.Err == nil) {
			t.Fatalf("span %d (%d bytes at %#x): ReadMany err %v, ReadAt err %v", i, len(sp.Buf), sp.Addr, sp.Err, err)
		}
		if err == nil && !bytes.Equal(want, sp.Buf) {
			t.Fatalf("span %d (%d bytes at %#x): contents differ", i, len(sp.Buf), sp.Addr)
		}
		if sp.Err != nil && len(sp.Buf) > 0 && !errors.Is(sp.Err, ErrUnreadable) {
			t.Fatalf("span %d: err %v, want ErrUnreadable", i, sp.Err)
		}
	}
}

func TestReadMany(t *testing.T) {
	pg := uint64(os.Getpagesize())
	_, base := guarded(t, 8, 2, 5)
	spans := []Span{
		{Addr: base, Buf: make([]byte, 64)},
		{Addr: base + pg - 10, Buf: make([]byte, 20)},     // across two readable pages
		{Addr: base + 2*pg + 8, Buf: make([]byte, 8)},     // in a hole
		{Addr: base + 3*pg, Buf: nil},                     // empty
		{Addr: base + 2*pg - 4, Buf: make([]byte, 8)},     // runs into a hole
		{Addr: base + 3*pg, Buf: make([]byte, 2*int(pg))}, // two pages
		{Addr: base + 5*pg - 1, Buf: make([]byte, 1)},     // right before a hole
		{Addr: base + 6*pg, Buf: make([]byte, 2*int(pg))}, // the end
		{Addr: base + 7*pg, Buf: make([]byte, int(pg)+1)}, // past the end
		{Addr: 0, Buf: make([]byte, 8)},                   // address 0
	}
	for i := range spans {
		spans[i].Err = errors.New("not set")
	}
	ReadMany(os.Getpid(), spans)
	checkSpans(t, spans)
	for i, ok := range []bool{true, true, false, true, false, true, true, true, false, false} {
		if (spans[i].Err == nil) != ok {
			t.Errorf("span %d: err %v, want ok=%v", i, spans[i].Err, ok)
		}
	}
}

// ReadMany never passes the kernel more than IOV_MAX ranges or (but for a
// single span) more than maxCallBytes.
func TestReadManyBounded(t *testing.T) {
	_, base := guarded(t, 4)
	var calls, maxIov, maxBytes int
	old := readv
	t.Cleanup(func() { readv = old })
	readv = func(pid int, local []unix.Iovec, remote []unix.RemoteIovec) (int, error) {
		calls++
		n := 0
		for _, r := range remote {
			n += r.Len
		}
		maxIov, maxBytes = max(maxIov, len(remote)), max(maxBytes, n)
		if len(local) != len(remote) {
			t.Fatalf("%d local, %d remote", len(local), len(remote))
		}
		if len(remote) > 1 && n > maxCallBytes {
			t.Fatalf("a call of %d spans and %d bytes", len(remote), n)
		}
		return old(pid, local, remote)
	}
	spans := make([]Span, 5000)
	for i := range spans {
		spans[i] = Span{Addr: base + uint64(i%1000)*8, Buf: make([]byte, 8)}
	}
	ReadMany(os.Getpid(), spans)
	checkSpans(t, spans)
	if calls != 5 || maxIov != maxIovecs {
		t.Errorf("%d calls of up to %d ranges, want 5 of up to %d", calls, maxIov, maxIovecs)
	}

	// Large spans: split by bytes; one larger than the bound goes alone.
	calls, maxIov, maxBytes = 0, 0, 0
	big := make([]byte, maxCallBytes+1)
	src := make([]byte, maxCallBytes+1)
	addr := uint64(uintptr(unsafe.Pointer(&src[0])))
	spans = []Span{{Addr: addr, Buf: make([]byte, maxCallBytes/2+1)}, {Addr: addr, Buf: make([]byte, maxCallBytes/2+1)}, {Addr: addr, Buf: big}}
	ReadMany(os.Getpid(), spans)
	checkSpans(t, spans)
	if calls != 3 {
		t.Errorf("%d calls for spans of 4 MiB, 4 MiB, 8 MiB+1, want 3", calls)
	}
}

// A failure that is not about one span is every span's; EINVAL makes the
// spans of that call read one by one.
func TestReadManyFailures(t *testing.T) {
	_, base := guarded(t, 2)
	old := readv
	t.Cleanup(func() { readv = old })
	readv = func(int, []unix.Iovec, []unix.RemoteIovec) (int, error) { return 0, unix.ESRCH }
	spans := []Span{{Addr: base, Buf: make([]byte, 8)}, {Addr: base + 8, Buf: make([]byte, 8)}}
	ReadMany(os.Getpid(), spans)
	for i, sp := range spans {
		if !errors.Is(sp.Err, unix.ESRCH) {
			t.Errorf("span %d: err %v, want ESRCH", i, sp.Err)
		}
	}
	readv = func(pid int, local []unix.Iovec, remote []unix.RemoteIovec) (int, error) {
		if len(remote) > 1 {
			return 0, unix.EINVAL
		}
		return old(pid, local, remote)
	}
	spans = []Span{{Addr: base, Buf: make([]byte, 8)}, {Addr: 0, Buf: make([]byte, 8)}, {Addr: base + 8, Buf: make([]byte, 8)}}
	ReadMany(os.Getpid(), spans)
	checkSpans(t, spans)
}

func TestReadSpansFallback(t *testing.T) {
	mem, base := guarded(t, 2, 1)
	spans := []Span{{Addr: base, Buf: make([]byte, 16)}, {Addr: base + uint64(os.Getpagesize()), Buf: make([]byte, 16)}}
	ReadSpans(onlyReadAt{ProcessMemory{PID: os.Getpid()}}, spans)
	if spans[0].Err != nil || !bytes.Equal(spans[0].Buf, mem[:16]) || !errors.Is(spans[1].Err, ErrUnreadable) {
		t.Errorf("spans = %+v", spans)
	}
}

type onlyReadAt struct{ m ProcessMemory }

func (o onlyReadAt) ReadAt(p []byte, addr uint64) (int, error) { return o.m.ReadAt(p, addr) }

// FuzzReadMany reads spans made from the input over memory with holes and
// checks every span against a ReadAt of its own.
func FuzzReadMany(f *testing.F) {
	f.Add([]byte{0, 10, 1, 200, 3, 0, 9, 9, 255, 255})
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{1, 2, 3}, 600))
	pg := os.Getpagesize()
	_, base := guarded(f, 8, 1, 4, 5)
	f.Fuzz(func(t *testing.T, data []byte) {
		var spans []Span
		for i := 0; i+2 < len(data); i += 3 {
			off := (int(data[i]) | int(data[i+1])<<8) % (9 * pg) // may reach the end
			n := int(data[i+2]) * 37
			spans = append(spans, Span{Addr: base + uint64(off), Buf: make([]byte, n)})
		}
		ReadMany(os.Getpid(), spans)
		checkSpans(t, spans)
	})
}
