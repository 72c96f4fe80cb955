package layout

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/wasmtrace/wasmtrace/proc"
)

// words is a fake process memory: little-endian words by address, inside
// the mappings of a fake /proc/PID/maps.
type words struct {
	maps []proc.Mapping
	w    map[uint64]uint64
}

func (m *words) ReadAt(p []byte, addr uint64) (int, error) {
	if mp := mappingOf(m.maps, addr); mp == nil || addr+uint64(len(p)) > mp.End || !mp.Readable() {
		return 0, fmt.Errorf("%#x: %w", addr, proc.ErrUnreadable)
	}
	for i := range p {
		a := addr + uint64(i)
		p[i] = byte(m.w[a&^7] >> (8 * (a & 7)))
	}
	return len(p), nil
}

// A process with one thread (its stack and TCB), two fiber stacks in a
// pooling allocator's region (each above a guard page), the heap and a
// library's writable data.
const (
	thrLo, thrTop = 0x7f00_0000_0000, 0x7f00_0010_0000
	tp            = thrTop - 0x1000 // the TCB, at the top of the thread's stack mapping
	fibA, fibB    = 0x7e00_0000_1000, 0x7e00_0010_1000
	fibSize       = 0x000f_f000
	heap          = 0x5500_0000_0000
	libData       = 0x7d00_0000_0000
	other         = 0x7c00_0000_0000 // another thread's stack
	otherTP       = other + 0xff000
)

func fakeProcess() *words {
	maps := []proc.Mapping{
		{Start: heap, End: heap + 0x100000, Perms: "rw-p", Path: "[heap]"},
		{Start: other, End: other + 0x100000, Perms: "rw-p"},
		{Start: libData, End: libData + 0x10000, Perms: "rw-p", Inode: 42, Path: "/usr/lib/libfoo.so"},
		{Start: fibA - 0x1000, End: fibA, Perms: "---p"},
		{Start: fibA, End: fibA + fibSize, Perms: "rw-p"},
		{Start: fibB - 0x1000, End: fibB, Perms: "---p"},
		{Start: fibB, End: fibB + fibSize, Perms: "rw-p"},
		{Start: thrLo - 0x1000, End: thrLo, Perms: "---p"},
		{Start: thrLo, End: thrTop, Perms: "rw-p"},
	}
	sort.Slice(maps, func(i, j int) bool { return maps[i].Start < maps[j].Start })
	return &words{maps: maps, w: map[uint64]uint64{}}
}

var v39 = func() *Layout {
	l := knownBuilds["39.0.0"]
	l.TLSOffset = -0x68
	return &l
}()

// cts writes a CallThreadState at a with its store, prev and old_state.
func (m *words) cts(l *Layout, a, store, prev, old uint64) {
	m.w[a+uint64(l.CTSStore)] = store
	m.w[a+uint64(l.CTSPrev)] = prev
	m.w[a+uint64(l.CTSOld)] = old
}

// slot sets the thread-local slot of the thread at tp (tagged as 37/39 do).
func (m *words) slot(l *Layout, tp, cts uint64) { m.w[uint64(int64(tp)+l.TLSOffset)] = cts | 1 }

func (m *words) read(l *Layout) threadView {
	return l.readThread(m, m.maps, tp, map[uint64]bool{thrLo: true, other: true})
}

const store = heap + 0x800

func TestReadThreadAccepted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		build  func(m *words)
		fibers int
	}{
		{"idle", func(m *words) {}, 0},
		{"thread stack, nested", func(m *words) {
			m.slot(v39, tp, thrLo+0x1000)
			m.cts(v39, thrLo+0x1000, store, thrLo+0x5000, thrLo+0x1100)
			m.cts(v39, thrLo+0x5000, store+0x100, 0, thrLo+0x4f00) // old_state below its CTS (v37)
		}, 0},
		{"fiber stack", func(m *words) {
			m.slot(v39, tp, fibA+0x8000)
			m.cts(v39, fibA+0x8000, store, 0, fibA+0x8200)
		}, 1},
		{"two on a fiber, then the thread stack", func(m *words) {
			m.slot(v39, tp, fibA+0x8000)
			m.cts(v39, fibA+0x8000, store, fibA+0x9000, fibA+0x8200)
			m.cts(v39, fibA+0x9000, store, thrLo+0x2000, fibA+0x9200)
			m.cts(v39, thrLo+0x2000, store, 0, thrLo+0x2200)
		}, 1},
		{"fiber, fiber, thread", func(m *words) {
			// Fiber B was resumed from Wasm on fiber A (at a lower
			// address), which was resumed from Wasm on the thread.
			m.slot(v39, tp, fibB+0x100)
			m.cts(v39, fibB+0x100, store, fibA+0xf000, fibB+0x200)
			m.cts(v39, fibA+0xf000, store, thrLo+0x2000, fibA+0xf100)
			m.cts(v39, thrLo+0x2000, store, 0, thrLo+0x2200)
		}, 2},
		{"store in another fiber's stack", func(m *words) {
			m.slot(v39, tp, fibA+0x8000)
			m.cts(v39, fibA+0x8000, fibB+0x100, 0, fibA+0x8200)
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := fakeProcess()
			tc.build(m)
			v := m.read(v39)
			if v.problem != "" {
				t.Fatalf("refused: %s", v.problem)
			}
			if v.fibers != tc.fibers {
				t.Errorf("%d fiber stacks, want %d", v.fibers, tc.fibers)
			}
		})
	}
}

func TestReadThreadRefused(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		build      func(m *words)
	}{
		{"CTS in a file mapping", "neither the thread's stack nor a fiber stack (in /usr/lib/libfoo.so)", func(m *words) {
			m.slot(v39, tp, libData+0x100)
			m.cts(v39, libData+0x100, store, 0, libData+0x200)
		}},
		{"CTS on the heap", "(in [heap])", func(m *words) {
			m.slot(v39, tp, heap+0x100)
			m.cts(v39, heap+0x100, libData, 0, heap+0x200)
		}},
		{"CTS in a guard page", "(in a ---p mapping)", func(m *words) {
			m.slot(v39, tp, fibA-0x800)
		}},
		{"CTS unmapped", "(not mapped)", func(m *words) {
			m.slot(v39, tp, 0x1000)
		}},
		{"CTS above the TCB", "(at or above the thread's TCB)", func(m *words) {
			m.slot(v39, tp, tp+0x100)
		}},
		{"CTS on another thread's stack", "(on another thread's stack)", func(m *words) {
			m.slot(v39, tp, other+0x100)
			m.cts(v39, other+0x100, store, 0, other+0x200)
		}},
		{"prev down within a fiber", "below it on the same stack", func(m *words) {
			m.slot(v39, tp, fibA+0x8000)
			m.cts(v39, fibA+0x8000, store, fibA+0x7000, fibA+0x8200)
			m.cts(v39, fibA+0x7000, store, 0, fibA+0x7200)
		}},
		{"prev down within the thread stack", "below it on the same stack", func(m *words) {
			m.slot(v39, tp, thrLo+0x8000)
			m.cts(v39, thrLo+0x8000, store, thrLo+0x8000, thrLo+0x8200)
		}},
		{"thread stack, then a fiber", "it leaves the thread's stack", func(m *words) {
			m.slot(v39, tp, thrLo+0x1000)
			m.cts(v39, thrLo+0x1000, store, fibA+0x1000, thrLo+0x1100)
			m.cts(v39, fibA+0x1000, store, 0, fibA+0x1100)
		}},
		{"back to a fiber already left", "on a stack the list already left", func(m *words) {
			m.slot(v39, tp, fibA+0x1000)
			m.cts(v39, fibA+0x1000, store, fibB+0x1000, fibA+0x1100)
			m.cts(v39, fibB+0x1000, store, fibA+0x2000, fibB+0x1100)
			m.cts(v39, fibA+0x2000, store, 0, fibA+0x2100)
		}},
		{"prev into a file mapping", "(in /usr/lib/libfoo.so)", func(m *words) {
			m.slot(v39, tp, fibA+0x1000)
			m.cts(v39, fibA+0x1000, store, libData+0x100, fibA+0x1100)
		}},
		{"old_state on another stack", "not a saved state on the same stack", func(m *words) {
			m.slot(v39, tp, fibA+0x1000)
			m.cts(v39, fibA+0x1000, store, 0, thrLo+0x1100)
		}},
		{"old_state is the CTS", "not a saved state on the same stack", func(m *words) {
			m.slot(v39, tp, thrLo+0x1000)
			m.cts(v39, thrLo+0x1000, store, 0, thrLo+0x1000)
		}},
		{"store in the CTS's fiber stack", "not a store pointer", func(m *words) {
			m.slot(v39, tp, fibA+0x1000)
			m.cts(v39, fibA+0x1000, fibA+0x4000, 0, fibA+0x1100)
		}},
		{"store unaligned", "not a store pointer", func(m *words) {
			m.slot(v39, tp, fibA+0x1000)
			m.cts(v39, fibA+0x1000, store+4, 0, fibA+0x1100)
		}},
		{"CTS cut off by the end of its mapping", "unreadable", func(m *words) {
			m.slot(v39, tp, fibA+fibSize-0x10)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := fakeProcess()
			tc.build(m)
			v := m.read(v39)
			if v.problem == "" {
				t.Fatal("accepted")
			}
			if !strings.Contains(v.problem, tc.want) {
				t.Errorf("problem %q does not say %q", v.problem, tc.want)
			}
		})
	}
}

