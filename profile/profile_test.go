package profile

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current code")

// golden compares got with testdata/NAME.golden, or rewrites the file
// with -update. Golden files end in .golden so that .gitignore's *.svg,
// *.folded and *.pb.gz do not hide them.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./profile -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./profile -update rewrites it):\n%s", path, firstDiff(want, got))
	}
}

// firstDiff shows the first line where want and got differ.
func firstDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n want: " + clip(wl) + "\n  got: " + clip(gl)
		}
	}
	return "(same lines, different bytes)"
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

// oddName needs every part of DisplayName's rule.
const oddName = "odd;name\nwith\t<xml> & \"quotes\"\xff"

// oddShown is oddName as every format shows it.
const oddShown = "odd:name with <xml> & \"quotes\"\uFFFD"

// fixture is a small profile with every kind of frame, two modules, three
// threads, one stack seen on two threads, and a name to escape.
func fixture() *Profile {
	p := New()
	p.PID, p.Comm, p.Hz, p.Duration, p.Lost = 4242, "target-v39", 99, 3*time.Second, 2
	add := func(tid int, thread string, n int, frames ...Frame) {
		p.AddN(Sample{Frames: frames, PID: 4242, Process: "target-v39", TID: tid, Thread: thread}, n)
	}
	w := func(name string) Frame { return WasmFrame(name, "demo") }
	add(10, "main", 120, w("run"), w("chain_a"), w("chain_b"), w("chain_c"))
	add(10, "main", 7, w("run"), w("chain_a"), w("chain_b"))
	add(11, "worker-1", 40, w("run"), w("host_call"), HostFrame())
	add(11, "worker-1", 13, w("run"), w("cb"), HostFrame(), WasmFrame("inner", "plugin"), WasmFrame("inner", "plugin"))
	add(11, "worker-1", 5, w("run"), WasmFrame(oddName, ""))
	add(12, "worker-2", 55, NoWasmFrame())
	add(12, "worker-2", 3, UnwindFailedFrame("bad fp"))
	add(12, "worker-2", 2, w("run"), UnresolvedFrame(0x7f0012345678))
	add(12, "worker-2", 9, w("run"), w("chain_a"))
	add(12, "worker-2", 4, w("run"), w("chain_a"), w("chain_b"), w("chain_c"))
	return p
}

// legacyFixture is the profile whose folded and text output the code
// before the richer model wrote into testdata/legacy*.golden.
func legacyFixture(byThread bool) *Profile {
	p := New()
	p.PID, p.Comm, p.Hz, p.Duration, p.Lost = 4242, "target-v39", 99, 3*time.Second, 2
	p.ByThread = byThread
	add := func(tid int, thread string, n int, names ...string) {
		var frames []Frame
		for _, name := range names {
			switch {
			case name == Host:
				frames = append(frames, HostFrame())
			case name == NoWasm:
				frames = append(frames, NoWasmFrame())
			case strings.HasPrefix(name, UnwindFailedPrefix):
				frames = append(frames, UnwindFailedFrame(strings.TrimSuffix(strings.TrimPrefix(name, UnwindFailedPrefix), "]")))
			case strings.HasPrefix(name, "0x"):
				frames = append(frames, UnresolvedFrame(0x7f0012345678))
			default:
				frames = append(frames, WasmFrame(name, "m"))
			}
		}
		p.AddN(Sample{Frames: frames, PID: 4242, Process: "target-v39", TID: tid, Thread: thread}, n)
	}
	add(10, "main", 120, "run", "chain_a", "chain_b", "chain_c")
	add(10, "main", 7, "run", "chain_a", "chain_b")
	add(11, "worker-1", 40, "run", "host_call", Host)
	add(11, "worker-1", 13, "run", "cb", Host, "inner", "inner", "inner")
	add(12, "worker-2", 55, NoWasm)
	add(12, "worker-2", 3, UnwindFailed("bad fp"))
	add(12, "worker-2", 2, "run", "0x7f0012345678")
	add(12, "worker-2", 9, "run", "chain_a")
	return p
}

func write(t *testing.T, p *Profile, f Format) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := p.Write(&b, f); err != nil {
		t.Fatalf("write %s: %v", f, err)
	}
	return b.Bytes()
}

// The folded and text output of the richer model is byte for byte what
// the code before it wrote (testdata/legacy*.golden were written by that
// code and are never regenerated), except one fix: with threads, samples
// with no Wasm no longer count as "with Wasm on the stack".
func TestLegacyOutputUnchanged(t *testing.T) {
	for _, tc := range []struct {
		name     string
		byThread bool
		f        Format
		fix      func(string) string
	}{
		{"legacy.folded", false, Folded, nil},
		{"legacy.text", false, Text, nil},
		{"legacy-threads.folded", true, Folded, nil},
		{"legacy-threads.text", true, Text, func(s string) string {
			return strings.Replace(s, "249 with Wasm on the stack", "191 with Wasm on the stack", 1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", tc.name+".golden"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.fix != nil {
				want = []byte(tc.fix(string(want)))
			}
			got := write(t, legacyFixture(tc.byThread), tc.f)
			if !bytes.Equal(got, want) {
				t.Errorf("output changed:\n%s\ngot:\n%s", firstDiff(want, got), got)
			}
		})
	}
}

