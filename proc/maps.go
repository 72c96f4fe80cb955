package proc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Perms      string // "r-xp"
	Offset     uint64
	Inode      uint64
	Path       string // "" for anonymous memory
}

func (m Mapping) Readable() bool   { return len(m.Perms) > 0 && m.Perms[0] == 'r' }
func (m Mapping) Executable() bool { return len(m.Perms) > 2 && m.Perms[2] == 'x' }

// Anonymous reports memory not backed by a file: where Wasmtime puts the
// images of the modules it compiles.
func (m Mapping) Anonymous() bool {
	return m.Inode == 0 && (m.Path == "" || m.Path[0] != '/') && !strings.HasPrefix(m.Path, "[")
}

// maxMapsLines bounds how much of a maps file is parsed; real processes
// have thousands of lines, not millions.
const maxMapsLines = 1 << 20

// ReadMaps parses /proc/PID/maps.
func ReadMaps(pid int) ([]Mapping, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, fmt.Errorf("read memory map of pid %d: %w", pid, err)
	}
	defer f.Close()
	maps, err := ParseMaps(f)
	if err != nil {
		return nil, fmt.Errorf("read memory map of pid %d: %w", pid, err)
	}
	return maps, nil
}

// ParseMaps parses the maps format. Malformed lines are an error, not a
// panic.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for line := 1; sc.Scan(); line++ {
		if line > maxMapsLines {
			return nil, fmt.Errorf("more than %d mappings", maxMapsLines)
		}
		m, err := parseMapsLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

func parseMapsLine(s string) (Mapping, error) {
	// 7f00-7f10 r-xp 00000000 00:00 0    /path with spaces
	f := strings.Fields(s)
	if len(f) < 5 {
		return Mapping{}, fmt.Errorf("malformed mapping %q", s)
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return Mapping{}, fmt.Errorf("malformed address range %q", f[0])
	}
	var m Mapping
	var err error
	if m.Start, err = strconv.ParseUint(lo, 16, 64); err != nil {
		return Mapping{}, fmt.Errorf("malformed address range %q", f[0])
	}
	if m.End, err = strconv.ParseUint(hi, 16, 64); err != nil || m.End < m.Start {
		return Mapping{}, fmt.Errorf("malformed address range %q", f[0])
	}
	m.Perms = f[1]
	if m.Offset, err = strconv.ParseUint(f[2], 16, 64); err != nil {
		return Mapping{}, fmt.Errorf("malformed offset %q", f[2])
	}
	if m.Inode, err = strconv.ParseUint(f[4], 10, 64); err != nil {
		return Mapping{}, fmt.Errorf("malformed inode %q", f[4])
	}
	if len(f) > 5 {
		// The path is everything after the inode column, spaces
		// included: skip five columns rather than search for the path's
		// first word, which may also appear in an earlier column.
		rest := s
		for range 5 {
			rest = strings.TrimLeftFunc(rest, unicode.IsSpace)
			rest = rest[strings.IndexFunc(rest, unicode.IsSpace):]
		}
		m.Path = strings.TrimRight(strings.TrimLeftFunc(rest, unicode.IsSpace), " ")
	}
	return m, nil
}
