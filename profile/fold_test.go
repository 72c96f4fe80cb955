package profile

import (
	"strings"
	"testing"
)

// foldedProfile adds stacks given as "a;b;c N" lines, on one thread.
func foldedProfile(t *testing.T, maxStacks int, lines string) *Profile {
	t.Helper()
	p := New()
	p.PID, p.Comm, p.Hz, p.MaxStacks = 7, "target", 99, maxStacks
	for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
		stack, n, _ := strings.Cut(l, " ")
		var frames []Frame
		for _, name := range strings.Split(stack, ";") {
			frames = append(frames, WasmFrame(name, "m"))
		}
		for range len(n) { // "1", "11", "111": 1, 2, 3 samples
			p.Add(Sample{Frames: frames, PID: 7, Process: "target", TID: 8, Thread: "w"})
		}
	}
	return p
}

// Within MaxStacks nothing is folded; the stack that would exceed it
// folds the rarest into their callers, with every sample kept.
func TestMaxStacksFoldsTheRarest(t *testing.T) {
	in := `
a;b;c 1111111111
a;b;d 1
a;b;e 1
a;x 11111
a;b;g 1
f;y 11
f;z 11
`
	for _, tc := range []struct {
		max         int
		folded      string
		stacks      int
		samples     int64
		distinctNow int
	}{
		{0, "a;b;c 10\na;b;d 1\na;b;e 1\na;b;g 1\na;x 5\nf;y 2\nf;z 2\n", 0, 0, 7},
		{7, "a;b;c 10\na;b;d 1\na;b;e 1\na;b;g 1\na;x 5\nf;y 2\nf;z 2\n", 0, 0, 7},
		// The 6th distinct stack (f;y) exceeds 5: fold down to 4, rarest
		// first: a;b;d and a;b;e share a caller, so both go to
		// a;b;[folded], and a;b;g follows; f;y itself is as rare but
		// shallower, and is not needed. f;z then makes 5 again.
		{5, "a;b;[folded] 3\na;b;c 10\na;x 5\nf;y 2\nf;z 2\n", 3, 3, 5},
		// One stack at most: everything ends in the root's [folded]. A
		// stack seen again after it was folded is folded again, and
		// counted again: 13 folds of 22 samples.
		{1, "[folded] 22\n", 13, 22, 1},
	} {
		p := foldedProfile(t, tc.max, in)
		got := string(write(t, p, Folded))
		if got != tc.folded {
			t.Errorf("max %d: folded output\n%s\nwant\n%s", tc.max, got, tc.folded)
		}
		if s, n := p.Folded(); s != tc.stacks || n != tc.samples {
			t.Errorf("max %d: Folded() = %d stacks, %d samples, want %d, %d", tc.max, s, n, tc.stacks, tc.samples)
		}
		if p.Total() != 22 || p.WithWasm() != 22 {
			t.Errorf("max %d: %d samples, %d with Wasm, want 22 and 22", tc.max, p.Total(), p.WithWasm())
		}
		if p.DistinctStacks() != tc.distinctNow {
			t.Errorf("max %d: %d distinct stacks, want %d", tc.max, p.DistinctStacks(), tc.distinctNow)
		}
		if tc.max > 0 && p.DistinctStacks() > tc.max {
			t.Errorf("max %d: %d distinct stacks kept", tc.max, p.DistinctStacks())
		}
	}
}

// What was folded is said in the header of text, pprof and svg.
func TestMaxStacksIsReported(t *testing.T) {
	p := foldedProfile(t, 2, "a;b 111\na;c 1\na;d 1\n")
	text := string(write(t, p, Text))
	if !strings.Contains(text, "\n2 rarest stacks (2 samples) folded into their callers as [folded], to keep within 2 distinct stacks\n") {
		t.Errorf("text output does not say what was folded:\n%s", text)
	}
	pp := parsePprof(t, write(t, p, PProf))
	if got := strings.Join(pp.Comments, "\n"); !strings.Contains(got, "wasmtrace: 2 rarest stacks (2 samples) folded") {
		t.Errorf("pprof comments %q", got)
	}
	if svg := string(write(t, p, SVG)); !strings.Contains(svg, "2 rarest stacks (2 samples) folded as [folded]") {
		t.Error("svg subtitle does not say what was folded")
	}
}

// Folding renumbers stacks: Epoch says so, and a profile added to by
// StackID afterwards counts what it is given.
func TestFoldChangesEpoch(t *testing.T) {
	p := New()
	p.MaxStacks = 2
	th := p.Thread(1, "p", 1, "t")
	a := p.Push(0, p.Frame(WasmFrame("a", "")))
	ab := p.Push(a, p.Frame(WasmFrame("b", "")))
	ac := p.Push(a, p.Frame(WasmFrame("c", "")))
	p.AddStack(ab, th, 5)
	p.AddStack(ac, th, 1)
	e := p.Epoch()
	ad := p.Push(a, p.Frame(WasmFrame("d", "")))
	p.AddStack(ad, th, 1) // third stack: a;c and a;d fold into a;[folded]
	if p.Epoch() == e {
		t.Fatal("Epoch unchanged by folding")
	}
	if got, want := string(write(t, p, Folded)), "a;[folded] 2\na;b 5\n"; got != want {
		t.Errorf("folded output %q, want %q", got, want)
	}
}