// Every format against its golden file, for the fixture merged, split by
// thread, and empty.
func TestGolden(t *testing.T) {
	empty := New()
	empty.PID, empty.Comm, empty.Hz, empty.Duration = 4242, "target-v39", 99, time.Second
	threads := fixture()
	threads.ByThread = true
	for _, tc := range []struct {
		name string
		p    *Profile
	}{
		{"small", fixture()},
		{"small-threads", threads},
		{"empty", empty},
	} {
		for _, f := range Formats {
			t.Run(tc.name+"/"+string(f.Format), func(t *testing.T) {
				got := write(t, tc.p, f.Format)
				name := tc.name + "." + string(f.Format)
				switch f.Format {
				case PProf:
					// The golden file is pprof's text dump of the parsed
					// profile; the bytes themselves are checked for
					// determinism below and by TestPprofRoundTrip.
					got = []byte(parsePprof(t, got).String())
					name += ".txt"
				case Speedscope:
					name += ".json"
				}
				golden(t, name, got)
				if a, b := write(t, tc.p, f.Format), write(t, tc.p, f.Format); !bytes.Equal(a, b) {
					t.Error("two writes of the same profile differ")
				}
			})
		}
	}
}

func TestAddMergesEqualSamples(t *testing.T) {
	p := New()
	frames := []Frame{WasmFrame("run", "m"), HostFrame()}
	p.AddN(Sample{Frames: frames, PID: 1, TID: 2, Thread: "a"}, 3)
	frames[0].Name = "changed" // the profile keeps its own copy
	p.Add(Sample{Frames: []Frame{WasmFrame("run", "m"), HostFrame()}, PID: 1, TID: 2, Thread: "a"})
	p.Add(Sample{Frames: []Frame{WasmFrame("run", "m"), HostFrame()}, PID: 1, TID: 3, Thread: "a"})
	p.Add(Sample{Frames: []Frame{WasmFrame("run", "other"), HostFrame()}, PID: 1, TID: 2, Thread: "a"})
	got := p.Samples()
	want := []Count{
		{Sample{Frames: []Frame{WasmFrame("run", "m"), HostFrame()}, PID: 1, TID: 2, Thread: "a"}, 4},
		{Sample{Frames: []Frame{WasmFrame("run", "other"), HostFrame()}, PID: 1, TID: 2, Thread: "a"}, 1},
		{Sample{Frames: []Frame{WasmFrame("run", "m"), HostFrame()}, PID: 1, TID: 3, Thread: "a"}, 1},
	}
	if !slices.EqualFunc(got, want, func(a, b Count) bool {
		return a.N == b.N && a.PID == b.PID && a.TID == b.TID && a.Thread == b.Thread && slices.Equal(a.Frames, b.Frames)
	}) {
		t.Errorf("Samples() = %+v\nwant %+v", got, want)
	}
	if p.Total() != 6 {
		t.Errorf("Total() = %d, want 6", p.Total())
	}
}

// Two samples whose fields, joined naively, read the same stay apart.
func TestSampleKeyIsExact(t *testing.T) {
	p := New()
	p.Add(Sample{Frames: []Frame{WasmFrame("a\x00b", "")}})
	p.Add(Sample{Frames: []Frame{WasmFrame("a", ""), WasmFrame("b", "")}})
	p.Add(Sample{Frames: []Frame{WasmFrame("a", "b")}})
	p.Add(Sample{Frames: []Frame{{Kind: KindUnresolved, Name: "a", Module: "b"}}})
	p.Add(Sample{Frames: []Frame{WasmFrame("a", "b")}, Process: "x"})
	p.Add(Sample{Frames: []Frame{WasmFrame("a", "b")}, Thread: "x"})
	if n := len(p.Samples()); n != 6 {
		t.Errorf("%d distinct samples, want 6", n)
	}
}

func TestStacks(t *testing.T) {
	p := fixture()
	// Merged across threads: run;chain_a;chain_b;chain_c on main and
	// worker-2 is one stack.
	s := p.Stacks()
	if got, want := s[0].Count, 124; got != want {
		t.Errorf("top stack count %d, want %d (%v)", got, want, s[0].Frames)
	}
	p.ByThread = true
	s = p.Stacks()
	if got := s[0]; got.Count != 120 || got.Frames[0] != ThreadFrame(10, "main") {
		t.Errorf("top stack by thread = %+v, want 120 samples under tid 10 (main)", got)
	}
	for _, st := range s {
		if st.Frames[0].Kind != KindThread {
			t.Errorf("stack %v not rooted at a thread", st.Frames)
		}
	}
}

