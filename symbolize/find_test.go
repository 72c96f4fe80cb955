package symbolize

import (
	"errors"
	"fmt"
	"sort"
	"testing"

	"github.com/wasmtrace/wasmtrace/proc"
)

const page = 0x1000

// fakeProcess is an address space made of byte slices, with the mappings
// /proc/PID/maps would show for it.
type fakeProcess struct {
	regions []fakeRegion // sorted by start
	maps    []proc.Mapping
}

type fakeRegion struct {
	start uint64
	data  []byte
}

func (f *fakeProcess) ReadAt(p []byte, addr uint64) (int, error) {
	n := 0
	for n < len(p) {
		a := addr + uint64(n)
		i := sort.Search(len(f.regions), func(i int) bool {
			return f.regions[i].start+uint64(len(f.regions[i].data)) > a
		})
		if i == len(f.regions) || f.regions[i].start > a {
			return n, fmt.Errorf("read %d bytes at %#x: %w", len(p), addr, proc.ErrUnreadable)
		}
		n += copy(p[n:], f.regions[i].data[a-f.regions[i].start:])
	}
	return n, nil
}

// byteAt returns the byte at addr for a test to modify.
func (f *fakeProcess) byteAt(addr uint64) *byte {
	for _, r := range f.regions {
		if addr >= r.start && addr-r.start < uint64(len(r.data)) {
			return &r.data[addr-r.start]
		}
	}
	panic(fmt.Sprintf("no memory at %#x", addr))
}

// mapping adds memory holding data (padded to pages) at start and returns
// its mapping for the caller to adjust.
func (f *fakeProcess) mapping(start uint64, data []byte, perms string) *proc.Mapping {
	size := (uint64(len(data)) + page - 1) &^ (page - 1)
	buf := make([]byte, size)
	copy(buf, data)
	f.regions = append(f.regions, fakeRegion{start, buf})
	sort.Slice(f.regions, func(i, j int) bool { return f.regions[i].start < f.regions[j].start })
	f.maps = append(f.maps, proc.Mapping{Start: start, End: start + size, Perms: perms})
	sort.Slice(f.maps, func(i, j int) bool { return f.maps[i].Start < f.maps[j].Start })
	for i := range f.maps {
		if f.maps[i].Start == start {
			return &f.maps[i]
		}
	}
	return nil
}

// placeImage maps img at base the way Wasmtime 37+ does: the header page
// r--, the text pages r-x, the rest r--.
func (f *fakeProcess) placeImage(base uint64, img []byte, textOff, textSize uint64) {
	f.mapping(base, img[:textOff], "r--p")
	f.mapping(base+textOff, img[textOff:textOff+textSize], "r-xp")
	f.mapping(base+textOff+textSize, img[textOff+textSize:], "r--p")
}

func goldenByFile(t *testing.T, file string) golden {
	for _, g := range goldens {
		if g.file == file {
			return g
		}
	}
	t.Fatalf("no golden %s", file)
	return golden{}
}

func TestFindModulesModernLayout(t *testing.T) {
	var f fakeProcess
	g := goldenByFile(t, "v39-module.elf")
	f.placeImage(g.base, readGolden(t, g.file), g.textOff, g.textSize)
	// Neighbours that are not images: JIT code of something else, a file
	// mapping, a writable and executable thread stack.
	f.mapping(0x1000_0000, make([]byte, page), "rw-p")
	f.mapping(0x1000_1000, make([]byte, page), "r-xp")
	lib := f.mapping(0x2000_0000, make([]byte, page), "r-xp")
	lib.Path, lib.Inode = "/usr/lib/libc.so.6", 42
	f.mapping(0x3000_0000, make([]byte, 4*page), "rwxp")

	mods, err := FindModules(&f, f.maps)
	if len(mods) != 1 {
		t.Fatalf("found %d modules, want 1 (err %v)", len(mods), err)
	}
	checkGolden(t, g, g.base, mods[0])
	var ie *ImageError
	if !errors.Is(err, ErrNoImage) || !errors.As(err, &ie) || ie.Text.Start != 0x1000_1000 {
		t.Errorf("err = %v, want one ErrNoImage for the JIT mapping at 0x10001000", err)
	}
}

