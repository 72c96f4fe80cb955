package proc

import (
	"fmt"
	"strings"
	"testing"
)

func formatMapping(m Mapping) string {
	s := fmt.Sprintf("%x-%x %s %08x 00:00 %d", m.Start, m.End, m.Perms, m.Offset, m.Inode)
	if m.Path != "" {
		s += "    " + m.Path
	}
	return s
}

// kernelPath: the kernel prints a mapping's name as an absolute path or a
// bracketed pseudo-name ([heap], [anon:NAME]), never starting with what
// could be mistaken for an earlier column.
// (Control characters are left out too: bufio's line splitting drops a
// trailing \r.)
func kernelPath(p string) bool {
	return (p == "" || p[0] == '/' || p[0] == '[') && !strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// kernelPerms: four letters, like "r-xp".
func kernelPerms(p string) bool {
	return len(p) == 4 && strings.ContainsRune("r-", rune(p[0])) && strings.ContainsRune("w-", rune(p[1])) &&
		strings.ContainsRune("x-", rune(p[2])) && strings.ContainsRune("ps", rune(p[3]))
}

func FuzzParseMaps(f *testing.F) {
	for _, s := range []string{
		"",
		"55d4a0e00000-55d4a0e02000 r--p 00000000 fd:01 1234                       /usr/bin/cat\n",
		"7f3a00000000-7f3a00021000 rw-p 00000000 00:00 0 \n7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0                          [stack]\n",
		"7f00-7f10 r-xp 00000000 00:00 0    /memfd:wasm (deleted)\n",
		"7f00-7f10 r-xp 00000000 fd:01 77 /path with spaces/lib.so\n",
		"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
		"7f10-7f00 r-xp 00000000 00:00 0\n",
		"zz-7f00 r-xp 00000000 00:00 0\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		maps, err := ParseMaps(strings.NewReader(in))
		if err != nil {
			return
		}
		if n := strings.Count(in, "\n") + 1; len(maps) > n {
			t.Fatalf("%d mappings from %d lines", len(maps), n)
		}
		for _, m := range maps {
			if m.End < m.Start {
				t.Fatalf("mapping ends before it starts: %+v", m)
			}
			if strings.HasSuffix(m.Path, " ") || strings.HasPrefix(m.Path, " ") {
				t.Fatalf("path %q not trimmed", m.Path)
			}
			_ = m.Readable() || m.Executable() || m.Anonymous()
			if !kernelPath(m.Path) {
				// Formatting cannot give back paths the kernel never
				// writes (such as ones with leading or odd Unicode spaces).
				continue
			}
			// Formatting a mapping and parsing it again gives it back.
			again, err := ParseMaps(strings.NewReader(formatMapping(m)))
			if err != nil || len(again) != 1 || again[0] != m {
				t.Fatalf("round trip of %+v: %+v, %v", m, again, err)
			}
		}
	})
}

// Lines the parser must refuse, with the line number in the error.
func TestParseMapsErrors(t *testing.T) {
	for _, in := range []string{
		"7f00 r-xp 00000000 00:00 0",
		"7f00-7f10 r-xp",
		"7f10-7f00 r-xp 00000000 00:00 0",
		"7g00-7f10 r-xp 00000000 00:00 0",
		"7f00-7f1z r-xp 00000000 00:00 0",
		"7f00-7f10 r-xp 0000000z 00:00 0",
		"7f00-7f10 r-xp 00000000 00:00 -1",
		"7f00-7f10 r-xp 00000000 00:00 0\n" + strings.Repeat("x", 70<<10),
	} {
		if m, err := ParseMaps(strings.NewReader(in)); err == nil {
			t.Errorf("%.60q parsed as %+v", in, m)
		}
	}
	if _, err := ParseMaps(strings.NewReader("ok\n7f00-7f10 r-xp 00000000 00:00 0\nbad")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("error does not name the line: %v", err)
	}
}