func TestWithWasm(t *testing.T) {
	for _, byThread := range []bool{false, true} {
		p := fixture()
		p.ByThread = byThread
		if got, want := p.WithWasm(), 258-55-3; got != want {
			t.Errorf("ByThread=%v: WithWasm() = %d, want %d", byThread, got, want)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindWasm: "wasm", KindHost: "host", KindNoWasm: "no-wasm",
		KindUnwindFailed: "unwind-failed", KindUnresolved: "unresolved", KindThread: "thread", KindProcess: "process",
		0: "Kind(0)", 99: "Kind(99)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

func TestFrameConstructors(t *testing.T) {
	for _, tc := range []struct {
		f    Frame
		want Frame
	}{
		{HostFrame(), Frame{KindHost, "[host]", ""}},
		{NoWasmFrame(), Frame{KindNoWasm, "[no Wasm]", ""}},
		{UnwindFailedFrame("bad fp"), Frame{KindUnwindFailed, "[unwind failed: bad fp]", ""}},
		{UnresolvedFrame(0x1234), Frame{KindUnresolved, "0x1234", ""}},
		{ThreadFrame(7, "w"), Frame{KindThread, "tid 7 (w)", ""}},
		{ProcessFrame(5, "p"), Frame{KindProcess, "pid 5 (p)", ""}},
		{WasmFrame("f", "m"), Frame{KindWasm, "f", "m"}},
	} {
		if tc.f != tc.want {
			t.Errorf("got %+v, want %+v", tc.f, tc.want)
		}
	}
}

// A profile of several processes: each sample keeps its process; split
// by process, every format tells them apart.
func TestSeveralProcesses(t *testing.T) {
	p := New()
	p.Hz, p.Duration = 99, time.Second
	p.AddN(Sample{Frames: []Frame{WasmFrame("run", "a")}, PID: 7, Process: "alpha", TID: 7, Thread: "alpha"}, 3)
	p.AddN(Sample{Frames: []Frame{WasmFrame("run", "a")}, PID: 9, Process: "beta", TID: 10, Thread: "worker"}, 2)
	p.AddN(Sample{Frames: []Frame{NoWasmFrame()}, PID: 9, Process: "beta", TID: 9, Thread: "beta"}, 1)

	if got, want := string(write(t, p, Folded)), "[no Wasm] 1\nrun 5\n"; got != want {
		t.Errorf("merged folded = %q, want %q", got, want)
	}
	p.ByProcess = true
	if got, want := string(write(t, p, Folded)), "pid 7 (alpha);run 3\npid 9 (beta);[no Wasm] 1\npid 9 (beta);run 2\n"; got != want {
		t.Errorf("folded by process = %q, want %q", got, want)
	}
	p.ByThread = true
	if got, want := string(write(t, p, Folded)), "pid 7 (alpha);tid 7 (alpha);run 3\npid 9 (beta);tid 10 (worker);run 2\npid 9 (beta);tid 9 (beta);[no Wasm] 1\n"; got != want {
		t.Errorf("folded by process and thread = %q, want %q", got, want)
	}
	if got := string(write(t, p, Text)); !strings.HasPrefix(got, "2 processes: 6 samples in 1.0s at 99 Hz, 5 with Wasm on the stack, 0 lost\n") {
		t.Errorf("text summary:\n%s", got)
	}
	if got := string(write(t, p, SVG)); !strings.Contains(got, "Wasm CPU flame graph: 2 processes</text>") ||
		!strings.Contains(got, "<title>pid 9 (beta)\nprocess\n3 samples (50.00%)") {
		t.Errorf("svg lacks the title or the process frame")
	}

	var ss speedscopeFile
	if err := json.Unmarshal(write(t, p, Speedscope), &ss); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, prof := range ss.Profiles {
		names = append(names, prof.Name)
	}
	if got, want := strings.Join(names, ", "), "pid 7 (alpha) tid 7 (alpha), pid 9 (beta) tid 10 (worker), pid 9 (beta) tid 9 (beta)"; got != want || ss.Name != "wasmtrace: 2 processes" {
		t.Errorf("speedscope %q profiles %s, want %s", ss.Name, got, want)
	}
	p.ByThread = false
	if err := json.Unmarshal(write(t, p, Speedscope), &ss); err != nil {
		t.Fatal(err)
	}
	if len(ss.Profiles) != 2 || ss.Profiles[0].Name != "pid 7 (alpha)" || ss.Profiles[1].Name != "pid 9 (beta)" {
		t.Errorf("speedscope by process: %+v", ss.Profiles)
	}

	pp := parsePprof(t, write(t, p, PProf))
	var labels []string
	for _, s := range pp.Sample {
		labels = append(labels, fmt.Sprint(s.NumLabel[LabelPID], s.Label[LabelProcess], s.NumLabel[LabelTID], s.Label[LabelThread]))
	}
	if got, want := strings.Join(labels, " "), "[7] [alpha] [7] [alpha] [9] [beta] [9] [beta] [9] [beta] [10] [worker]"; got != want {
		t.Errorf("pprof labels %s, want %s", got, want)
	}
}
