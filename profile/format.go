package profile

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// Format is an output format of a profile.
type Format string

// The formats, by the names --format takes.
const (
	Text       Format = "text"       // summary and top functions
	Folded     Format = "folded"     // folded stacks, for flamegraph.pl and inferno
	PProf      Format = "pprof"      // gzipped profile.proto, for go tool pprof
	SVG        Format = "svg"        // interactive flame graph
	Speedscope Format = "speedscope" // speedscope's JSON file format
)

// FormatInfo describes a format for help text.
type FormatInfo struct {
	Format     Format
	Extensions []string // file name endings that select it; the first is the usual one
	Summary    string
}

// Formats lists every format, in the order help lists them.
var Formats = []FormatInfo{
	{Text, []string{".txt"}, "summary and top functions by self time (the default on stdout)"},
	{Folded, []string{".folded"}, "folded stacks, one line per stack: input of flamegraph.pl and inferno"},
	{PProf, []string{".pb.gz", ".pprof"}, "gzipped profile.proto with pid/tid/thread labels: go tool pprof"},
	{SVG, []string{".svg"}, "interactive flame graph: click to zoom, search, tooltips; open in a browser"},
	{Speedscope, []string{".speedscope.json"}, "speedscope JSON: open in https://www.speedscope.app"},
}

// formatNames is "text, folded, pprof, svg, speedscope".
func formatNames() string {
	names := make([]string, len(Formats))
	for i, f := range Formats {
		names[i] = string(f.Format)
	}
	return strings.Join(names, ", ")
}

// ParseFormat returns the format called name.
func ParseFormat(name string) (Format, error) {
	for _, f := range Formats {
		if string(f.Format) == name {
			return f.Format, nil
		}
	}
	return "", fmt.Errorf("unknown format %q (%s)", name, formatNames())
}

// FormatFromPath returns the format a file name asks for by its ending:
// .txt, .folded, .pb.gz or .pprof, .svg, .speedscope.json. Standard output
// ("-" or "") gets text. Any other ending is an error.
func FormatFromPath(path string) (Format, error) {
	if path == "" || path == "-" {
		return Text, nil
	}
	if f, ok := formatOfName(path); ok {
		return f, nil
	}
	return "", fmt.Errorf("cannot tell the format from the file name %q: name it %s, or give --format",
		filepath.Base(path), extensionList())
}

func formatOfName(path string) (Format, bool) {
	base := strings.ToLower(filepath.Base(path))
	for _, f := range Formats {
		for _, ext := range f.Extensions {
			if strings.HasSuffix(base, ext) && len(base) > len(ext) {
				return f.Format, true
			}
		}
	}
	return "", false
}

func extensionList() string {
	var exts []string
	for _, f := range Formats {
		exts = append(exts, "*"+strings.Join(f.Extensions, ", *"))
	}
	return strings.Join(exts, ", ")
}

// ChooseFormat decides the format of output going to path from the
// --format value name ("" when not given):
//
//   - neither: standard output gets text, a file the format its name ends
//     in (FormatFromPath);
//   - name only, or a file name with an ending no format claims: name;
//   - both: they must agree, except that a .txt file may hold text or
//     folded stacks (both are plain text).
func ChooseFormat(name, path string) (Format, error) {
	if name == "" {
		return FormatFromPath(path)
	}
	f, err := ParseFormat(name)
	if err != nil {
		return "", err
	}
	if path == "" || path == "-" {
		return f, nil
	}
	byName, ok := formatOfName(path)
	if !ok || byName == f || (byName == Text && f == Folded) {
		return f, nil
	}
	return "", fmt.Errorf("--format %s does not match the file name %q, which asks for %s", f, filepath.Base(path), byName)
}

// Write writes the profile in format f.
func (p *Profile) Write(w io.Writer, f Format) error {
	switch f {
	case Text:
		return p.WriteTop(w, TopFunctions)
	case Folded:
		return p.WriteFolded(w)
	case PProf:
		return p.WritePprof(w)
	case SVG:
		return p.WriteSVG(w)
	case Speedscope:
		return p.WriteSpeedscope(w)
	}
	return fmt.Errorf("unknown format %q (%s)", string(f), formatNames())
}
