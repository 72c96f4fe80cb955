package proc

import (
	"bytes"
	"errors"
	"testing"
)

// flat is memory readable in [lo, hi), where byte a holds byte(a).
type flat struct {
	lo, hi uint64
	reads  int
}

func (f *flat) ReadAt(p []byte, addr uint64) (int, error) {
	f.reads++
	if addr < f.lo || addr+uint64(len(p)) > f.hi || addr+uint64(len(p)) < addr {
		return 0, ErrUnreadable
	}
	for i := range p {
		p[i] = byte(addr + uint64(i))
	}
	return len(p), nil
}

func TestPageCache(t *testing.T) {
	m := &flat{lo: 0x10000, hi: 0x12800}
	c := &PageCache{Mem: m}
	want := func(addr uint64, n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(addr + uint64(i))
		}
		return b
	}
	for _, r := range []struct {
		addr uint64
		n    int
		ok   bool
	}{
		{0x10008, 8, true},
		{0x10010, 8, true},  // same page: no new read
		{0x10ffc, 8, true},  // across two pages
		{0x12400, 8, true},  // a page only partly readable: read directly
		{0x127fc, 8, false}, // past the end
		{0x0fffc, 8, false}, // before the start
		{0x10000, 9000, true},
		{^uint64(0) - 3, 8, false},
	} {
		b := make([]byte, r.n)
		_, err := c.ReadAt(b, r.addr)
		if r.ok && (err != nil || !bytes.Equal(b, want(r.addr, r.n))) {
			t.Errorf("read %d at %#x: %v", r.n, r.addr, err)
		}
		if !r.ok && !errors.Is(err, ErrUnreadable) {
			t.Errorf("read %d at %#x: %v, want unreadable", r.n, r.addr, err)
		}
	}
	before := m.reads
	for i := 0; i < 100; i++ {
		b := make([]byte, 8)
		c.ReadAt(b, 0x10000+uint64(i)*8)
	}
	if m.reads != before {
		t.Errorf("%d reads of cached pages", m.reads-before)
	}
	if n, err := c.ReadAt(nil, 5); n != 0 || err != nil {
		t.Errorf("empty read: %d, %v", n, err)
	}
}
