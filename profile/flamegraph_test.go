package profile

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

type svgFrame struct {
	s, n, d    int
	x, w       float64
	fill, name string
	label      string
}

var svgFrameRE = regexp.MustCompile(`<g class="f" data-s="(\d+)" data-n="(\d+)" data-d="(\d+)"><title>([^<\n]*)[^<]*</title><rect x="([\d.]+)" y="\d+" width="([\d.]+)" height="15" fill="([^"]+)" rx="2"/><text x="[\d.]+" y="\d+">([^<]*)</text></g>`)

func svgFrames(t *testing.T, svg []byte) []svgFrame {
	t.Helper()
	var out []svgFrame
	for _, m := range svgFrameRE.FindAllStringSubmatch(string(svg), -1) {
		atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
		atof := func(s string) float64 { f, _ := strconv.ParseFloat(s, 64); return f }
		out = append(out, svgFrame{atoi(m[1]), atoi(m[2]), atoi(m[3]), atof(m[5]), atof(m[6]), m[7],
			html.UnescapeString(m[4]), html.UnescapeString(m[8])})
	}
	if n := strings.Count(string(svg), `<g class="f"`); n != len(out) {
		t.Fatalf("%d frames, %d of them in the expected form", n, len(out))
	}
	return out
}

// The flame graph's frames are the profile's stacks: each frame as wide as
// its samples, inside its parent, in name order, coloured by kind.
func TestSVGFrames(t *testing.T) {
	p := fixture()
	svg := write(t, p, SVG)
	svgTitles(t, svg) // well-formed XML
	frames := svgFrames(t, svg)
	// all, run, chain_a, chain_b, chain_c, cb, [host], inner, inner,
	// host_call, [host], odd, 0x..., [no Wasm], [unwind failed].
	if len(frames) != 15 {
		t.Fatalf("%d frames, want 15", len(frames))
	}
	scale := float64(fgWidth-2*fgPad) / 258
	var stack []svgFrame // the ancestors of the current frame
	byName := map[string]svgFrame{}
	for _, f := range frames {
		stack = stack[:f.d]
		if f.d > 0 {
			parent := stack[f.d-1]
			if f.s < parent.s || f.s+f.n > parent.s+parent.n {
				t.Errorf("%s [%d,+%d) outside its parent %s [%d,+%d)", f.name, f.s, f.n, parent.name, parent.s, parent.n)
			}
		}
		stack = append(stack, f)
		if fmt.Sprintf("%.2f %.2f", f.x, f.w) != fmt.Sprintf("%.2f %.2f", fgPad+float64(f.s)*scale, float64(f.n)*scale) {
			t.Errorf("%s at x=%.2f width %.2f, want %.2f, %.2f", f.name, f.x, f.w, fgPad+float64(f.s)*scale, float64(f.n)*scale)
		}
		if f.label != fitLabel(f.name, f.w) {
			t.Errorf("%s labelled %q, want %q", f.name, f.label, fitLabel(f.name, f.w))
		}
		byName[f.name] = f
	}
	for name, want := range map[string]struct {
		n, d int
		fill string
	}{
		"all":                     {258, 0, "rgb(225,225,225)"},
		"run":                     {200, 1, frameFill(WasmFrame("run", "demo"))},
		"chain_c":                 {124, 4, frameFill(WasmFrame("chain_c", "demo"))},
		"[no Wasm]":               {55, 1, "rgb(185,185,185)"},
		"[unwind failed: bad fp]": {3, 1, "url(#hatch)"},
		"0x7f0012345678":          {2, 2, "rgb(175,200,170)"},
		oddShown:                  {5, 2, frameFill(WasmFrame(oddName, ""))},
	} {
		f := byName[name]
		if f.n != want.n || f.d != want.d || f.fill != want.fill {
			t.Errorf("%s: %d samples at depth %d in %s; want %d, %d, %s", name, f.n, f.d, f.fill, want.n, want.d, want.fill)
		}
	}
	// Name order among siblings of run: 0x..., cb, chain_a, host_call, odd.
	var order []string
	for _, f := range frames {
		if f.d == 2 {
			order = append(order, f.name)
		}
	}
	if got := strings.Join(order, ","); got != "0x7f0012345678,cb,chain_a,host_call,"+oddShown {
		t.Errorf("children of run in order %s", got)
	}
	for _, want := range []string{
		`<text id="title" x="600" y="24">Wasm CPU flame graph: pid 4242 (target-v39)</text>`,
		`<text id="subtitle" x="600" y="44">3.0 s at 99 Hz · 258 samples · 200 with Wasm on the stack (77.5%) · 2 lost</text>`,
		"<title>chain_c\nmodule demo\nWasm function\n124 samples (48.06%), self 124 samples (48.06%)</title>",
		"<title>[host]\nhost code\n40 samples (15.50%), self 40 samples (15.50%)</title>",
	} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("svg lacks %q", want)
		}
	}
}

