package proc

import (
	"encoding/binary"
	"testing"
)

// pages is sparse memory: whole mappings, readable only inside them.
type pages struct {
	maps []Mapping
	data map[uint64][]byte // by mapping start
}

func (p *pages) ReadAt(b []byte, addr uint64) (int, error) {
	m := mappingAt(p.maps, addr)
	if m == nil || addr+uint64(len(b)) > m.End {
		return 0, ErrUnreadable
	}
	d := p.data[m.Start]
	copy(b, d[addr-m.Start:])
	return len(b), nil
}

func (p *pages) word(addr, v uint64) {
	m := mappingAt(p.maps, addr)
	binary.LittleEndian.PutUint64(p.data[m.Start][addr-m.Start:], v)
}

// A process shaped like a glibc one: a main stack, and threads whose
// stacks are a guard page and a mapping with the TCB near its top.
func glibcProcess(blockOff uint64, threads int) (*pages, []uint64) {
	p := &pages{data: map[uint64][]byte{}}
	add := func(lo, hi uint64, perms, path string) {
		p.maps = append(p.maps, Mapping{Start: lo, End: hi, Perms: perms, Path: path})
		p.data[lo] = make([]byte, hi-lo)
	}
	var tps []uint64
	base := uint64(0x7f0000000000)
	for i := range threads {
		guard := base + uint64(i)*0x110000
		add(guard, guard+0x1000, "---p", "")
		add(guard+0x1000, guard+0x101000, "rw-p", "")
		tp := guard + 0x101000 - 0x940
		tps = append(tps, tp)
		p.word(tp+blockOff, guard)
		p.word(tp+blockOff+8, 0x101000)
		// A decoy pair that holds only for some threads.
		if i%2 == 0 {
			p.word(tp+0x200, guard)
			p.word(tp+0x208, 0x101000)
		}
	}
	add(0x7ffd00000000, 0x7ffd00021000, "rw-p", "[stack]")
	return p, tps
}

func TestFindStacks(t *testing.T) {
	p, tps := glibcProcess(0x690, 3)
	tps = append(tps, 0x7f00ffff0000) // the main thread's: not in its stack
	st, how := FindStacks(p, 100, p.maps, tps)
	if st.TCBBlock != 0x690 {
		t.Errorf("TCB block at %#x, want 0x690 (%s)", st.TCBBlock, how)
	}
	if st.MainHi != 0x7ffd00021000 || st.MainLo >= 0x7ffd00000000 || st.MainLo < p.maps[len(p.maps)-2].End {
		t.Errorf("main stack %#x-%#x: not the [stack] mapping and the room below it (%s)", st.MainLo, st.MainHi, how)
	}

	// Nothing to go on: no other thread, no [stack].
	p, _ = glibcProcess(0x690, 0)
	p.maps = nil
	st, how = FindStacks(p, 100, nil, []uint64{0x1000})
	if st != (Stacks{}) || how == "" {
		t.Errorf("found %+v in nothing (%s)", st, how)
	}

	// Threads that disagree (more than the main one could): no offset.
	p, tps = glibcProcess(0x690, 4)
	p.word(tps[1]+0x690, 0)
	p.word(tps[2]+0x698, 0)
	if st, how := FindStacks(p, 100, p.maps, tps); st.TCBBlock != 0 {
		t.Errorf("found %#x where threads disagree (%s)", st.TCBBlock, how)
	}
}
