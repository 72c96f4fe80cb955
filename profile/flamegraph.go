package profile

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// The flame graph's script and style, embedded in every SVG so the file
// works on its own.
var (
	//go:embed flamegraph.js
	flameScript string
	//go:embed flamegraph.css
	flameStyle string
)

// Flame graph geometry, in SVG user units (pixels at 100 %).
const (
	fgWidth     = 1200
	fgPad       = 10  // left and right margin
	fgFrameH    = 16  // one stack level; the box is one less
	fgCharWidth = 7.3 // advance of one character of the 12 px monospace labels (flamegraph.css; DejaVu Sans Mono: 0.602 em), rounded up
	fgMinWidth  = 0.1 // frames narrower than this are not drawn, like flamegraph.pl's --minwidth
	fgHeader    = 84  // title, subtitle, legend
	fgFooter    = 30  // details and search result line
	fgMatchFill = "rgb(230,0,230)"
)

// WriteSVG writes an interactive flame graph: the stacks of Stacks merged
// into a tree, root ("all") at the bottom, children in name order, each
// frame as wide as its share of the samples.
//
// The SVG is self-contained (style and script inline, no external
// resources) and deterministic (the same profile gives the same bytes).
// Without script it is a static flame graph with a tooltip per frame; with
// script (any browser):
//
//   - click a frame to zoom into it, "Reset Zoom" or Escape to go back;
//   - "Search" (or Ctrl-F, or /) takes a regular expression, highlights the
//     frames whose name matches and shows the share of samples under them;
//   - hovering a frame shows its name, module, kind, samples and
//     percentages in the bottom line, and as the tooltip;
//   - the URL keeps the state: ?s=REGEXP searches, ?z=START,DEPTH zooms.
//
// Colours tell the kinds apart: Wasm functions warm (red to yellow, by
// name), [host] blue, process roots teal, thread roots violet, [no Wasm]
// grey, [unwind failed] hatched red, unresolved addresses grey-green;
// search matches magenta.
func (p *Profile) WriteSVG(w io.Writer) error {
	root := buildFlameTree(p.Stacks())
	total := root.count
	scale := 0.0
	if total > 0 {
		scale = float64(fgWidth-2*fgPad) / float64(total)
	}
	// Depth of the deepest frame wide enough to draw.
	maxDepth := 0
	var depthOf func(n *flameNode, d int)
	depthOf = func(n *flameNode, d int) {
		if float64(n.count)*scale < fgMinWidth && d > 0 {
			return
		}
		maxDepth = max(maxDepth, d)
		for _, c := range n.children {
			depthOf(c, d+1)
		}
	}
	depthOf(root, 0)
	height := fgHeader + (maxDepth+1)*fgFrameH + fgFooter

	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<?xml version="1.0" standalone="no"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<svg version="1.1" width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg" onload="init(evt)">
`, fgWidth, height, fgWidth, height)
	fmt.Fprintf(bw, "<!-- Flame graph written by wasmtrace. Click a frame to zoom, Search (Ctrl-F) to highlight. -->\n")
	fmt.Fprintf(bw, `<defs>
<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="rgb(253,222,222)"/><rect width="2" height="6" fill="rgb(236,130,130)"/></pattern>
<linearGradient id="background" x1="0" y1="0" x2="0" y2="1"><stop stop-color="#f8f8f8" offset="5%%"/><stop stop-color="#eeeeee" offset="95%%"/></linearGradient>
</defs>
`)
	fmt.Fprintf(bw, "<style type=\"text/css\"><![CDATA[\n%s]]></style>\n", flameStyle)
	config, err := json.Marshal(map[string]any{
		"pad": fgPad, "width": fgWidth - 2*fgPad, "charWidth": fgCharWidth,
		"minWidth": fgMinWidth, "matchFill": fgMatchFill, "total": total,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(bw, "<script type=\"text/ecmascript\"><![CDATA[\nvar config = %s;\n%s]]></script>\n", config, flameScript)
	fmt.Fprintf(bw, `<rect x="0" y="0" width="%d" height="%d" fill="url(#background)"/>`+"\n", fgWidth, height)

	// Header: title, subtitle, legend; the controls in the title line.
	fmt.Fprintf(bw, `<text id="title" x="%d" y="24">%s</text>`+"\n", fgWidth/2,
		xmlText("Wasm CPU flame graph: "+p.subject()))
	fmt.Fprintf(bw, `<text id="subtitle" x="%d" y="44">%s</text>`+"\n", fgWidth/2, xmlText(p.svgSubtitle()))
	fmt.Fprintf(bw, `<text id="unzoom" class="button hide" x="%d" y="24">Reset Zoom</text>`+"\n", fgPad)
	fmt.Fprintf(bw, `<text id="search" class="button" x="%d" y="24">Search</text>`+"\n", fgWidth-fgPad)
	writeLegend(bw, 66, root)
	fmt.Fprintf(bw, `<text id="details" x="%d" y="%d"> </text>`+"\n", fgPad, height-10)
	fmt.Fprintf(bw, `<text id="matched" x="%d" y="%d"> </text>`+"\n", fgWidth-fgPad, height-10)

	// Frames, parents before children, so JavaScript meets them in the
	// same order and later ones paint over earlier ones.
	bw.WriteString(`<g id="frames">` + "\n")
	var draw func(n *flameNode, start, depth int)
	draw = func(n *flameNode, start, depth int) {
		width := float64(n.count) * scale
		if width < fgMinWidth && depth > 0 {
			return
		}
		x := fgPad + float64(start)*scale
		y := fgHeader + (maxDepth-depth)*fgFrameH
		name := DisplayName(n.frame.Name)
		fmt.Fprintf(bw, `<g class="f" data-s="%d" data-n="%d" data-d="%d"><title>%s</title>`+
			`<rect x="%.2f" y="%d" width="%.2f" height="%d" fill="%s" rx="2"/>`+
			`<text x="%.2f" y="%d">%s</text></g>`+"\n",
			start, n.count, depth, xmlText(n.tooltip(total)),
			x, y, width, fgFrameH-1, frameFill(n.frame),
			x+3, y+fgFrameH-5, xmlText(fitLabel(name, width)))
		for _, c := range n.children {
			draw(c, start, depth+1)
			start += c.count
		}
	}
	if total == 0 {
		fmt.Fprintf(bw, `<text x="%d" y="%d">%s</text>`+"\n", fgPad, fgHeader+fgFrameH-5,
			"No samples: the process used no CPU while wasmtrace ran.")
	} else {
		draw(root, 0, 0)
	}
	bw.WriteString("</g>\n</svg>\n")
	return bw.Flush()
}

func (p *Profile) svgSubtitle() string {
	s := fmt.Sprintf("%.1f s at %d Hz · %d samples", p.Duration.Seconds(), p.Hz, p.total)
	if p.total > 0 {
		s += fmt.Sprintf(" · %d with Wasm on the stack (%.1f%%)", p.WithWasm(), pct(p.WithWasm(), p.total))
	}
	s += fmt.Sprintf(" · %d lost", p.Lost)
	if p.folded.stacks > 0 {
		s += fmt.Sprintf(" · %d rarest stacks (%d samples) folded as %s", p.folded.stacks, p.folded.samples, FoldedMarker)
	}
	return s
}

// writeLegend draws one swatch for each kind of frame in the tree, and one
// for search matches, centred on a line at y.
func writeLegend(bw *bufio.Writer, y int, root *flameNode) {
	present := map[Kind]bool{KindWasm: true}
	var walk func(n *flameNode)
	walk = func(n *flameNode) {
		present[n.frame.Kind] = true
		for _, c := range n.children {
			walk(c)
		}
	}
	walk(root)
	type item struct{ fill, label string }
	var items []item
	for _, it := range []struct {
		kind  Kind
		fill  string
		label string
	}{
		{KindWasm, frameFill(WasmFrame("run", "")), "Wasm function"},
		{KindHost, frameFill(HostFrame()), Host + " host code"},
		{KindFiber, frameFill(FiberFrame()), Fiber + " onto a fiber"},
		{KindProcess, frameFill(ProcessFrame(0, "")), "process"},
		{KindThread, frameFill(ThreadFrame(0, "")), "thread"},
		{KindFolded, frameFill(FoldedFrame()), FoldedMarker + " rarest callees"},
		{KindNoWasm, frameFill(NoWasmFrame()), NoWasm},
		{KindUnwindFailed, frameFill(UnwindFailedFrame("")), "[unwind failed]"},
		{KindUnresolved, frameFill(UnresolvedFrame(0)), "unresolved address"},
	} {
		if present[it.kind] {
			items = append(items, item{it.fill, it.label})
		}
	}
	items = append(items, item{fgMatchFill, "search match"})
	// Width of each item: swatch, gap, label, spacing.
	widths := make([]float64, len(items))
	sum := 0.0
	for i, it := range items {
		widths[i] = 12 + 5 + float64(utf8.RuneCountInString(it.label))*fgCharWidth + 22
		sum += widths[i]
	}
	x := (float64(fgWidth) - sum + 22) / 2
	bw.WriteString(`<g id="legend">` + "\n")
	for i, it := range items {
		fmt.Fprintf(bw, `<rect x="%.2f" y="%d" width="12" height="12" fill="%s" rx="2"/><text x="%.2f" y="%d">%s</text>`+"\n",
			x, y-10, it.fill, x+17, y, xmlText(it.label))
		x += widths[i]
	}
	bw.WriteString("</g>\n")
}

// fitLabel shortens name to what fits in a frame width wide, as the script
// does after zooming: nothing below three characters, else a cut with "..".
func fitLabel(name string, width float64) string {
	fits := int((width - 6) / fgCharWidth)
	if fits < 3 {
		return ""
	}
	if utf8.RuneCountInString(name) <= fits {
		return name
	}
	r := []rune(name)
	return string(r[:fits-2]) + ".."
}

// frameFill is a frame's colour: a palette per kind, varied within it by a
// hash of the name, so one function keeps its colour across graphs.
func frameFill(f Frame) string {
	h := fnv.New32a()
	h.Write([]byte(f.Name))
	v := h.Sum32()
	v1, v2, v3 := float64(v&0xff)/255, float64(v>>8&0xff)/255, float64(v>>16&0xff)/255
	rgb := func(r, g, b float64) string { return fmt.Sprintf("rgb(%d,%d,%d)", int(r), int(g), int(b)) }
	switch f.Kind {
	case KindWasm: // like flamegraph.pl's "hot": red through orange to yellow, never green
		r := 215 + 40*v3
		return rgb(r, 70+(r-80)*v1, 50*v2)
	case KindHost:
		return rgb(105+40*v1, 165+35*v1, 225+25*v2)
	case KindThread:
		return rgb(180+25*v1, 160+25*v1, 230+20*v2)
	case KindProcess:
		return rgb(120+30*v1, 200+25*v1, 190+25*v2)
	case KindFiber:
		return rgb(150, 200, 235)
	case KindFolded:
		return rgb(210, 210, 195)
	case KindNoWasm:
		return rgb(185, 185, 185)
	case KindUnwindFailed:
		return "url(#hatch)"
	case KindUnresolved:
		return rgb(175, 200, 170)
	}
	return rgb(225, 225, 225) // the "all" root
}

// kindText says what a frame is, for tooltips.
func kindText(k Kind) string {
	switch k {
	case KindWasm:
		return "Wasm function"
	case KindHost:
		return "host code"
	case KindFiber:
		return "the stack moves onto a fiber (async Wasmtime)"
	case KindFolded:
		return "the rarest callees, folded to keep within --max-stacks"
	case KindNoWasm:
		return "no Wasm on the stack"
	case KindUnwindFailed:
		return "stack walk failed"
	case KindUnresolved:
		return "address in no known function"
	case KindThread:
		return "thread"
	case KindProcess:
		return "process"
	}
	return "all samples"
}

// xmlText escapes text for XML. Every name has been through DisplayName,
// which removed the characters XML does not allow.
var xmlText = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace

type flameNode struct {
	frame    Frame
	count    int
	children []*flameNode
	index    map[Frame]*flameNode
}

// buildFlameTree merges stacks into a tree under an "all" root, children
// in frame order.
func buildFlameTree(stacks []Stack) *flameNode {
	root := &flameNode{frame: Frame{Name: "all"}}
	for _, s := range stacks {
		n := root
		n.count += s.Count
		for _, f := range s.Frames {
			c := n.index[f]
			if c == nil {
				c = &flameNode{frame: f}
				if n.index == nil {
					n.index = map[Frame]*flameNode{}
				}
				n.index[f] = c
				n.children = append(n.children, c)
			}
			c.count += s.Count
			n = c
		}
	}
	var sortTree func(n *flameNode)
	sortTree = func(n *flameNode) {
		slices.SortFunc(n.children, func(a, b *flameNode) int { return compareFrames(a.frame, b.frame) })
		for _, c := range n.children {
			sortTree(c)
		}
	}
	sortTree(root)
	return root
}

// tooltip is the frame's title: name on the first line (the script reads
// it back from there), then module, kind, and shares.
func (n *flameNode) tooltip(total int) string {
	self := n.count
	for _, c := range n.children {
		self -= c.count
	}
	var b strings.Builder
	b.WriteString(DisplayName(n.frame.Name))
	if n.frame.Module != "" {
		fmt.Fprintf(&b, "\nmodule %s", DisplayName(n.frame.Module))
	}
	fmt.Fprintf(&b, "\n%s\n%s (%.2f%%), self %s (%.2f%%)", kindText(n.frame.Kind),
		plural(n.count, "sample"), pct(n.count, total), plural(self, "sample"), pct(self, total))
	return b.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}
