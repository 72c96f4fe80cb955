package symbolize

import (
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/wasmtrace/wasmtrace/proc"
)

// countingProcess is a fakeProcess that counts its reads and reads many
// ranges at once like proc.ProcessMemory.
type countingProcess struct {
	*fakeProcess
	mu        sync.Mutex
	reads     int // ReadAt calls
	manyCalls int // ReadMany calls
	spans     int // spans over all ReadMany calls
}

func (c *countingProcess) ReadAt(p []byte, addr uint64) (int, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.fakeProcess.ReadAt(p, addr)
}

func (c *countingProcess) ReadMany(spans []proc.Span) {
	c.mu.Lock()
	c.manyCalls++
	c.spans += len(spans)
	c.mu.Unlock()
	for i := range spans {
		_, spans[i].Err = c.fakeProcess.ReadAt(spans[i].Buf, spans[i].Addr)
	}
}

func (c *countingProcess) reset() {
	c.mu.Lock()
	c.reads, c.manyCalls, c.spans = 0, 0, 0
	c.mu.Unlock()
}

func countingSymbolizer(f *fakeProcess) (*Symbolizer, *countingProcess) {
	c := &countingProcess{fakeProcess: f}
	s := New(os.Getpid(), c)
	s.readMaps = func(int) ([]proc.Mapping, error) { return append([]proc.Mapping(nil), f.maps...), nil }
	return s, c
}

// placeMany puts n copies of the golden image g in memory, one after the
// other as Wasmtime's allocations end up, and returns their bases.
func placeMany(f *fakeProcess, g golden, img []byte, n int) []uint64 {
	span := (uint64(len(img)) + page - 1) &^ (page - 1)
	bases := make([]uint64, n)
	for i := range bases {
		bases[i] = 0x7e00_0000_0000 + uint64(i)*span
		f.placeImage(bases[i], img, g.textOff, g.textSize)
	}
	return bases
}

// Refresh reads the headers of all new modules in two vectored reads and
// parses none; a refresh with nothing changed reads nothing; a Lookup
// parses the one module it lands in.
func TestSymbolizerLazy(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	img := readGolden(t, g.file)
	var f fakeProcess
	bases := placeMany(&f, g, img, 300)
	lib := f.mapping(0x5000_0000, make([]byte, 2*page), "r-xp") // a shared library's text
	lib.Path, lib.Inode, lib.Offset = "/usr/lib/libfoo.so", 42, page
	f.mapping(0x5000_0000-page, make([]byte, page), "r--p").Path = "/usr/lib/libfoo.so"
	s, c := countingSymbolizer(&f)

	added, err := s.Refresh()
	if added != len(bases) || err != nil {
		t.Fatalf("Refresh = %d, %v; want %d, nil", added, err, len(bases))
	}
	if c.reads != 0 || c.manyCalls != 2 {
		t.Errorf("first Refresh: %d reads, %d vectored reads; want 0 and 2", c.reads, c.manyCalls)
	}
	for _, im := range s.images {
		if im.state.Load() != stateUnparsed {
			t.Fatalf("%v parsed by Refresh", im)
		}
	}
	if r := s.TextRanges(); len(r) != len(bases) || r[7] != [2]uint64{bases[7] + g.textOff, bases[7] + g.textOff + g.textSize} {
		t.Errorf("TextRanges = %d ranges, [7] %#x", len(r), r[7])
	}
	if s.Len() != len(bases) {
		t.Errorf("Len = %d", s.Len())
	}

	c.reset()
	if added, err := s.Refresh(); added != 0 || err != nil {
		t.Errorf("second Refresh = %d, %v", added, err)
	}
	if c.reads != 0 || c.spans != 0 {
		t.Errorf("unchanged Refresh: %d reads, %d spans read; want none", c.reads, c.spans)
	}

	pc := bases[42] + g.textOff + 0x90
	fn, m, ok := s.Lookup(pc)
	if !ok || fn.Name != "chain_c" || m.Name != "demo_mod" || m.Base != bases[42] {
		t.Fatalf("Lookup = %+v, %+v, %v", fn, m, ok)
	}
	parsed := 0
	for _, im := range s.images {
		if im.state.Load() != stateUnparsed {
			parsed++
		}
	}
	if parsed != 1 {
		t.Errorf("%d modules parsed by one Lookup, want 1", parsed)
	}
	// Again in the same epoch: no read at all.
	c.reset()
	if _, m2, _ := s.Lookup(pc + 1); m2 != m || c.reads+c.spans != 0 {
		t.Errorf("second Lookup: module %p (want %p), %d reads %d spans", m2, m, c.reads, c.spans)
	}
	// After a Refresh: one vectored read of the headers.
	s.Refresh()
	c.reset()
	if _, m2, _ := s.Lookup(pc); m2 != m || c.reads != 0 || c.manyCalls != 1 {
		t.Errorf("Lookup after Refresh: module %p (want %p), %d reads, %d vectored", m2, m, c.reads, c.manyCalls)
	}
	if v := s.EngineVersion(); v != g.version {
		t.Errorf("EngineVersion = %q, want %q", v, g.version)
	}
	mods := s.Modules()
	if len(mods) != len(bases) {
		t.Fatalf("Modules = %d", len(mods))
	}
	for i, m := range mods {
		if m.Base != bases[i] {
			t.Fatalf("Modules[%d] at %#x, want %#x", i, m.Base, bases[i])
		}
	}
	checkGolden(t, g, bases[299], mods[299])
}

