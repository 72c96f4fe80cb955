package symbolize

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wasmtrace/wasmtrace/proc"
)

// placeFile maps img at base the way Module::deserialize_file does: the
// whole file from offset 0, header pages r--, the text r-x, the rest r--,
// every mapping naming the file.
func (f *fakeProcess) placeFile(base uint64, img []byte, textOff, textSize uint64, path string, inode uint64) {
	f.placeImage(base, img, textOff, textSize)
	for i := range f.maps {
		m := &f.maps[i]
		if m.Start >= base && m.Start < base+uint64(len(img)) {
			m.Path, m.Inode, m.Offset = path, inode, m.Start-base
		}
	}
}

// unmapMemory makes [start, end) unreadable while the mappings stay, as
// a truncated file's lost pages are.
func (f *fakeProcess) unmapMemory(start, end uint64) {
	var keep []fakeRegion
	for _, r := range f.regions {
		rend := r.start + uint64(len(r.data))
		if rend <= start || r.start >= end {
			keep = append(keep, r)
			continue
		}
		if r.start < start {
			keep = append(keep, fakeRegion{r.start, r.data[:start-r.start]})
		}
		if rend > end {
			keep = append(keep, fakeRegion{end, r.data[end-r.start:]})
		}
	}
	f.regions = keep
}

func TestFindModulesMappedFile(t *testing.T) {
	for _, file := range []string{"v39-module.elf", "v37-module.elf", "v3-module.elf", "v39-component.elf", "v37-component.elf"} {
		t.Run(file, func(t *testing.T) {
			img := readGolden(t, file)
			const base = 0x7f00_1234_0000
			want, err := ParseImage(bytes.NewReader(img), int64(len(img)), base)
			if err != nil {
				t.Fatal(err)
			}
			textOff := want.TextStart - base
			textSize := (want.TextEnd - want.TextStart + page - 1) &^ (page - 1)
			var f fakeProcess
			const path = "/srv/app dir/x.cwasm (deleted)"
			f.placeFile(base, img, textOff, textSize, path, 99)
			// A shared library (ET_DYN at offset 0) and an executable
			// mapping of a file whose offset 0 is not mapped: not images,
			// and not errors either.
			lib := make([]byte, page)
			copy(lib, "\x7fELF\x02\x01\x01")
			binary.LittleEndian.PutUint16(lib[0x10:], 3) // ET_DYN
			f.placeFile(0x2000_0000, append(lib, make([]byte, page)...), page, page, "/usr/lib/libc.so.6", 42)
			far := f.mapping(0x3000_0000, make([]byte, page), "r-xp")
			far.Path, far.Inode, far.Offset = "/opt/other", 43, 0x5000

			mods, err := FindModules(&f, f.maps)
			if err != nil {
				t.Errorf("err = %v", err)
			}
			if len(mods) != 1 {
				t.Fatalf("found %d modules, want 1", len(mods))
			}
			m := mods[0]
			if m.Base != base || m.TextStart != want.TextStart || m.TextEnd != want.TextEnd || m.Name != want.Name ||
				m.Version != want.Version || !slices.Equal(m.Funcs, want.Funcs) || (m.Component == nil) != (want.Component == nil) {
				t.Errorf("module from the mapped file differs from the image parsed alone:\n got %+v\nwant %+v", m, want)
			}
			if m.File != path || m.Origin() != "mapped from "+path {
				t.Errorf("File %q, Origin %q; want %q", m.File, m.Origin(), path)
			}
			for _, fn := range m.Funcs {
				if v := m.forFunc(fn); v.File != path {
					t.Errorf("%s reported with a module from %q, want %q", fn.Name, v.File, path)
				}
			}
			if want.Origin() != "in memory" {
				t.Errorf("Origin of an image in memory = %q", want.Origin())
			}
		})
	}
}

// A Wasmtime header counts only at the file's offset 0, in one run of
// mappings of that file reaching down to it.
func TestFindModulesMappedFileRun(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	img := readGolden(t, g.file)
	for _, c := range []struct {
		name   string
		break_ func(m *proc.Mapping)
	}{
		{"other file below", func(m *proc.Mapping) { m.Inode = 7 }},
		{"other path below", func(m *proc.Mapping) { m.Path = "/y" }},
		{"header unreadable", func(m *proc.Mapping) { m.Perms = "---p" }},
		{"offset inconsistent", func(m *proc.Mapping) { m.Offset = page }},
		{"anonymous below", func(m *proc.Mapping) { m.Path, m.Inode = "", 0 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f fakeProcess
			f.placeFile(g.base, img, g.textOff, g.textSize, "/x.cwasm", 5)
			c.break_(&f.maps[0])
			mods, err := FindModules(&f, f.maps)
			if len(mods) != 0 || err != nil {
				t.Errorf("got %d modules, err %v; want none, no error", len(mods), err)
			}
		})
	}
}