func TestSVGColoursByKind(t *testing.T) {
	seen := map[string]Kind{}
	for _, f := range []Frame{WasmFrame("a", ""), WasmFrame("b", ""), WasmFrame("c", ""), HostFrame(), NoWasmFrame(),
		UnwindFailedFrame("x"), UnresolvedFrame(1), ThreadFrame(1, "t"), ProcessFrame(1, "p")} {
		fill := frameFill(f)
		if k, ok := seen[fill]; ok && k != f.Kind {
			t.Errorf("%v and %v share colour %s", k, f.Kind, fill)
		}
		seen[fill] = f.Kind
		if frameFill(f) != fill {
			t.Errorf("colour of %v not deterministic", f)
		}
	}
	// Wasm colours stay warm: red ≥ green > blue.
	for i := range 200 {
		var r, g, b int
		fmt.Sscanf(frameFill(WasmFrame(fmt.Sprint("f", i), "")), "rgb(%d,%d,%d)", &r, &g, &b)
		if r < g || g <= b || r < 215 {
			t.Errorf("Wasm colour rgb(%d,%d,%d) is not warm", r, g, b)
		}
	}
}

func TestFitLabel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		width float64
		want  string
	}{
		{"chain_c", 200, "chain_c"},
		{"chain_c", 6 + 7*fgCharWidth, "chain_c"},
		{"chain_c", 6 + 6*fgCharWidth, "chai.."},
		{"chain_c", 6 + 3*fgCharWidth, "c.."},
		{"chain_c", 6 + 2.9*fgCharWidth, ""},
		{"函数函数函数", 6 + 5*fgCharWidth, "函数函.."},
	} {
		if got := fitLabel(tc.name, tc.width); got != tc.want {
			t.Errorf("fitLabel(%q, %.1f) = %q, want %q", tc.name, tc.width, got, tc.want)
		}
	}
}

func TestSVGEmbedsSafely(t *testing.T) {
	if strings.Contains(flameScript, "]]>") || strings.Contains(flameStyle, "]]>") {
		t.Error("script or style would end its CDATA section")
	}
	p := New()
	p.Add(Sample{Frames: []Frame{WasmFrame("]]></script><script>alert(1)</script>", "")}})
	svg := write(t, p, SVG)
	svgTitles(t, svg)
	if bytes.Contains(svg, []byte("<script>alert")) {
		t.Error("a frame name is written unescaped")
	}
}

// chromium runs headless Chromium on url with the given extra flags and
// returns its standard output.
func chromium(t *testing.T, url string, extra ...string) []byte {
	t.Helper()
	bin := requireTool(t, "apt-get install -y chromium", "chromium", "chromium-browser", "google-chrome")
	profileDir, err := os.MkdirTemp("", "wasmtrace-chromium")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(profileDir)
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profileDir, "--window-size=1200,800"}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// screenshotDir keeps screenshots where WASMTRACE_SCREENSHOTS says, to
// look at them; else in a temporary directory.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("WASMTRACE_SCREENSHOTS"); d != "" {
		return d
	}
	return t.TempDir()
}

