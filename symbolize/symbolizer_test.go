package symbolize

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wasmtrace/wasmtrace/proc"
)

func fakeSymbolizer(f *fakeProcess) *Symbolizer {
	s := New(os.Getpid(), f)
	s.readMaps = func(int) ([]proc.Mapping, error) { return append([]proc.Mapping(nil), f.maps...), nil }
	return s
}

func TestSymbolizerRefresh(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	img := readGolden(t, g.file)
	var f fakeProcess
	f.placeImage(g.base, img, g.textOff, g.textSize)
	f.mapping(0x1000_1000, make([]byte, page), "r-xp") // JIT code without image
	s := fakeSymbolizer(&f)

	pc := g.base + g.textOff + 0x90 // inside chain_c
	if _, _, ok := s.Lookup(pc); ok {
		t.Errorf("Lookup before Refresh found something")
	}
	added, err := s.Refresh()
	if added != 1 || !errors.Is(err, ErrNoImage) {
		t.Fatalf("first Refresh = %d, %v; want 1 and ErrNoImage", added, err)
	}
	fn, m, ok := s.Lookup(pc)
	if !ok || fn.Name != "chain_c" || m == nil || m.Name != "demo_mod" {
		t.Errorf("Lookup = %+v, %v, %v; want chain_c in demo_mod", fn, m, ok)
	}
	if got := s.TextRanges(); len(got) != 1 || got[0] != [2]uint64{g.base + g.textOff, g.base + g.textOff + g.textSize} {
		t.Errorf("TextRanges = %#x", got)
	}
	// JIT code without an image is code not seen; a module's is not.
	if !s.UnseenCode(0x1000_1010) || s.UnseenCode(pc) || s.UnseenCode(0x1000_0010) {
		t.Errorf("UnseenCode: JIT code without image %v, module %v, unmapped %v; want true, false, false",
			s.UnseenCode(0x1000_1010), s.UnseenCode(pc), s.UnseenCode(0x1000_0010))
	}
	// Padding between functions: the module, but no function.
	if fn, m, ok := s.Lookup(g.base + g.textOff + 0x30); ok || m == nil {
		t.Errorf("Lookup(padding) = %+v, %v, %v; want module, no function", fn, m, ok)
	}

	// Nothing changed: nothing parsed, the failure is not reported again.
	added, err = s.Refresh()
	if added != 0 || err != nil {
		t.Errorf("second Refresh = %d, %v; want 0, nil", added, err)
	}
	if _, m2, _ := s.Lookup(pc); m2 != m {
		t.Errorf("module was parsed again")
	}

	// Freed and another module compiled at the same address: the headers
	// differ (here: one byte of the section table). The maps lines are
	// the same, so Refresh does not read; the first Lookup after it
	// checks the headers and names nothing, and the next Refresh locates
	// the new module, parsed again.
	*f.byteAt(g.base + uint64(len(img)) - 1) ^= 0xff
	if added, err = s.Refresh(); added != 0 || err != nil {
		t.Errorf("Refresh after reuse = %d, %v; want 0, nil (no reads)", added, err)
	}
	if fn, m2, ok := s.Lookup(pc); ok || m2 != nil {
		t.Errorf("Lookup after reuse = %+v, %v, %v; want nothing", fn, m2, ok)
	}
	added, err = s.Refresh()
	if added != 1 {
		t.Errorf("Refresh after reuse and Lookup = %d, %v; want 1", added, err)
	}
	if fn, m2, ok := s.Lookup(pc); !ok || fn.Name != "chain_c" || m2 == m {
		t.Errorf("Lookup of the new module = %+v, %v, %v; want chain_c, parsed again", fn, m2 == m, ok)
	}

	// Unmapped: dropped.
	f.maps = f.maps[len(f.maps)-1:]
	if added, _ := s.Refresh(); added != 0 || len(s.Modules()) != 0 || len(s.TextRanges()) != 0 {
		t.Errorf("after unmap: added %d, modules %d", added, len(s.Modules()))
	}
	if _, _, ok := s.Lookup(pc); ok {
		t.Errorf("Lookup found a function of an unmapped module")
	}
}

