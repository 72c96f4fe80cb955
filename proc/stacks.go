package proc

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Stacks says where a process's threads keep their own stacks, as opposed
// to the fiber stacks that async Wasmtime runs Wasm on. The walkers use it
// to tell which stack each piece of Wasmtime's state lies on; the kernel
// walker gets it as struct wt_stacks.
type Stacks struct {
	// The main thread's stack: its [stack] mapping and the room below it
	// that the kernel keeps for it to grow into.
	MainLo, MainHi uint64
	// TCBBlock is the offset from a thread's pointer (its glibc struct
	// pthread) of the two words stackblock and stackblock_size: the
	// block glibc allocated for the thread's stack, guard page included.
	// 0 when unknown. The main thread's block is not glibc's.
	TCBBlock uint64
}

func (s Stacks) mainKnown() bool { return s.MainHi > s.MainLo }

const (
	tcbScanStart = 0x100
	tcbScanEnd   = 0x1000
	// A stack block starts at most this far below its mapping (the guard).
	maxGuard = 1 << 20
	// Thread stacks larger than this are not believed.
	maxThreadStack = 1 << 34
	// The main stack's growth room when the limit cannot be read, and
	// the most believed when it is unlimited.
	defaultStackLimit = 8 << 20
	maxStackLimit     = 1 << 30
)

// FindStacks establishes Stacks for process pid from its memory map, its
// stack limit and the glibc thread control blocks of its threads (their
// thread pointers). how says what was found, for a layout fact.
func FindStacks(mem Memory, pid int, maps []Mapping, tcbs []uint64) (st Stacks, how string) {
	maps = sortedMaps(maps)
	var parts []string
	for i, m := range maps {
		if m.Path != "[stack]" {
			continue
		}
		limit := stackLimit(pid)
		lo := uint64(0)
		if m.End > limit {
			lo = m.End - limit
		}
		if i > 0 && maps[i-1].End > lo {
			lo = maps[i-1].End
		}
		st.MainLo, st.MainHi = min(lo, m.Start), m.End
		parts = append(parts, fmt.Sprintf("main thread's %#x-%#x", st.MainLo, st.MainHi))
		break
	}
	if !st.mainKnown() {
		parts = append(parts, "no [stack] mapping for the main thread")
	}
	off, n, why := findTCBBlock(mem, maps, tcbs)
	st.TCBBlock = off
	if off != 0 {
		parts = append(parts, fmt.Sprintf("other threads' from glibc's struct pthread +%#x (stackblock, stackblock_size; agrees on %d threads)", off, n))
	} else {
		parts = append(parts, "other threads' unknown: "+why)
	}
	return st, strings.Join(parts, "; ")
}

// findTCBBlock finds the offset at which the TCB of every thread but the
// main one holds a (start, size) pair naming the mapping the TCB lies in.
// The main thread's TCB is not in its stack (and its pair is 0), so one
// TCB may disagree.
func findTCBBlock(mem Memory, maps []Mapping, tcbs []uint64) (off uint64, agree int, why string) {
	if len(tcbs) < 2 {
		return 0, 0, "the process has no thread besides the main one"
	}
	candidates := map[uint64]int{}
	for _, tp := range tcbs {
		m := mappingAt(maps, tp)
		if m == nil {
			continue
		}
		// The TCB sits at the top of its mapping: read no further.
		buf := make([]byte, min(tcbScanEnd, m.End-tp))
		if _, err := mem.ReadAt(buf, tp); err != nil {
			continue
		}
		for k := tcbScanStart; k+16 <= len(buf); k += 8 {
			block := binary.LittleEndian.Uint64(buf[k:])
			size := binary.LittleEndian.Uint64(buf[k+8:])
			if size == 0 || size > maxThreadStack || block > m.Start || m.Start-block > maxGuard || block+size != m.End {
				continue
			}
			candidates[uint64(k)]++
		}
	}
	for k, n := range candidates {
		if n >= len(tcbs)-1 && (off == 0 || k < off) {
			off, agree = k, n
		}
	}
	if off == 0 {
		return 0, 0, fmt.Sprintf("no offset in the TCBs of %d threads holds the bounds of their stacks", len(tcbs))
	}
	return off, agree, ""
}

// stackLimit is pid's soft RLIMIT_STACK, bounded.
func stackLimit(pid int) uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return defaultStackLimit
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "Max stack size") {
			continue
		}
		fields := strings.Fields(strings.TrimPrefix(line, "Max stack size"))
		if len(fields) == 0 {
			break
		}
		if fields[0] == "unlimited" {
			return maxStackLimit
		}
		v, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil || v == 0 {
			break
		}
		return min(v, maxStackLimit)
	}
	return defaultStackLimit
}

func sortedMaps(maps []Mapping) []Mapping {
	if sort.SliceIsSorted(maps, func(i, j int) bool { return maps[i].Start < maps[j].Start }) {
		return maps
	}
	out := append([]Mapping(nil), maps...)
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}

// mappingAt returns the mapping of sorted maps holding addr, or nil.
func mappingAt(maps []Mapping, addr uint64) *Mapping {
	i := sort.Search(len(maps), func(i int) bool { return maps[i].End > addr })
	if i < len(maps) && maps[i].Start <= addr {
		return &maps[i]
	}
	return nil
}

// StacksOf establishes Stacks for the running process pid (FindStacks on
// its threads' TCBs), and says how.
func StacksOf(pid int) (Stacks, string) {
	maps, err := ReadMaps(pid)
	if err != nil {
		return Stacks{}, "not found: " + err.Error()
	}
	mem := ProcessMemory{PID: pid}
	tcbs, why := TCBs(mem, maps)
	st, how := FindStacks(mem, pid, maps, tcbs)
	if len(tcbs) == 0 {
		how += " (" + why + ")"
	}
	return st, how
}