// A mapped file cut short (truncated after it was mapped: its lost pages
// cannot be read) or rewritten is read from memory, and what does not
// parse is skipped with the reason.
func TestFindModulesMappedFileDamaged(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	img := readGolden(t, g.file)
	textEnd := g.base + g.textOff + g.textSize
	end := g.base + (uint64(len(img))+page-1)&^(page-1)

	t.Run("truncated", func(t *testing.T) {
		var f fakeProcess
		f.placeFile(g.base, img, g.textOff, g.textSize, "/x.cwasm", 5)
		f.unmapMemory(textEnd, end)
		mods, err := FindModules(&f, f.maps)
		var ie *ImageError
		if len(mods) != 0 || !errors.As(err, &ie) || ie.Base != g.base || !errors.Is(err, proc.ErrUnreadable) {
			t.Errorf("got %d modules, err %v; want none and an unreadable image at %#x", len(mods), err, g.base)
		}
	})
	t.Run("section headers rewritten", func(t *testing.T) {
		var f fakeProcess
		f.placeFile(g.base, img, g.textOff, g.textSize, "/x.cwasm", 5)
		shoff := binary.LittleEndian.Uint64(img[0x28:])
		for a := g.base + shoff; a < g.base+uint64(len(img)); a++ {
			*f.byteAt(a) = 0xff
		}
		mods, err := FindModules(&f, f.maps)
		if len(mods) != 0 || !errors.Is(err, ErrNotImage) {
			t.Errorf("got %d modules, err %v; want none and ErrNotImage", len(mods), err)
		}
	})
	t.Run("names rewritten", func(t *testing.T) {
		var f fakeProcess
		f.placeFile(g.base, img, g.textOff, g.textSize, "/x.cwasm", 5)
		for a := textEnd; a < g.base+uint64(len(img))-0x400; a++ {
			*f.byteAt(a) ^= 0x5a
		}
		mods, _ := FindModules(&f, f.maps)
		for _, m := range mods {
			checkModule(t, m, g.base, end-g.base)
		}
	})
}

// The Symbolizer follows a mapped file like anonymous images: found,
// kept while its headers read the same, dropped with the reason (once)
// when they no longer read.
func TestSymbolizerMappedFile(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	img := readGolden(t, g.file)
	var f fakeProcess
	f.placeFile(g.base, img, g.textOff, g.textSize, "/x.cwasm", 5)
	s := fakeSymbolizer(&f)
	if added, err := s.Refresh(); added != 1 || err != nil {
		t.Fatalf("Refresh = %d, %v; want 1, nil", added, err)
	}
	pc := g.base + g.textOff + 0x90
	if fn, m, ok := s.Lookup(pc); !ok || fn.Name != "chain_c" || m.File != "/x.cwasm" {
		t.Errorf("Lookup = %+v, %+v, %v; want chain_c mapped from /x.cwasm", fn, m, ok)
	}
	if r := s.TextRanges(); len(r) != 1 || r[0] != [2]uint64{g.base + g.textOff, g.base + g.textOff + g.textSize} {
		t.Errorf("TextRanges = %#x", r)
	}
	if added, err := s.Refresh(); added != 0 || err != nil {
		t.Errorf("second Refresh = %d, %v; want 0, nil", added, err)
	}

	// Truncated past the text: the section headers are gone. The maps
	// line is the same, so Refresh reads nothing; the first Lookup after
	// it rereads the headers, and names nothing.
	f.unmapMemory(g.base+g.textOff+g.textSize, g.base+uint64(len(img))+page)
	s.Refresh()
	if fn, m, ok := s.Lookup(pc); ok || m != nil {
		t.Errorf("Lookup after truncation = %+v, %v, %v; want nothing", fn, m, ok)
	}
	added, err := s.Refresh()
	if added != 0 || len(s.Modules()) != 0 || !errors.Is(err, proc.ErrUnreadable) {
		t.Errorf("after truncation: added %d, %d modules, err %v; want the module dropped, unreadable", added, len(s.Modules()), err)
	}
	if _, err := s.Refresh(); err != nil {
		t.Errorf("failure reported again: %v", err)
	}
}

