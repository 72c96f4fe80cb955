package loader

import (
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wasmtrace/wasmtrace/arch"
)

// Code made executable by a traced process is in the kernel's recent list
// at once and noted in the ring buffer; unmapping it takes it out and is
// noted too; the loader's mirror agrees with the kernel's list at each
// step; a process's configuration that covers the note turns the list off.
func TestCodeNotes(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("loading BPF needs root, and CI=true forbids skipping")
		}
		t.Skip("loading BPF needs root")
	}
	tr, err := load(progSample, progCode, progUnmap)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.attachCode()
	if err := tr.CodeEvents(); err != nil {
		t.Fatalf("code notes off: %v", err)
	}
	pid := os.Getpid()
	cfg := ProcessConfig{Layout: layout39(), Arch: arch.AMD64}
	if err := tr.SetProcess(pid, cfg); err != nil {
		t.Fatal(err)
	}
	defer tr.RemoveProcess(pid)

	mem, err := unix.Mmap(-1, 0, 3*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	start := uint64(uintptrOf(mem))
	code := mem[4096 : 3*4096]
	if err := unix.Mprotect(code, unix.PROT_READ|unix.PROT_EXEC); err != nil {
		t.Fatal(err)
	}
	note := readNote(t, tr, EventCode, start+4096)
	code1 := note
	if note.Args[1] != 2*4096 || CodeProtection(note) != unix.PROT_READ|unix.PROT_EXEC {
		t.Errorf("code note %v, want length %d and protection r-x", note.Args, 2*4096)
	}
	if ok, err := tr.CodeMapped(code1); !ok || err != nil {
		t.Errorf("CodeMapped of code just published = %v, %v", ok, err)
	}
	if !kernelRecent(t, tr, pid, start+4096, start+3*4096) {
		t.Error("the kernel's recent list lacks the published code")
	}
	tr.mu.Lock()
	got := tr.recentRanges(uint32(pid), tr.gen)
	tr.mu.Unlock()
	if len(got) != 1 || got[0] != [2]uint64{start + 4096, start + 3*4096} {
		t.Errorf("mirrored ranges %#x, want the published code", got)
	}

	// Ranges that take the note into account: the list no longer counts.
	cfg.Ranges, cfg.CoveredNs = [][2]uint64{{start + 4096, start + 3*4096}}, note.TimeNs
	if err := tr.SetProcess(pid, cfg); err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	got = tr.recentRanges(uint32(pid), tr.gen)
	tr.mu.Unlock()
	if len(got) != 1 {
		t.Errorf("ranges %#x after the configuration covered the note", got)
	}

	if err := unix.Munmap(mem); err != nil {
		t.Fatal(err)
	}
	note = readNote(t, tr, EventUnmap, start)
	if note.Args[1] != 3*4096 {
		t.Errorf("unmap note %v, want length %d", note.Args, 3*4096)
	}
	if kernelRecent(t, tr, pid, start+4096, start+3*4096) {
		t.Error("unmapped code still in the kernel's recent list")
	}
	if ok, err := tr.CodeMapped(code1); ok || err != nil {
		t.Errorf("CodeMapped of unmapped code = %v, %v", ok, err)
	}
	tr.mu.Lock()
	rc := tr.recent[uint32(pid)]
	tr.mu.Unlock()
	for i := range rc.hi {
		if rc.lo[i] == start+4096 && rc.hi[i] != 0 {
			t.Errorf("mirror slot %d still holds the unmapped code", i)
		}
	}
}

// readNote reads until a note of kind e at address addr, for a few seconds.
func readNote(t *testing.T, tr *Tracer, e Event, addr uint64) Sample {
	t.Helper()
	end := time.Now().Add(5 * time.Second)
	for time.Now().Before(end) {
		s, err := tr.Read(end)
		if err != nil {
			t.Fatalf("waiting for a %s note at %#x: %v", e, addr, err)
		}
		if s.Event == e && s.Args[0] == addr {
			if s.PID != uint32(os.Getpid()) || len(s.PCs) != 0 {
				t.Errorf("note %+v: want this process, no stack", s)
			}
			return s
		}
	}
	t.Fatalf("no %s note at %#x", e, addr)
	return Sample{}
}

// kernelRecent reports whether the kernel's recent list of pid holds
// [lo, hi).
func kernelRecent(t *testing.T, tr *Tracer, pid int, lo, hi uint64) bool {
	t.Helper()
	var rc wasmtraceWtRecent
	if err := tr.objs.RecentCode.Lookup(uint32(pid), &rc); err != nil {
		t.Fatalf("recent code of pid %d: %v", pid, err)
	}
	for i := range rc.Lo {
		if rc.Lo[i] == lo && rc.Hi[i] == hi {
			return true
		}
	}
	return false
}

func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }
