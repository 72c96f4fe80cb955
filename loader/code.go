package loader

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Code notes: the kernel tells of code a traced process publishes
// (EventCode, from mprotect with PROT_EXEC) and memory it unmaps
// (EventUnmap), in the ring buffer in order with the samples. Between a
// module's publication and the loader's next ranges, walks take the new
// code for Wasm from the kernel's own list (struct wt_recent), so no
// sample of it is lost to the rescan period; and the note reaches
// userspace before any sample taken in that code, so the symbolizer can
// locate the module first. The notes come from the syscalls tracepoints of
// mprotect and munmap alone: they add nothing to a sample's walk when no
// code is new, nor to other system calls.

// CodeEvents returns nil when code notes are on, or why they are off (a
// kernel without syscall tracepoints): modules are then found by rescans
// alone, and code compiled since the last one counts as not seen yet.
func (t *Tracer) CodeEvents() error { return t.codeErr }

// attachCode attaches the code-note programs; a failure leaves them off
// (CodeEvents) rather than failing the command.
func (t *Tracer) attachCode() {
	for _, tp := range []struct {
		name string
		prog string
	}{{"sys_exit_mprotect", progCode}, {"sys_enter_munmap", progUnmap}} {
		prog := *t.objs.wasmtracePrograms.byName()[tp.prog]
		if prog == nil {
			t.codeErr = fmt.Errorf("program %s not loaded", tp.prog)
			return
		}
		l, err := link.Tracepoint("syscalls", tp.name, prog, nil)
		if err != nil {
			t.codeErr = fmt.Errorf("attach to tracepoint syscalls:%s: %w", tp.name, err)
			return
		}
		t.links = append(t.links, l)
	}
}

// CodeProtection returns the protection a code note's mprotect set.
func CodeProtection(note Sample) uint64 { return note.Args[2] & 0xff }

// CodeMapped reports whether the code that note (an EventCode) told of is
// still mapped: the munmap that frees it zeroes the kernel's entry before
// it unmaps anything, so a module read in full while this holds, checked
// after the read, is the module the note told of, not one compiled later
// at the same address. False too once the entry's slot went to newer code
// (after RecentSlots publications): then it cannot be told.
func (t *Tracer) CodeMapped(note Sample) (bool, error) {
	if note.Event != EventCode {
		return false, fmt.Errorf("%s is not a code note", note.Event)
	}
	slot, seq := (note.Args[2]>>8)&0xff, note.Args[2]>>16
	if slot >= uint64(RecentSlots) {
		return false, fmt.Errorf("code note names slot %d of %d", slot, RecentSlots)
	}
	var rc wasmtraceWtRecent
	if err := t.objs.RecentCode.Lookup(note.PID, &rc); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("read recent code of pid %d: %w", note.PID, err)
	}
	return rc.Seq[slot]&(1<<48-1) == seq && rc.Lo[slot] == note.Args[0] && rc.Hi[slot] == note.Args[0]+note.Args[1], nil
}

// recentCode mirrors one process's struct wt_recent, slot for slot, from
// the notes in the order the kernel made them.
type recentCode struct {
	newestNs uint64
	next     uint32
	lo, hi   [RecentSlots]uint64
}

// RecentSlots is how many published code ranges the kernel keeps per
// process between two updates of its ranges.
const RecentSlots = int(wasmtraceWtLimitWT_LIMIT_RECENT)

// noteRecent applies a code note as the kernel did. t.mu is held.
func (t *Tracer) noteRecent(s Sample) {
	start, length := s.Args[0], s.Args[1]
	rc := t.recent[s.PID]
	switch s.Event {
	case EventCode:
		if rc == nil {
			if t.recent == nil {
				t.recent = map[uint32]*recentCode{}
			}
			rc = &recentCode{}
			t.recent[s.PID] = rc
		}
		i := rc.next % uint32(RecentSlots)
		rc.next = i + 1
		rc.lo[i], rc.hi[i] = start, start+length
		rc.newestNs = s.TimeNs
	case EventUnmap:
		if rc == nil {
			return
		}
		for i := range rc.lo {
			if rc.lo[i] < start+length && start < rc.hi[i] {
				rc.hi[i] = 0
			}
		}
	}
}

// recentRanges is what a walk of pid with configuration gen took for Wasm:
// the configuration's ranges and, as in the kernel's in_recent, the recent
// entries if any is newer than what the configuration covers. Sorted and
// disjoint, as the replay's search needs. t.mu is held.
func (t *Tracer) recentRanges(pid, gen uint32) [][2]uint64 {
	ranges := t.ranges[gen]
	rc := t.recent[pid]
	if rc == nil || rc.newestNs <= t.covered[gen] {
		return ranges
	}
	out := slices.Clone(ranges)
	for i := range rc.lo {
		if rc.lo[i] < rc.hi[i] {
			out = append(out, [2]uint64{rc.lo[i], rc.hi[i]})
		}
	}
	return unionRanges(out)
}

// unionRanges sorts ranges and merges those that overlap or touch.
func unionRanges(r [][2]uint64) [][2]uint64 {
	slices.SortFunc(r, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	out := r[:0]
	for _, x := range r {
		if n := len(out); n > 0 && x[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], x[1])
			continue
		}
		out = append(out, x)
	}
	return out
}
