package profile

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseFormat(t *testing.T) {
	for _, f := range Formats {
		if got, err := ParseFormat(string(f.Format)); err != nil || got != f.Format {
			t.Errorf("ParseFormat(%q) = %q, %v", f.Format, got, err)
		}
	}
	_, err := ParseFormat("xml")
	if want := `unknown format "xml" (text, folded, pprof, svg, speedscope)`; err == nil || err.Error() != want {
		t.Errorf("ParseFormat(xml) error %v, want %q", err, want)
	}
}

func TestFormatFromPath(t *testing.T) {
	for path, want := range map[string]Format{
		"":                            Text,
		"-":                           Text,
		"top.txt":                     Text,
		"out/wasm.folded":             Folded,
		"WASM.FOLDED":                 Folded,
		"cpu.pb.gz":                   PProf,
		"cpu.pprof":                   PProf,
		"/tmp/flame.svg":              SVG,
		"run.speedscope.json":         Speedscope,
		"dir.svg/run.Speedscope.JSON": Speedscope,
	} {
		if got, err := FormatFromPath(path); err != nil || got != want {
			t.Errorf("FormatFromPath(%q) = %q, %v; want %q", path, got, err, want)
		}
	}
	for path, want := range map[string]string{
		"profile":      `cannot tell the format from the file name "profile": name it *.txt, *.folded, *.pb.gz, *.pprof, *.svg, *.speedscope.json, or give --format`,
		"out/run.json": `cannot tell the format from the file name "run.json": name it *.txt, *.folded, *.pb.gz, *.pprof, *.svg, *.speedscope.json, or give --format`,
		"cpu.pb":       `cannot tell the format from the file name "cpu.pb": name it *.txt, *.folded, *.pb.gz, *.pprof, *.svg, *.speedscope.json, or give --format`,
		".svg":         `cannot tell the format from the file name ".svg": name it *.txt, *.folded, *.pb.gz, *.pprof, *.svg, *.speedscope.json, or give --format`,
	} {
		if got, err := FormatFromPath(path); err == nil || err.Error() != want {
			t.Errorf("FormatFromPath(%q) = %q, %v; want error %q", path, got, err, want)
		}
	}
}

func TestChooseFormat(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		want       Format
		err        string
	}{
		{"", "-", Text, ""},
		{"", "flame.svg", SVG, ""},
		{"folded", "-", Folded, ""},
		{"svg", "", SVG, ""},
		{"pprof", "cpu.pb.gz", PProf, ""},
		{"pprof", "profile.data", PProf, ""}, // an ending no format claims
		{"folded", "stacks.txt", Folded, ""}, // .txt holds folded stacks too
		{"text", "stacks.txt", Text, ""},
		{"xml", "-", "", `unknown format "xml" (text, folded, pprof, svg, speedscope)`},
		{"xml", "flame.svg", "", `unknown format "xml" (text, folded, pprof, svg, speedscope)`},
		{"folded", "flame.svg", "", `--format folded does not match the file name "flame.svg", which asks for svg`},
		{"svg", "out/cpu.pb.gz", "", `--format svg does not match the file name "cpu.pb.gz", which asks for pprof`},
		{"text", "x.folded", "", `--format text does not match the file name "x.folded", which asks for folded`},
		{"", "profile", "", `cannot tell the format from the file name "profile": name it *.txt, *.folded, *.pb.gz, *.pprof, *.svg, *.speedscope.json, or give --format`},
	} {
		got, err := ChooseFormat(tc.name, tc.path)
		errText := ""
		if err != nil {
			errText = err.Error()
		}
		if got != tc.want || errText != tc.err {
			t.Errorf("ChooseFormat(%q, %q) = %q, %q; want %q, %q", tc.name, tc.path, got, errText, tc.want, tc.err)
		}
	}
}

func TestWriteUnknownFormat(t *testing.T) {
	err := fixture().Write(&bytes.Buffer{}, "xml")
	if err == nil || !strings.Contains(err.Error(), `unknown format "xml"`) {
		t.Errorf("Write(xml) error %v", err)
	}
}
