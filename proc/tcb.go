package proc

import (
	"encoding/binary"
	"fmt"
)

// Thread pointers without ptrace. fs_base is not readable without stopping
// a thread, but glibc puts each thread's TCB (struct pthread) at its thread
// pointer, and the TCB starts with two pointers to itself (tcb, and self at
// +0x10) and holds the thread's id. Scanning the process's writable memory
// for 64-byte aligned words X with [X] == X and [X+0x10] == X, whose
// stack-protector canaries (+0x28) agree, and finding the one offset at
// which each holds a distinct thread id of the process, gives every
// thread's thread pointer.

const (
	tcbAlign   = 64
	scanTop    = 64 << 10 // bytes scanned at the top of large mappings
	scanSmall  = 1 << 20  // mappings up to this size are scanned whole
	tidScanEnd = 0x1000
)

// ThreadPointers returns the thread pointer of each of the threads tids, by
// thread id, and how they were found (or why not).
func ThreadPointers(mem Memory, maps []Mapping, tids []int) (map[int]uint64, string) {
	tcbs, why := TCBs(mem, maps)
	if len(tcbs) == 0 {
		return nil, why
	}
	isTid := map[uint32]bool{}
	for _, t := range tids {
		isTid[uint32(t)] = true
	}
	// The offset of the thread id in struct pthread differs between glibc
	// versions: find the one where every TCB holds a distinct id.
	for k := uint64(0x100); k < tidScanEnd; k += 4 {
		out := map[int]uint64{}
		for _, x := range tcbs {
			var b [4]byte
			if _, err := mem.ReadAt(b[:], x+k); err != nil {
				break
			}
			t := binary.LittleEndian.Uint32(b[:])
			if !isTid[t] {
				break
			}
			out[int(t)] = x
		}
		if len(out) == len(tcbs) {
			return out, fmt.Sprintf("glibc TCBs, thread id at +%#x", k)
		}
	}
	return nil, fmt.Sprintf("%d self-pointing TCBs, but no offset holds their thread ids (a PID namespace numbers them otherwise)", len(tcbs))
}

// TCBs returns the addresses of the process's glibc thread control blocks
// (its threads' pointers), or why none were found.
func TCBs(mem Memory, maps []Mapping) ([]uint64, string) {
	type cand struct{ addr, guard uint64 }
	var cands []cand
	for _, m := range maps {
		if len(m.Perms) < 2 || m.Perms[0] != 'r' || m.Perms[1] != 'w' {
			continue
		}
		lo := m.Start
		if m.End-m.Start > scanSmall {
			lo = m.End - scanTop
		}
		buf := make([]byte, m.End-lo)
		if _, err := mem.ReadAt(buf, lo); err != nil {
			continue
		}
		for off := 0; off+0x30 <= len(buf); off += tcbAlign {
			x := lo + uint64(off)
			if le(buf[off:]) == x && le(buf[off+0x10:]) == x {
				cands = append(cands, cand{x, le(buf[off+0x28:])})
			}
		}
	}
	if len(cands) == 0 {
		return nil, "no glibc thread control block (self-pointing TCB) in writable memory"
	}
	// All threads share one stack-protector canary.
	byGuard := map[uint64][]uint64{}
	for _, c := range cands {
		byGuard[c.guard] = append(byGuard[c.guard], c.addr)
	}
	var tcbs []uint64
	for _, a := range byGuard {
		if len(a) > len(tcbs) {
			tcbs = a
		}
	}
	return tcbs, ""
}

func le(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