// Chromium renders the flame graph: the screenshot is 1200×800 and shows
// the colour of every kind of frame in the profile.
func TestSVGInChromium(t *testing.T) {
	dir := screenshotDir(t)
	svgPath := filepath.Join(dir, "flamegraph.svg")
	if err := os.WriteFile(svgPath, write(t, fixture(), SVG), 0o644); err != nil {
		t.Fatal(err)
	}
	png := filepath.Join(dir, "flamegraph.png")
	os.Remove(png)
	chromium(t, "file://"+svgPath, "--screenshot="+png)
	img := readPNG(t, png)
	if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 800 {
		t.Errorf("screenshot is %v, want 1200×800", b)
	}
	for what, fill := range map[string]string{
		"Wasm run":        frameFill(WasmFrame("run", "demo")),
		"Wasm chain_c":    frameFill(WasmFrame("chain_c", "demo")),
		"[host]":          frameFill(HostFrame()),
		"[no Wasm]":       frameFill(NoWasmFrame()),
		"unresolved":      frameFill(UnresolvedFrame(0)),
		"[unwind failed]": "rgb(236,130,130)", // the hatching
	} {
		if n := countColour(img, fill); n < 20 {
			t.Errorf("%s colour %s: %d pixels in the screenshot", what, fill, n)
		}
	}
	if n := countColour(img, fgMatchFill); n > 200 { // the legend's swatch only
		t.Errorf("%d pixels in the search colour before any search", n)
	}
	t.Logf("screenshot: %s", png)
}

// The script works in a browser: the URL's search and zoom are applied on
// load, matches are highlighted and their share shown, and zooming hides
// what is outside the zoomed frame.
func TestSVGScriptInChromium(t *testing.T) {
	dir := screenshotDir(t)
	p := fixture()
	svg := write(t, p, SVG)
	svgPath := filepath.Join(dir, "flamegraph-search.svg")
	if err := os.WriteFile(svgPath, svg, 0o644); err != nil {
		t.Fatal(err)
	}
	var run svgFrame
	for _, f := range svgFrames(t, svg) {
		if f.name == "run" {
			run = f
		}
	}
	url := fmt.Sprintf("file://%s?z=%d,%d&s=^chain_", svgPath, run.s, run.d)
	dom := chromium(t, url, "--dump-dom")
	// chain_a (140 samples) holds every other chain_ frame.
	if want := `<text id="matched" x="1190" y="`; !bytes.Contains(dom, []byte(want)) {
		t.Fatalf("no matched line in the DOM:\n%s", clip(string(dom)))
	}
	if m := regexp.MustCompile(`<text id="matched"[^>]*>([^<]*)</text>`).FindSubmatch(dom); m == nil || string(m[1]) != "Matched: 54.26% (140 samples)" {
		t.Errorf("matched line %q, want Matched: 54.26%% (140 samples)", m)
	}
	if !bytes.Contains(dom, []byte(`<text id="search" class="button" x="1190" y="24">Reset Search</text>`)) {
		t.Error("the Search button does not offer to reset")
	}
	if !bytes.Contains(dom, []byte(`<text id="unzoom" class="button" x="10" y="24">Reset Zoom</text>`)) {
		t.Error("Reset Zoom is not shown after zooming")
	}
	frame := regexp.MustCompile(`<g class="f( [a-z ]+)?" data-s="(\d+)" data-n="(\d+)" data-d="(\d+)"><title>([^<\n]*)[^<]*</title><rect x="([\d.]+)" y="\d+" width="([\d.]+)" height="15" fill="([^"]+)"`)
	matches := frame.FindAllSubmatch(dom, -1)
	if len(matches) != 15 {
		t.Fatalf("%d frames in the DOM, want 15", len(matches))
	}
	for _, m := range matches {
		class, name, x, w, fill := string(m[1]), string(m[5]), string(m[6]), string(m[7]), string(m[8])
		var wantClass, wantFill string
		switch {
		case name == "all":
			wantClass = " parent"
		case name == "[no Wasm]" || strings.HasPrefix(name, "[unwind"):
			wantClass = " hide"
		}
		if strings.HasPrefix(name, "chain_") {
			wantFill = fgMatchFill
		}
		if class != wantClass {
			t.Errorf("%s: class %q, want %q", name, class, wantClass)
		}
		if wantFill != "" && fill != wantFill {
			t.Errorf("%s: fill %s, want the search colour", name, fill)
		}
		if wantFill == "" && fill == fgMatchFill {
			t.Errorf("%s is highlighted but does not match", name)
		}
		if name == "run" && (x != "10.00" || w != "1180.00") {
			t.Errorf("zoomed frame run at x=%s width %s, want the full width", x, w)
		}
	}

	png := filepath.Join(dir, "flamegraph-search.png")
	os.Remove(png)
	chromium(t, url, "--screenshot="+png)
	if n := countColour(readPNG(t, png), fgMatchFill); n < 2000 {
		t.Errorf("%d pixels in the search colour after searching ^chain_", n)
	}
	t.Logf("screenshot: %s", png)
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	return img
}