// A module freed and another compiled at the same address between the
// cheap pass and the first Lookup: the parse sees other headers and names
// nothing; the next Refresh locates the new module.
func TestSymbolizerReplacedBeforeParse(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	img := readGolden(t, g.file)
	var f fakeProcess
	f.placeImage(g.base, img, g.textOff, g.textSize)
	s, _ := countingSymbolizer(&f)
	if added, err := s.Refresh(); added != 1 || err != nil {
		t.Fatalf("Refresh = %d, %v", added, err)
	}
	*f.byteAt(g.base + uint64(len(img)) - 1) ^= 0xff // the last section header
	pc := g.base + g.textOff + 0x90
	if fn, m, ok := s.Lookup(pc); ok || m != nil {
		t.Errorf("Lookup of a replaced module = %+v, %v, %v", fn, m, ok)
	}
	if len(s.Modules()) != 0 {
		t.Errorf("Modules lists a replaced module")
	}
	if added, err := s.Refresh(); added != 1 || err != nil {
		t.Errorf("Refresh after replacement = %d, %v; want 1, nil", added, err)
	}
	if fn, _, ok := s.Lookup(pc); !ok || fn.Name != "chain_c" {
		t.Errorf("Lookup of the new module = %+v, %v", fn, ok)
	}
}

// A module parsed and used, then freed and another compiled at the same
// address with the same maps lines: Refresh reads nothing, and the first
// Lookup after it sees other headers and names nothing.
func TestSymbolizerReplacedAfterParse(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	img := readGolden(t, g.file)
	var f fakeProcess
	f.placeImage(g.base, img, g.textOff, g.textSize)
	s, c := countingSymbolizer(&f)
	s.Refresh()
	pc := g.base + g.textOff + 0x90
	if fn, _, ok := s.Lookup(pc); !ok || fn.Name != "chain_c" {
		t.Fatalf("Lookup = %+v, %v", fn, ok)
	}
	*f.byteAt(g.base + 0x30) ^= 0x01 // e_flags: other headers
	c.reset()
	if added, err := s.Refresh(); added != 0 || err != nil || c.reads+c.spans != 0 {
		t.Errorf("Refresh = %d, %v with %d reads, %d spans; want 0, nil, no reads", added, err, c.reads, c.spans)
	}
	if fn, m, ok := s.Lookup(pc); ok || m != nil {
		t.Errorf("Lookup of the replaced module = %+v, %v, %v; want nothing", fn, m, ok)
	}
	if st := s.images[0].state.Load(); st != stateReplaced {
		t.Errorf("state %d, want replaced", st)
	}
	if added, _ := s.Refresh(); added != 1 {
		t.Errorf("Refresh after the Lookup added %d, want 1", added)
	}
}

// What a cache of Lookup's answers relies on: Generation holds while
// nothing changes, Current says a module is still in memory, and both see
// a module replaced at the same address with the same maps lines.
func TestSymbolizerGenerationAndCurrent(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	img := readGolden(t, g.file)
	var f fakeProcess
	f.placeImage(g.base, img, g.textOff, g.textSize)
	s, _ := countingSymbolizer(&f)
	g0 := s.Generation()
	s.Refresh()
	g1 := s.Generation()
	if g1 == g0 {
		t.Errorf("a Refresh that found a module left the generation at %d", g1)
	}
	pc := g.base + g.textOff + 0x90
	_, m, ok := s.Lookup(pc)
	if !ok || !s.Current(m) {
		t.Fatalf("Lookup = %v, %v; Current false", m, ok)
	}
	s.Refresh()
	if s.Generation() != g1 || !s.Current(m) {
		t.Errorf("an unchanged Refresh: generation %d (was %d), Current %v", s.Generation(), g1, s.Current(m))
	}
	if s.Current(nil) || s.Current(&Module{TextStart: 1}) {
		t.Errorf("Current of a module never known")
	}
	*f.byteAt(g.base + 0x30) ^= 0x01 // e_flags: another module in its place
	s.Refresh()
	if s.Current(m) {
		t.Errorf("Current of a replaced module")
	}
	g2 := s.Generation()
	if g2 == g1 {
		t.Errorf("a module found replaced left the generation at %d", g2)
	}
	if s.Current(m); s.Generation() != g2 {
		t.Errorf("asking again about a replaced module changed the generation")
	}
}

// The module's memory disappears (while its maps lines stay) between the
// cheap pass and the parse: no panic, nothing named, the module dropped
// by the next Refresh with its reason, once.
func TestSymbolizerMemoryGoneBeforeParse(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	img := readGolden(t, g.file)
	for _, c := range []struct {
		name       string
		start, end uint64 // what becomes unreadable
	}{
		{"all of it", g.base, g.base + uint64(len(img)) + page},
		{"symbols only", g.base + 0x3180, g.base + 0x3400}, // .symtab, .strtab
	} {
		t.Run(c.name, func(t *testing.T) {
			var f fakeProcess
			f.placeImage(g.base, img, g.textOff, g.textSize)
			s, _ := countingSymbolizer(&f)
			if added, err := s.Refresh(); added != 1 || err != nil {
				t.Fatalf("Refresh = %d, %v", added, err)
			}
			f.unmapMemory(c.start, c.end)
			pc := g.base + g.textOff + 0x90
			if fn, m, ok := s.Lookup(pc); ok || m != nil {
				t.Errorf("Lookup = %+v, %v, %v; want nothing", fn, m, ok)
			}
			if len(s.Modules()) != 0 {
				t.Errorf("Modules lists the module")
			}
			_, err := s.Refresh()
			if c.name == "symbols only" {
				// Headers intact: a damaged module, reported.
				var ie *ImageError
				if !errors.As(err, &ie) || ie.Base != g.base {
					t.Errorf("Refresh err = %v; want the image at %#x reported", err, g.base)
				}
			}
			if len(s.TextRanges()) != 0 {
				t.Errorf("TextRanges = %#x, want the module dropped", s.TextRanges())
			}
			if _, err := s.Refresh(); err != nil {
				t.Errorf("reported again: %v", err)
			}
			if _, _, ok := s.Lookup(pc); ok {
				t.Errorf("Lookup found a function after the drop")
			}
		})
	}
}

// Concurrent first Lookups of the same modules parse each once and agree
// (run with -race).
func TestSymbolizerConcurrentParse(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	img := readGolden(t, g.file)
	var f fakeProcess
	bases := placeMany(&f, g, img, 20)
	s, _ := countingSymbolizer(&f)
	s.Refresh()
	var wg sync.WaitGroup
	got := make([][]*Module, 8)
	for w := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, b := range bases {
				_, m, ok := s.Lookup(b + g.textOff + 0x90)
				if !ok {
					t.Errorf("Lookup at %#x failed", b)
				}
				got[w] = append(got[w], m)
			}
			if w%2 == 0 {
				s.Refresh()
			} else {
				s.Modules()
			}
		}()
	}
	wg.Wait()
	for w := range got {
		for i := range got[w] {
			if got[w][i] != got[0][i] {
				t.Fatalf("worker %d got another module %d", w, i)
			}
		}
	}
}

// An image whose cheap pass fails is reported by Refresh, with the image's
// address, and not looked at again.
func TestSymbolizerCheapPassRejects(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	img := append([]byte(nil), readGolden(t, g.file)...)
	img[0x3c] = 0 // e_shnum 0
	var f fakeProcess
	f.placeImage(g.base, img, g.textOff, g.textSize)
	s, c := countingSymbolizer(&f)
	_, err := s.Refresh()
	var ie *ImageError
	if !errors.As(err, &ie) || ie.Base != g.base || !errors.Is(err, ErrNotImage) {
		t.Fatalf("Refresh err = %v, want ErrNotImage at %#x", err, g.base)
	}
	c.reset()
	if _, err := s.Refresh(); err != nil || c.reads+c.spans != 0 {
		t.Errorf("second Refresh: err %v, %d reads %d spans", err, c.reads, c.spans)
	}
}
