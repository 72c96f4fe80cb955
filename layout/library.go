package layout

// Wasmtime in a shared library (libwasmtime.so).
//
// A library's thread-locals live in its own TLS block, which code reaches
// through __tls_get_addr(&tls_index): tls_index is a GOT entry that the
// dynamic linker fills with the library's TLS module id. glibc keeps each
// thread's blocks in its DTV (dynamic thread vector): dtv = *(tp + 8),
// and module m's block is the first word of the 16-byte entry dtv[m].
// For a library loaded at start-up the block is part of the static TLS
// area, at the same offset from the thread pointer in every thread; that
// offset is what the stack walk needs, as for an executable. A library
// loaded later with dlopen may get its block allocated per thread on
// first use, at no fixed offset: that case is refused.
//
// The offset is read from the live process: the module id from the
// tls_index in memory, each thread's thread pointer from its TCB (see
// live.go), then dtv[module id] of every thread.

import (
	"debug/elf"
	"fmt"
	"strings"

	"github.com/wasmtrace/wasmtrace/proc"
)

// dtvUnallocated marks a DTV entry whose block was not allocated yet.
const dtvUnallocated = ^uint64(0)

func establishLibrary(pid int, lib string, m proc.Mapping, opt Options) (*Layout, error) {
	path := procPath(pid, lib)
	l, err := establish(path, opt, true)
	if err != nil {
		return nil, fmt.Errorf("pid %d: Wasmtime in the shared library %s: %w", pid, lib, err)
	}
	l.Library = lib
	refuse := func(format string, a ...any) (*Layout, error) {
		return nil, fmt.Errorf("pid %d: Wasmtime in the shared library %s: %w: %s", pid, lib, ErrSharedLibrary, fmt.Sprintf(format, a...))
	}
	bias, err := loadBias(path, m)
	if err != nil {
		return refuse("%v", err)
	}
	mem := proc.ProcessMemory{PID: pid}
	modid, err := proc.Word(mem, bias+l.tlsIndex)
	if err != nil {
		return refuse("read its tls_index: %v", err)
	}
	if modid == 0 || modid > 1<<16 {
		return refuse("its tls_index at %#x holds module id %d", bias+l.tlsIndex, modid)
	}
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		return refuse("%v", err)
	}
	tids, err := proc.Threads(pid)
	if err != nil {
		return refuse("%v", err)
	}
	tps, how := proc.ThreadPointers(mem, maps, tids)
	if len(tps) == 0 {
		return refuse("the threads' thread pointers were not found (%s), so the library's TLS block cannot be located", how)
	}
	var off int64
	first := true
	for tid, tp := range tps {
		dtv, err := proc.Word(mem, tp+8)
		if err != nil {
			return refuse("thread %d: read its DTV pointer: %v", tid, err)
		}
		n, err1 := proc.Word(mem, dtv-16) // dtv[-1]: number of entries
		block, err2 := proc.Word(mem, dtv+16*modid)
		if err1 != nil || err2 != nil || modid > n || block == dtvUnallocated || block == 0 {
			return refuse("thread %d has no TLS block for module %d yet: the library's TLS is allocated per thread (dlopen), not at a fixed offset from the thread pointer, which the stack walk needs", tid, modid)
		}
		o := int64(block) - int64(tp)
		if !first && o != off {
			return refuse("its TLS block is at fs%+#x in one thread and fs%+#x in thread %d: not static TLS (dlopen)", off, o, tid)
		}
		off, first = o, false
	}
	l.TLSOffset = off + l.TLSModuleOffset
	if f := l.factNamed("thread-local slot"); f != nil {
		f.Check = joinChecks(f.Check, fmt.Sprintf("live: %s is TLS module %d (its tls_index at %#x); its block is at fs%+#x on all %s (static TLS), so the slot is at fs%+#x",
			lib, modid, bias+l.tlsIndex, off, plural(len(tps), "thread"), l.TLSOffset))
		f.Value = fmt.Sprintf("fs%+#x", l.TLSOffset)
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("pid %d: %s: %w", pid, lib, err)
	}
	return l, nil
}

// loadBias is where the library at path is loaded: the address its
// mapping at file offset 0 starts at, less the link-time address of that
// segment.
func loadBias(path string, m proc.Mapping) (uint64, error) {
	f, err := elf.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Off == 0 {
			return m.Start - p.Vaddr&^0xfff, nil
		}
	}
	return 0, fmt.Errorf("%s: no PT_LOAD at file offset 0", path)
}

// wasmtimeLibrary returns the path of a mapped shared library that holds
// Wasmtime, and its mapping at file offset 0; "" if there is none.
func wasmtimeLibrary(pid int) (string, proc.Mapping) {
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		return "", proc.Mapping{}
	}
	seen := map[string]bool{}
	for _, m := range maps {
		if m.Path == "" || m.Path[0] != '/' || m.Offset != 0 || seen[m.Path] || !strings.Contains(m.Path, ".so") {
			continue
		}
		seen[m.Path] = true
		b, err := openBinary(procPath(pid, m.Path))
		if err != nil {
			continue
		}
		ok, _ := b.mentionsWasmtime()
		ok = ok || b.hasWasmtimeSymbols()
		b.Close()
		if ok {
			return m.Path, m
		}
	}
	return "", proc.Mapping{}
}

// procPath reaches a path of the process's mount namespace.
func procPath(pid int, path string) string { return fmt.Sprintf("/proc/%d/root%s", pid, path) }