// A list longer than the bound is followed no further, without a
// refusal.
func TestReadThreadDepth(t *testing.T) {
	m := fakeProcess()
	m.slot(v39, tp, thrLo+0x100)
	for i := range uint64(200) {
		a := thrLo + 0x100 + i*0x100
		m.cts(v39, a, store, a+0x100, a+0x40)
	}
	if v := m.read(v39); v.problem != "" {
		t.Fatal(v.problem)
	}
}

// The live fact says how many threads in Wasm were on fiber stacks, and a
// refused thread refuses the process.
func TestCheckThreadsFibers(t *testing.T) {
	m := fakeProcess()
	m.slot(v39, tp, fibA+0x8000)
	m.cts(v39, fibA+0x8000, store, thrLo+0x2000, fibA+0x8200)
	m.cts(v39, thrLo+0x2000, store, 0, thrLo+0x2200)
	m.slot(v39, otherTP, other+0x1000)
	m.cts(v39, other+0x1000, store, 0, other+0x1100)
	l := *v39
	if err := l.checkThreads(m, m.maps, map[int]uint64{10: tp, 11: otherTP}, nil); err != nil {
		t.Fatal(err)
	}
	if len(l.Live) != 2 || !strings.HasPrefix(l.Live[0].How, "confirmed on 2 threads in Wasm, 1 of them on a fiber stack (e.g. thread 10: slot ") ||
		!strings.Contains(l.Live[0].How, "on a fiber stack), 0 idle") {
		t.Errorf("live facts %+v", l.Live)
	}
	if len(l.Live) == 2 && l.Live[1].How != "plausible in 3 EntryStoreContexts: 0 Some(usize::MAX) (oldest on its stack), 0 Some(limit), 3 None" {
		t.Errorf("stack_limit live fact %+v", l.Live[1])
	}

	m.cts(v39, fibA+0x8000, store, fibA+0x7000, fibA+0x8200)
	l = *v39
	err := l.checkThreads(m, m.maps, map[int]uint64{10: tp, 11: otherTP}, nil)
	if !errors.Is(err, ErrLive) || !strings.Contains(err.Error(), "thread 10: CallThreadState") {
		t.Errorf("err %v, want thread 10 refused", err)
	}
}

// Any memory contents give a verdict, never a panic or an endless walk.
func FuzzReadThread(f *testing.F) {
	f.Add([]byte{}, uint16(0))
	f.Add(binary.LittleEndian.AppendUint64(nil, fibA+0x100), uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, seed uint16) {
		m := fakeProcess()
		// Scatter the words over the interesting places: the slot, and
		// CallThreadState fields on every stack.
		bases := []uint64{fibA + 0x100, fibB + 0x100, thrLo + 0x100, heap, libData}
		m.slot(v39, tp, bases[int(seed)%len(bases)])
		for i := 0; i+8 <= len(data) && i < 8*256; i += 8 {
			w := binary.LittleEndian.Uint64(data[i:])
			k := i / 8
			b := bases[k%len(bases)] + uint64(k/len(bases))*0x40
			m.w[b+uint64([]uint32{v39.CTSStore, v39.CTSPrev, v39.CTSOld}[k%3])] = w
		}
		m.read(v39)
		for _, gen := range []*Layout{v39, {Generation: Seed, TLSOffset: -0x80, TLSMask: ^uint64(0), CTSStore: 0x48, CTSPrev: 0x50}} {
			m.read(gen)
		}
	})
}

// limit writes the stack_limit of the EntryStoreContext at esc.
func (m *words) limit(l *Layout, esc, tag, value uint64) {
	m.w[esc+uint64(l.SavedLimitTag)] = tag
	m.w[esc+uint64(l.SavedLimitValue)] = value
}

// Each EntryStoreContext's stack_limit must be None, Some(usize::MAX) or
// Some(an address of its stack): SP - max_wasm_stack.
func TestReadThreadStackLimit(t *testing.T) {
	const cts, esc = fibA + 0x8000, fibA + 0x8200
	const older, olderESC = fibA + 0x9000, fibA + 0x9200
	for _, tc := range []struct {
		name       string
		tag, value uint64
		want       string // "": accepted
		count      limitCount
	}{
		{"None, value not set", 0, 0xdead_beef, "", limitCount{none: 1, first: 1}},
		{"Some(usize::MAX)", 1, ^uint64(0), "", limitCount{first: 2}},
		{"Some(limit) below the fiber's start", 1, cts - 512<<10, "", limitCount{first: 1, some: 1}},
		{"Some(limit) just above the CTS", 1, cts + 0x100, "", limitCount{first: 1, some: 1}},
		{"Some(limit) 16 MiB below", 1, cts - 16<<20, "", limitCount{first: 1, some: 1}},
		{"tag 2", 2, 0, "has tag word 0x2, neither 0 (None) nor 1 (Some)", limitCount{}},
		{"tag is a pointer", store, 0, "neither 0 (None) nor 1 (Some)", limitCount{}},
		{"Some(limit) above the stack", 1, fibA + fibSize, "is Some(0x7e0000100000), above the top of its stack (0x7e0000100000)", limitCount{}},
		{"Some(limit) far below", 1, cts - 16<<20 - 8, "neither usize::MAX nor within 16 MiB below the CallThreadState", limitCount{}},
		{"Some(0)", 1, 0, "is Some(0x0)", limitCount{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := fakeProcess()
			m.slot(v39, tp, cts)
			m.cts(v39, cts, store, older, esc)
			m.cts(v39, older, store, 0, olderESC)
			m.limit(v39, esc, tc.tag, tc.value)
			m.limit(v39, olderESC, 1, ^uint64(0)) // the oldest on the fiber
			v := m.read(v39)
			switch {
			case tc.want == "" && v.problem != "":
				t.Fatalf("refused: %s", v.problem)
			case tc.want == "" && v.limits != tc.count:
				t.Errorf("counted %+v, want %+v", v.limits, tc.count)
			case tc.want != "" && !strings.Contains(v.problem, tc.want):
				t.Errorf("problem %q does not say %q", v.problem, tc.want)
			case tc.want != "" && !strings.HasPrefix(v.problem, "CallThreadState 0x7e0000009000: its EntryStoreContext 0x7e0000009200 holds a stack_limit (tag +0x0, value +0x8) that "):
				t.Errorf("problem %q names neither the CallThreadState nor the EntryStoreContext", v.problem)
			}
			// Without the offsets nothing is read there.
			l := *v39
			l.LimitKnown = false
			if v := m.read(&l); v.problem != "" || v.limits.total() != 0 {
				t.Errorf("with the stack limit unknown: %+v", v)
			}
		})
	}
}

// The live facts report the stack limits seen, on the facts too.
func TestLiveLimits(t *testing.T) {
	l := *v39
	l.Provenance = []Fact{{What: limitTagFact, Check: "table for 39.0.0 agrees"}, {What: limitValueFact}}
	l.liveLimits(limitCount{first: 2, none: 1})
	want := "plausible in 3 EntryStoreContexts: 2 Some(usize::MAX) (oldest on its stack), 0 Some(limit), 1 None"
	if len(l.Live) != 1 || l.Live[0].What != limitFact || l.Live[0].How != want {
		t.Errorf("live facts %+v", l.Live)
	}
	if l.Provenance[0].Check != "table for 39.0.0 agrees; live: "+want || l.Provenance[1].Check != "live: "+want {
		t.Errorf("checks %q, %q", l.Provenance[0].Check, l.Provenance[1].Check)
	}
	l = *v39
	l.liveLimits(limitCount{})
	if len(l.Live) != 0 {
		t.Errorf("nothing seen, but live facts %+v", l.Live)
	}
}