// countColour counts the pixels of exactly the colour "rgb(r,g,b)".
func countColour(img image.Image, fill string) int {
	var r, g, b uint8
	if _, err := fmt.Sscanf(fill, "rgb(%d,%d,%d)", &r, &g, &b); err != nil {
		return 0
	}
	n := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			if c.R == r && c.G == g && c.B == b {
				n++
			}
		}
	}
	return n
}

// The script answers real events in a browser: the flame graph is put
// inline in an HTML page whose harness hovers, clicks, searches (through
// the Search button, with prompt answered) and presses Escape, then
// writes what it saw into the page for --dump-dom.
func TestSVGEventsInChromium(t *testing.T) {
	svg := string(write(t, fixture(), SVG))
	svg = svg[strings.Index(svg, "<svg "):] // no XML prolog in HTML
	page := `<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>` + svg + `
<pre id="result"></pre>
<script>
"use strict";
if (frames.length === 0) { init(); } // an inline SVG's onload may not fire
var out = [];
function frame(name) {
	var gs = document.querySelectorAll("#frames .f");
	for (var i = 0; i < gs.length; i++) {
		if (gs[i].querySelector("title").textContent.split("\n")[0] === name) { return gs[i]; }
	}
}
function fire(el, type) { el.dispatchEvent(new MouseEvent(type, {bubbles: true})); }
function state(name) {
	var g = frame(name), r = g.querySelector("rect");
	return name + " " + (g.getAttribute("class") || "") + " x=" + r.getAttribute("x") + " w=" + r.getAttribute("width") +
		" label=" + g.querySelector("text").textContent;
}
fire(frame("chain_c").querySelector("rect"), "mouseover");
out.push("hover: " + document.getElementById("details").textContent);
fire(frame("chain_a").querySelector("text"), "click"); // a click on the label zooms too
out.push("zoom: " + state("chain_a") + " | " + state("chain_c") + " | " + state("run") + " | " + state("cb"));
fire(frame("chain_c").querySelector("rect"), "mouseover");
out.push("hover zoomed: " + document.getElementById("details").textContent);
window.prompt = function () { return "inner"; };
fire(document.getElementById("search"), "click");
out.push("search: " + document.getElementById("matched").textContent + " button=" + document.getElementById("search").textContent);
window.dispatchEvent(new KeyboardEvent("keydown", {key: "Escape"}));
out.push("escape: " + state("chain_a") + " | " + state("cb") + " unzoom=" + document.getElementById("unzoom").getAttribute("class"));
fire(document.getElementById("search"), "click");
out.push("reset search: [" + document.getElementById("matched").textContent + "] button=" + document.getElementById("search").textContent +
	" fill=" + frame("inner").querySelector("rect").getAttribute("fill"));
document.getElementById("result").textContent = out.join("\n");
</script></body></html>`
	dir := t.TempDir()
	path := filepath.Join(dir, "harness.html")
	if err := os.WriteFile(path, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	dom := chromium(t, "file://"+path, "--dump-dom")
	m := regexp.MustCompile(`(?s)<pre id="result">(.*?)</pre>`).FindSubmatch(dom)
	if m == nil {
		t.Fatalf("no result in the page:\n%s", clip(string(dom)))
	}
	got := html.UnescapeString(string(m[1]))
	want := strings.Join([]string{
		"hover: chain_c: 124 samples, 48.06% · module demo · Wasm function",
		"zoom: chain_a f x=10.00 w=1180.00 label=chain_a | chain_c f x=10.00 w=1045.14 label=chain_c" +
			" | run f parent x=10.00 w=1180.00 label=run | cb f hide x=284.42 w=59.46 label=cb",
		"hover zoomed: chain_c: 124 samples, 48.06% (88.57% of chain_a) · module demo · Wasm function",
		"search: Matched: 5.04% (13 samples) button=Reset Search",
		"escape: chain_a f x=343.88 w=640.31 label=chain_a | cb f x=284.42 w=59.46 label=cb unzoom=button hide",
		"reset search: [ ] button=Search fill=" + frameFill(WasmFrame("inner", "plugin")),
	}, "\n")
	if got != want {
		t.Errorf("harness saw:\n%s\nwant:\n%s", got, want)
	}
}