// TestFindModulesWasmtime3Layout rebuilds the layout seen live in a
// Wasmtime 3 process: the host-function image and the module image are
// adjacent and the kernel merged the tail of the first with the header of
// the second into one rw-p mapping, so the module's header is in the
// middle of a mapping.
func TestFindModulesWasmtime3Layout(t *testing.T) {
	host, mod := goldenByFile(t, "v3-host.elf"), goldenByFile(t, "v3-module.elf")
	hostImg, modImg := readGolden(t, host.file), readGolden(t, mod.file)
	var f fakeProcess
	// Junk below, including a page that starts with the ELF magic.
	junk := make([]byte, 3*page)
	copy(junk[page:], "\x7fELF\x02\x01\x01garbage")
	f.regions = append(f.regions, fakeRegion{host.base - uint64(len(junk)), junk})
	hostTail := hostImg[host.textOff+host.textSize:]
	merged := append(append([]byte(nil), hostTail...), make([]byte, page-len(hostTail)%page)...)
	merged = append(merged, modImg[:mod.textOff]...)
	f.regions = append(f.regions,
		fakeRegion{host.base, hostImg[:host.textOff]},
		fakeRegion{host.base + host.textOff, hostImg[host.textOff : host.textOff+host.textSize]},
		fakeRegion{host.base + host.textOff + host.textSize, merged},
		fakeRegion{mod.base + mod.textOff, modImg[mod.textOff : mod.textOff+mod.textSize]},
		fakeRegion{mod.base + mod.textOff + mod.textSize, modImg[mod.textOff+mod.textSize:]},
	)
	if host.base+host.textOff+host.textSize+uint64(len(merged)) != mod.base+mod.textOff {
		t.Fatalf("captured bases do not give the live layout")
	}
	f.maps = []proc.Mapping{
		{Start: host.base - uint64(len(junk)), End: host.base + host.textOff, Perms: "rw-p"},
		{Start: host.base + host.textOff, End: host.base + host.textOff + host.textSize, Perms: "r-xp"},
		{Start: host.base + host.textOff + host.textSize, End: mod.base + mod.textOff, Perms: "rw-p"},
		{Start: mod.base + mod.textOff, End: mod.base + mod.textOff + mod.textSize, Perms: "r-xp"},
		{Start: mod.base + mod.textOff + mod.textSize, End: (mod.base + uint64(len(modImg)) + page - 1) &^ (page - 1), Perms: "rw-p"},
	}

	mods, err := FindModules(&f, f.maps)
	if err != nil {
		t.Errorf("err = %v", err)
	}
	if len(mods) != 2 {
		t.Fatalf("found %d modules, want 2", len(mods))
	}
	checkGolden(t, host, host.base, mods[0])
	checkGolden(t, mod, mod.base, mods[1])
}

// An ELF header below a text mapping whose .text is elsewhere, or one
// that does not parse, is reported with its address and skipped.
func TestFindModulesRejects(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	img := readGolden(t, g.file)
	var f fakeProcess
	// A copy of the image header page right below an unrelated r-x
	// mapping: parses, but its .text would be one page above the header,
	// and that mapping is two pages above.
	f.mapping(0x5000_0000, img, "r--p")
	f.mapping(0x5000_0000+uint64(len(img)+page-1)&^(page-1), make([]byte, page), "r-xp")
	// Garbage with the magic.
	f.mapping(0x6000_0000, []byte("\x7fELF\x02\x01\x01\x00"), "rw-p")
	f.mapping(0x6000_1000, make([]byte, page), "r-xp")

	mods, err := FindModules(&f, f.maps)
	if len(mods) != 0 {
		t.Fatalf("found %d modules, want none", len(mods))
	}
	var errs []*ImageError
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ie *ImageError
		if !errors.As(e, &ie) {
			t.Fatalf("%v is not an ImageError", e)
		}
		errs = append(errs, ie)
	}
	if len(errs) != 2 || errs[0].Base != 0x5000_0000 || errs[1].Base != 0x6000_0000 ||
		!errors.Is(errs[0], ErrNotImage) || !errors.Is(errs[1], ErrNotImage) {
		t.Errorf("errors = %v, want ErrNotImage at 0x50000000 and 0x60000000", err)
	}
}

// The scan stops at a gap or at memory that is not anonymous and
// readable: an image there is not ours.
func TestFindModulesScanStops(t *testing.T) {
	g := goldenByFile(t, "v39-module.elf")
	img := readGolden(t, g.file)
	for _, c := range []struct {
		name   string
		header proc.Mapping
	}{
		{"gap", proc.Mapping{Start: g.base - page, End: g.base, Perms: "r--p"}},
		{"guard page", proc.Mapping{Start: g.base, End: g.base + g.textOff, Perms: "---p"}},
		{"file", proc.Mapping{Start: g.base, End: g.base + g.textOff, Perms: "r--p", Inode: 7, Path: "/x"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f fakeProcess
			f.placeImage(g.base, img, g.textOff, g.textSize)
			f.maps[0] = c.header
			mods, err := FindModules(&f, f.maps)
			if len(mods) != 0 || !errors.Is(err, ErrNoImage) {
				t.Errorf("got %d modules, err %v; want none and ErrNoImage", len(mods), err)
			}
		})
	}
}
