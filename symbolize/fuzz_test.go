package symbolize

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

func FuzzParseImage(f *testing.F) {
	for _, g := range goldens {
		f.Add(readGolden(f, g.file))
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const base = 0x7f00_0000_0000
		m, err := parseImage(bytes.NewReader(data), int64(len(data)), base)
		if err == nil {
			checkModule(t, m, base, uint64(len(data)))
		}

		// The same bytes found in memory: header pages below an r-x page.
		if len(data) <= page {
			return
		}
		var p fakeProcess
		p.mapping(base, data[:page], "r--p")
		p.mapping(base+page, data[page:min(len(data), 2*page)], "r-xp")
		if len(data) > 2*page {
			p.mapping(base+2*page, data[2*page:], "r--p")
		}
		mods, _ := FindModules(&p, p.maps)
		for _, m := range mods {
			checkModule(t, m, base, (uint64(len(data))+page-1)&^(page-1))
			if m.TextStart < base+page || m.TextEnd > base+2*page {
				t.Errorf("text %#x-%#x outside the r-x mapping", m.TextStart, m.TextEnd)
			}
		}
	})
}

// checkModule checks the invariants Lookup relies on.
func checkModule(t *testing.T, m *Module, base, size uint64) {
	t.Helper()
	if m.Base != base || m.TextStart < base || m.TextEnd <= m.TextStart || m.TextEnd-base > size {
		t.Fatalf("module base %#x text %#x-%#x for image of %#x bytes at %#x", m.Base, m.TextStart, m.TextEnd, size, base)
	}
	for i, f := range m.Funcs {
		if f.Start >= f.End || f.Start < m.TextStart || f.End > m.TextEnd {
			t.Fatalf("func %+v outside text %#x-%#x", f, m.TextStart, m.TextEnd)
		}
		if i > 0 && m.Funcs[i-1].End > f.Start {
			t.Fatalf("funcs overlap: %+v %+v", m.Funcs[i-1], f)
		}
		if f.Name == "" {
			t.Fatalf("func without name: %+v", f)
		}
		if g, ok := m.Lookup(f.Start); !ok || g != f {
			t.Fatalf("Lookup(%#x) = %+v, want %+v", f.Start, g, f)
		}
	}
}

func FuzzReadPerfMap(f *testing.F) {
	f.Add([]byte(perfMap))
	f.Add([]byte("0x1000 10 a b c\r\n2000 0x20 _wasm_function_3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		funcs, err := ParsePerfMap(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("error from an in-memory reader: %v", err)
		}
		if len(funcs) > bytes.Count(data, []byte("\n"))+1 {
			t.Fatalf("%d entries from %d lines", len(funcs), bytes.Count(data, []byte("\n"))+1)
		}
		for i, fn := range funcs {
			if fn.Start >= fn.End {
				t.Fatalf("empty entry %+v", fn)
			}
			if i > 0 && (funcs[i-1].Start >= fn.Start || funcs[i-1].End > fn.Start) {
				t.Fatalf("entries out of order or overlapping: %+v %+v", funcs[i-1], fn)
			}
			if fn.Name == "" || len(fn.Name) > maxPerfMapLine {
				t.Fatalf("bad name %q", fn.Name)
			}
		}
	})
}

// FuzzParseHead checks that the cheap pass (checkHeaders) accepts exactly
// the images whose headers openELF (debug/elf) accepts, with the same
// .text and fingerprint, and that every image the full parse accepts
// passes it with the same .text.
func FuzzParseHead(f *testing.F) {
	for _, g := range goldens {
		f.Add(readGolden(f, g.file))
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const base = 0x7f00_0000_0000
		size := int64(len(data))
		h, err := parseHead(bytes.NewReader(data), size, base)
		var want head
		var wantErr error
		func() {
			defer func() {
				if p := recover(); p != nil {
					wantErr = fmt.Errorf("panic: %v", p)
				}
			}()
			if size <= 0 {
				wantErr = ErrNotImage
				return
			}
			eh, _, text, _, err := openELF(io.NewSectionReader(bytes.NewReader(data), 0, size), size)
			if err != nil {
				wantErr = err
				return
			}
			want = head{base: base, textStart: base + text.Offset, textEnd: base + text.Offset + text.Size,
				size: eh.extent(), fp: eh.fingerprint, shoff: eh.shoff, shnum: eh.shnum}
		}()
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("parseHead err %v, openELF err %v", err, wantErr)
		}
		if err == nil && h != want {
			t.Fatalf("parseHead = %+v, openELF gives %+v", h, want)
		}
		if m, err := parseImage(bytes.NewReader(data), size, base); err == nil {
			if h.textStart != m.TextStart || h.textEnd != m.TextEnd || h.fp != m.fp || h.size != m.size {
				t.Fatalf("parseHead = %+v, full parse text %#x-%#x", h, m.TextStart, m.TextEnd)
			}
		}
	})
}
