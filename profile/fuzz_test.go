package profile

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// Whatever a Wasm module names its functions, module and threads, every
// format writes it on one line, as valid UTF-8, XML and JSON, and the
// name reads the same in all of them.
func FuzzFormats(f *testing.F) {
	f.Add(oddName, "mod;\nule", "th\tread")
	f.Add("]]></script>", "\uFFFE\uFFFF", "\u2028")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, name, module, thread string) {
		shown := DisplayName(name)
		if !utf8.ValidString(shown) || strings.ContainsRune(shown, ';') || DisplayName(shown) != shown ||
			strings.IndexFunc(shown, unicode.IsControl) >= 0 {
			t.Fatalf("DisplayName(%q) = %q", name, shown)
		}
		p := New()
		p.PID, p.Comm, p.Hz = 1, thread, 99
		p.ByThread = true
		p.AddN(Sample{Frames: []Frame{WasmFrame("run", ""), WasmFrame(name, module)}, PID: 1, Process: thread, TID: 2, Thread: thread}, 2)

		if folded := string(write(t, p, Folded)); strings.Count(folded, "\n") != 1 || !strings.HasSuffix(folded, ";run;"+shown+" 2\n") {
			t.Errorf("folded %q", folded)
		}
		found := false
		for _, title := range svgTitles(t, write(t, p, SVG)) { // well-formed XML
			found = found || strings.HasPrefix(title, shown+"\n")
		}
		if !found {
			t.Errorf("no svg frame titled %q", shown)
		}
		var ss speedscopeFile
		if err := json.Unmarshal(write(t, p, Speedscope), &ss); err != nil {
			t.Fatal(err)
		}
		found = false
		for _, fr := range ss.Shared.Frames {
			found = found || fr.Name == shown
		}
		if !found {
			t.Errorf("speedscope frames %+v lack %q", ss.Shared.Frames, shown)
		}
		pp := parsePprof(t, write(t, p, PProf))
		if got := pp.Sample[0].Location[0].Line[0].Function.Name; got != shown {
			t.Errorf("pprof name %q, want %q", got, shown)
		}
	})
}
