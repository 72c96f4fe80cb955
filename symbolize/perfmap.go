package symbolize

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Bounds on a perf map. Lines longer than maxPerfMapLine are skipped.
const (
	maxPerfMapLine  = 4096
	maxPerfMapLines = 1 << 20
)

// perfMapPath is the target's /tmp/perf-PID.map seen through its root, with
// the PID as the target knows itself (the innermost of NSpid).
func perfMapPath(pid int) string {
	return fmt.Sprintf("/proc/%d/root/tmp/perf-%d.map", pid, namespacePID(pid))
}

// namespacePID returns pid as seen inside its own PID namespace.
func namespacePID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return pid
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				if n, err := strconv.Atoi(f[len(f)-1]); err == nil && n > 0 {
					return n
				}
			}
		}
	}
	return pid
}

// ReadPerfMap reads the perf map the target wrote for itself
// (/tmp/perf-PID.map inside its root), the fallback for code outside any
// image. A missing file is an error wrapping fs.ErrNotExist.
func ReadPerfMap(pid int) ([]Func, error) {
	f, err := os.Open(perfMapPath(pid))
	if err != nil {
		return nil, fmt.Errorf("read perf map of pid %d: %w", pid, err)
	}
	defer f.Close()
	funcs, err := ParsePerfMap(f)
	if err != nil {
		return funcs, fmt.Errorf("read perf map of pid %d: %w", pid, err)
	}
	return funcs, nil
}

// ParsePerfMap parses the perf map format, one "START SIZE name" line per
// symbol with START and SIZE in hex (Wasmtime writes START with 0x). The
// name is the rest of the line and may contain spaces. Malformed and
// overlong lines are skipped as perf does. Symbols recognised as Wasmtime's
// are classified like image symbols; other names are Wasmtime's plain
// names of Wasm functions. When entries start at the same address the
// later one wins; the result is sorted by Start. On error (I/O, or more
// than maxPerfMapLines lines) the entries read so far are returned too.
func ParsePerfMap(r io.Reader) ([]Func, error) {
	return parsePerfMap(r, maxPerfMapLines)
}

func parsePerfMap(r io.Reader, maxLines int) ([]Func, error) {
	br := bufio.NewReaderSize(r, maxPerfMapLine+1)
	var funcs []Func
	var err error
	for lines := 0; ; lines++ {
		if lines == maxLines {
			err = fmt.Errorf("more than %d lines", maxLines)
			break
		}
		line, rerr := br.ReadSlice('\n')
		if errors.Is(rerr, bufio.ErrBufferFull) {
			// Overlong: drop it and everything up to its newline.
			for errors.Is(rerr, bufio.ErrBufferFull) {
				_, rerr = br.ReadSlice('\n')
			}
			if rerr != nil && rerr != io.EOF {
				err = rerr
				break
			}
			if rerr == io.EOF {
				break
			}
			continue
		}
		if f, ok := parsePerfMapLine(line); ok {
			funcs = append(funcs, f)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	sort.SliceStable(funcs, func(i, j int) bool { return funcs[i].Start < funcs[j].Start })
	out := funcs[:0]
	for _, f := range funcs {
		if n := len(out); n > 0 && out[n-1].Start == f.Start {
			out[n-1] = f
			continue
		}
		out = append(out, f)
	}
	// Keep Lookup's invariant: no overlaps.
	for i := 0; i+1 < len(out); i++ {
		out[i].End = min(out[i].End, out[i+1].Start)
	}
	return out, err
}

func parsePerfMapLine(line []byte) (Func, bool) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	startField, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return Func{}, false
	}
	sizeField, name, ok := bytes.Cut(rest, []byte(" "))
	if !ok || len(name) == 0 {
		return Func{}, false
	}
	start, ok := parseHex(startField)
	if !ok {
		return Func{}, false
	}
	size, ok := parseHex(sizeField)
	if !ok || size == 0 || start+size < start {
		return Func{}, false
	}
	f := Func{Start: start, End: start + size, Name: string(name)}
	si := classify(f.Name)
	f.Kind, f.Index = si.kind, si.index
	switch {
	case si.kind == WasmFunction && si.name != "":
		f.Name = si.name
	case si.kind == WasmFunction && !strings.HasPrefix(f.Name, "wasm["):
		f.Name = unnamedFunction(0, si.index)
	case si.kind == Other:
		f.Kind = WasmFunction
	}
	return f, true
}

func parseHex(b []byte) (uint64, bool) {
	s := string(b)
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s = s[2:]
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return v, err == nil
}
