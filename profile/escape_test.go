package profile

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"
)

func TestDisplayName(t *testing.T) {
	for in, want := range map[string]string{
		"run":                     "run",
		"wasm[0]::function[3]":    "wasm[0]::function[3]",
		"a;b;c":                   "a:b:c",
		"line\nbreak\r\n":         "line break  ",
		"tab\there":               "tab here",
		"nul\x00del\x7f c1\u0085": "nul del  c1 ",
		"sep\u2028par\u2029":      "sep par ",
		"bad\xffutf8\xc3":         "bad\uFFFDutf8\uFFFD",
		"ok \uFFFD kept":          "ok \uFFFD kept",
		"ünïcödé 函数 <&>\"'":       "ünïcödé 函数 <&>\"'",
		"":                        "",
	} {
		if got := DisplayName(in); got != want {
			t.Errorf("DisplayName(%q) = %q, want %q", in, got, want)
		}
	}
}

// A name to escape reads the same in every format.
func TestEscapingIsTheSameInEveryFormat(t *testing.T) {
	p := New()
	p.PID, p.Comm, p.Hz = 1, "proc;x\n", 99
	p.AddN(Sample{Frames: []Frame{WasmFrame("run", ""), WasmFrame(oddName, "mod;\nule")}, PID: 1, TID: 2, Thread: "th;\tr"}, 3)

	if got, want := string(write(t, p, Folded)), "run;"+oddShown+" 3\n"; got != want {
		t.Errorf("folded = %q, want %q", got, want)
	}
	if got := string(write(t, p, Text)); !strings.Contains(got, "  "+oddShown+"\n") || !strings.Contains(got, "(proc:x )") {
		t.Errorf("text does not show %q and the process name escaped:\n%s", oddShown, got)
	}

	pp := parsePprof(t, write(t, p, PProf))
	fn := pp.Sample[0].Location[0].Line[0].Function
	if fn.Name != oddShown || fn.Filename != "mod: ule" {
		t.Errorf("pprof function %q in %q, want %q in %q", fn.Name, fn.Filename, oddShown, "mod: ule")
	}
	if got := pp.Sample[0].Label[LabelThread]; len(got) != 1 || got[0] != "th: r" {
		t.Errorf("pprof thread label %q, want th: r", got)
	}

	var ss speedscopeFile
	if err := json.Unmarshal(write(t, p, Speedscope), &ss); err != nil {
		t.Fatal(err)
	}
	if got := ss.Shared.Frames[0]; got.Name != oddShown || got.File != "mod: ule" {
		t.Errorf("speedscope frame %+v, want %q in %q", got, oddShown, "mod: ule")
	}

	// In the SVG, the name is the first line of a frame's title.
	titles := svgTitles(t, write(t, p, SVG))
	found := false
	for _, title := range titles {
		if strings.Split(title, "\n")[0] == oddShown {
			found = true
			if !strings.Contains(title, "\nmodule mod: ule\n") {
				t.Errorf("svg title %q does not name the module mod: ule", title)
			}
		}
	}
	if !found {
		t.Errorf("no svg frame titled %q in %q", oddShown, titles)
	}
}

// svgTitles parses an SVG as XML and returns the title of every frame.
func svgTitles(t *testing.T, svg []byte) []string {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	var titles []string
	inFrame, inTitle := 0, false
	var cur strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return titles
			}
			t.Fatalf("svg is not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if tok.Name.Local == "g" {
				for _, a := range tok.Attr {
					if a.Name.Local == "class" && a.Value == "f" {
						inFrame++
					}
				}
			}
			if tok.Name.Local == "title" && inFrame > 0 {
				inTitle = true
				cur.Reset()
			}
		case xml.CharData:
			if inTitle {
				cur.Write(tok)
			}
		case xml.EndElement:
			if tok.Name.Local == "title" && inTitle {
				inTitle = false
				titles = append(titles, cur.String())
			}
			if tok.Name.Local == "g" && inFrame > 0 {
				inFrame--
			}
		}
	}
}