func TestSymbolizerPerfMapFallback(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	var f fakeProcess
	f.placeImage(g.base, readGolden(t, g.file), g.textOff, g.textSize)
	s := fakeSymbolizer(&f)
	path := fmt.Sprintf("/tmp/perf-%d.map", os.Getpid())
	if _, err := os.Stat(path); err == nil {
		t.Skipf("%s exists", path)
	}
	t.Cleanup(func() { os.Remove(path) })
	textStart := g.base + g.textOff
	perf := fmt.Sprintf("%#x 2e stale_name_for_chain_a\n0x1000 20 outside_any_module\n", textStart)
	if err := os.WriteFile(path, []byte(perf), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	if fn, m, ok := s.Lookup(textStart); !ok || m == nil || fn.Name != "chain_a" {
		t.Errorf("Lookup in module = %+v, %v; want chain_a from the image", fn, ok)
	}
	if fn, m, ok := s.Lookup(0x1010); !ok || m != nil || fn.Name != "outside_any_module" || fn.Kind != WasmFunction {
		t.Errorf("Lookup outside modules = %+v, %v, %v; want the perf-map entry", fn, m, ok)
	}
	os.Remove(path)
	s.Refresh()
	if _, _, ok := s.Lookup(0x1010); ok {
		t.Errorf("perf-map entry survived the file's removal")
	}
}

// Lookups run while Refresh swaps modules in and out (run with -race).
func TestSymbolizerConcurrent(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	var f fakeProcess
	f.placeImage(g.base, readGolden(t, g.file), g.textOff, g.textSize)
	s := fakeSymbolizer(&f)
	all := append([]proc.Mapping(nil), f.maps...)
	var mu sync.Mutex
	s.readMaps = func(int) ([]proc.Mapping, error) {
		mu.Lock()
		defer mu.Unlock()
		return append([]proc.Mapping(nil), f.maps...), nil
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if fn, _, ok := s.Lookup(g.base + g.textOff + 0x90); ok && fn.Name != "chain_c" {
					t.Errorf("Lookup = %q", fn.Name)
					return
				}
				s.TextRanges()
			}
		}()
	}
	for i := 0; i < 200; i++ {
		mu.Lock()
		if i%2 == 0 {
			f.maps = nil
		} else {
			f.maps = all
		}
		mu.Unlock()
		s.Refresh()
	}
	close(stop)
	wg.Wait()
}

// TestSymbolizerOwnProcess puts golden images into this test's own
// anonymous memory, with the permissions Wasmtime gives them, and finds
// them through /proc/self/maps and process_vm_readv: the live path
// without needing a Wasmtime process.
func TestSymbolizerOwnProcess(t *testing.T) {
	type placed struct {
		g    golden
		base uint64
	}
	var want []placed
	for _, c := range []struct {
		file    string
		padding int // rw pages before the image, merged with its header
	}{
		{"v39-module.elf", 0},
		{"v3-module.elf", 3},
	} {
		g := goldenByFile(t, c.file)
		img := readGolden(t, g.file)
		size := c.padding*page + (len(img)+page-1)&^(page-1)
		mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Munmap(mem) })
		copy(mem[c.padding*page:], img)
		text := mem[c.padding*page+int(g.textOff):][:g.textSize]
		if err := unix.Mprotect(text, unix.PROT_READ|unix.PROT_EXEC); err != nil {
			t.Fatal(err)
		}
		want = append(want, placed{g, uint64(uintptr(unsafe.Pointer(&mem[0]))) + uint64(c.padding*page)})
	}

	s := New(os.Getpid(), proc.ProcessMemory{PID: os.Getpid()})
	if _, err := s.Refresh(); err != nil {
		t.Logf("Refresh: %v", err) // other JIT code of this process, if any
	}
	for _, p := range want {
		fn, m, ok := s.Lookup(p.base + p.g.textOff + p.g.funcs[2].off)
		if !ok || m == nil {
			t.Errorf("%s: not found at %#x", p.g.file, p.base)
			continue
		}
		if fn.Name != "chain_c" {
			t.Errorf("%s: Lookup = %q, want chain_c", p.g.file, fn.Name)
		}
		t.Run(p.g.file, func(t *testing.T) { checkGolden(t, p.g, p.base, m) })
	}
}