func TestWasmtimeHeader(t *testing.T) {
	g := goldenByFile(t, "v3-module.elf")
	eh := append([]byte(nil), readGolden(t, g.file)[:ehdrSize]...)
	if !wasmtimeHeader(eh) {
		t.Fatalf("Wasmtime 3 image header not recognised")
	}
	for _, c := range []struct {
		name string
		at   int
		b    byte
	}{
		{"magic", 1, 'X'}, {"class", 4, 1}, {"data", 5, 9}, {"OS/ABI", 7, 0}, {"ET_DYN", 0x10, 3},
	} {
		bad := append([]byte(nil), eh...)
		bad[c.at] = c.b
		if wasmtimeHeader(bad) {
			t.Errorf("%s: accepted", c.name)
		}
	}
	if wasmtimeHeader(eh[:ehdrSize-1]) {
		t.Errorf("short header accepted")
	}
}

// FuzzMappedFile: any bytes mapped as a file, with the mappings' offsets
// and files perturbed, give no panic, and any module found satisfies
// Lookup's invariants and lies inside the file's mappings.
func FuzzMappedFile(f *testing.F) {
	for _, g := range goldens {
		f.Add(readGolden(f, g.file), uint8(0), uint16(0))
	}
	f.Add(readGolden(f, "v39-component.elf"), uint8(0), uint16(0))
	f.Add([]byte("\x7fELF\x02\x01\x01\xc8"), uint8(1), uint16(1))
	f.Fuzz(checkMappedFile)
}

// TestMappedFileMutations runs FuzzMappedFile's check on seeded random
// mutations of the captured images, so that plain test runs cover it.
func TestMappedFileMutations(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	files := []string{"v39-module.elf", "v37-module.elf", "v3-module.elf", "v39-component.elf"}
	for i := 0; i < 2000; i++ {
		data := append([]byte(nil), readGolden(t, files[i%len(files)])...)
		for n := rng.IntN(8); n >= 0; n-- {
			// Mostly the header and the section table, where a byte
			// changes the most.
			at := rng.IntN(len(data))
			if rng.IntN(2) == 0 {
				at = rng.IntN(ehdrSize)
			} else if shoff := int(binary.LittleEndian.Uint64(data[0x28:])); rng.IntN(2) == 0 && shoff > 0 && shoff < len(data) {
				at = shoff + rng.IntN(len(data)-shoff)
			}
			data[at] = byte(rng.Uint32())
		}
		if rng.IntN(4) == 0 {
			data = data[:rng.IntN(len(data))]
		}
		checkMappedFile(t, data, uint8(rng.Uint32()), uint16(rng.IntN(4)))
	}
}

// checkMappedFile maps data as a .cwasm file, perturbs one of its mappings
// (which, delta) and checks what FindModules makes of it.
func checkMappedFile(t *testing.T, data []byte, which uint8, delta uint16) {
	if len(data) <= page {
		return
	}
	const base = 0x7f00_0000_0000
	var p fakeProcess
	textSize := uint64(min(len(data)-page, page))
	p.placeFile(base, data, page, textSize, "/f.cwasm", 3)
	// Perturb one mapping: its offset, its file, or drop its memory.
	if n := len(p.maps); which != 0 && n > 0 {
		m := &p.maps[int(which)%n]
		switch which / 16 % 4 {
		case 0:
			m.Offset += uint64(delta) * page
		case 1:
			m.Offset -= uint64(delta) * page
		case 2:
			m.Inode += uint64(delta)
		case 3:
			p.unmapMemory(m.Start, m.Start+uint64(delta)*16)
		}
	}
	end := base + (uint64(len(data))+page-1)&^(page-1)
	mods, _ := FindModules(&p, p.maps)
	for _, m := range mods {
		checkModule(t, m, base, end-base)
		if m.TextStart < base+page || m.TextEnd > base+page+textSize || m.File != "/f.cwasm" {
			t.Errorf("text %#x-%#x from %q outside the r-x mapping of the file", m.TextStart, m.TextEnd, m.File)
		}
	}
}
