package symbolize

import "testing"

// Following notes: a module a rescan no longer finds still names the
// samples taken before its unmap note (Forget); one a rescan finds names
// nothing until its code note (Born); and its headers are not reread,
// since the notes say when memory is reused.
func TestSymbolizerFollowNotes(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	img := readGolden(t, g.file)
	var f fakeProcess
	f.placeImage(g.base, img, g.textOff, g.textSize)
	s, c := countingSymbolizer(&f)
	s.Refresh()
	s.FollowNotes()
	pc := g.base + g.textOff + 0x90
	lo, hi := g.base+g.textOff, g.base+g.textOff+g.textSize
	if fn, _, ok := s.Lookup(pc); !ok || fn.Name != "chain_c" {
		t.Fatalf("Lookup of a module found by the first rescan = %+v, %v", fn, ok)
	}

	// Freed in the process, its unmap note not read yet: still named.
	end := g.base + uint64(len(img)) + 2*page
	f.unmapMemory(g.base, end)
	maps := f.maps[:0]
	for _, m := range f.maps {
		if m.End <= g.base || m.Start >= end {
			maps = append(maps, m)
		}
	}
	f.maps = maps
	s.Refresh()
	if len(s.images) != 0 || len(s.retired) != 1 {
		t.Fatalf("after the module went: %d images, %d retired; want 0, 1", len(s.images), len(s.retired))
	}
	c.reset()
	if fn, m, ok := s.Lookup(pc); !ok || fn.Name != "chain_c" || !s.Current(m) {
		t.Errorf("Lookup of a module gone from memory before its unmap note = %+v, %v", fn, ok)
	}
	if c.reads+c.spans != 0 {
		t.Errorf("Lookup read the process %d times", c.reads+c.spans)
	}
	gen := s.Generation()
	s.Forget(lo, hi)
	if fn, m, ok := s.Lookup(pc); ok || m != nil {
		t.Errorf("Lookup after the unmap note = %+v, %v", fn, ok)
	}
	if s.Generation() == gen {
		t.Error("Forget left the generation as it was")
	}

	// Compiled again at the same address: found by a rescan ahead of its
	// code note, it names nothing until the note.
	f.placeImage(g.base, img, g.textOff, g.textSize)
	s.Refresh()
	if fn, _, ok := s.Lookup(pc); ok {
		t.Errorf("Lookup of a module before its code note = %+v", fn)
	}
	gen = s.Generation()
	s.Born(lo, hi)
	if s.Generation() == gen {
		t.Error("Born left the generation as it was: a cache would keep the module's PCs unresolved")
	}
	if fn, _, ok := s.Lookup(pc); !ok || fn.Name != "chain_c" {
		t.Errorf("Lookup after the code note = %+v, %v", fn, ok)
	}
	// A retired module whose note never came is dropped in time.
	s.retired = append(s.retired, retiredImage{im: s.images[0], since: s.images[0].found.Add(-2 * retiredFor)})
	s.Refresh()
	if len(s.retired) != 0 {
		t.Errorf("%d retired modules kept past %s", len(s.retired), retiredFor)
	}
}
