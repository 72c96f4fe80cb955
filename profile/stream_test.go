package profile

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// streamFrames is the pool of frames the stream's stacks are drawn from:
// Wasm frames of two named modules (one function name in both), of a
// module without a name, names that every format must escape, and every
// marker and unresolved addresses.
func streamFrames() (wasm []Frame, leaves []Frame) {
	for i := range 12 {
		wasm = append(wasm, WasmFrame(fmt.Sprintf("rb_func_%02d", i), "ruby"))
	}
	wasm = append(wasm,
		WasmFrame("shared_name", "ruby"), WasmFrame("shared_name", "plugin"),
		WasmFrame("wasm[0]::function[17]", ""),
		WasmFrame(oddName, "odd;module\n"),
		WasmFrame("tab\there", "plugin"),
		WasmFrame("line\u2028sep", ""),
		WasmFrame("\ufffe<&>", "plugin"),
	)
	leaves = []Frame{HostFrame(), UnresolvedFrame(0x7f0012345678), UnresolvedFrame(0x1000), WasmFrame("leaf", "ruby")}
	return wasm, leaves
}

// streamSamples is a fixed, deterministic stream of samples as a recording
// of several processes and threads gives them: every frame kind, stacks of
// 1 to 40 frames, a few stacks frequent and most rare, the same stack on
// several threads and processes, thread and process names to escape. The
// sequence depends only on the seed.
func streamSamples() []Sample {
	r := rand.New(rand.NewPCG(13, 2026))
	wasm, leaves := streamFrames()
	type thread struct {
		pid     int
		process string
		tid     int
		name    string
	}
	threads := []thread{
		{100, "guest-v39", 100, "guest-v39"},
		{100, "guest-v39", 101, "worker;1"},
		{100, "guest-v39", 102, "worker\n2"},
		{200, "odd\tproc\xff", 201, "t"},
		{200, "odd\tproc\xff", 202, "t"}, // two threads of one name
		{300, "async-v39", 300, "async-v39"},
	}
	stack := func() []Frame {
		switch r.IntN(40) {
		case 0:
			return []Frame{NoWasmFrame()}
		case 1:
			return []Frame{UnwindFailedFrame("frame pointer not increasing")}
		case 2:
			return []Frame{UnwindFailedFrame("sampled while switching fibers")}
		}
		var fs []Frame
		if r.IntN(5) == 0 {
			fs = append(fs, FiberFrame())
		}
		depth := 1 + r.IntN(40)
		for d := range depth {
			switch {
			case d > 0 && r.IntN(9) == 0:
				fs = append(fs, HostFrame())
				if r.IntN(3) == 0 {
					fs = append(fs, FiberFrame())
				}
			case r.IntN(6) == 0:
				fs = append(fs, wasm[r.IntN(len(wasm))])
			default:
				// Few choices near the root, more towards the leaves, so
				// that stacks share prefixes as real ones do.
				fs = append(fs, wasm[r.IntN(min(len(wasm), 1+d/3))])
			}
		}
		if r.IntN(3) == 0 {
			fs = append(fs, leaves[r.IntN(len(leaves))])
		}
		return fs
	}
	var distinct [][]Frame
	for range 50 {
		distinct = append(distinct, stack())
	}
	// Roots of their own, certain to be drawn however the dice fall.
	distinct[4] = []Frame{NoWasmFrame()}
	distinct[30] = []Frame{UnwindFailedFrame("thread's stack unknown")}
	var out []Sample
	for range 2000 {
		// Frequent stacks first: squaring favours low indices.
		f := r.Float64()
		s := distinct[int(f*f*float64(len(distinct)))]
		th := threads[r.IntN(len(threads))]
		out = append(out, Sample{Frames: s, PID: th.pid, Process: th.process, TID: th.tid, Thread: th.name})
	}
	return out
}

// streamProfile aggregates the stream: most samples by Add, one in ten by
// AddN with a weight, as trace --summary adds them.
func streamProfile(byThread, byProcess bool) *Profile {
	p := New()
	p.Hz, p.Duration, p.Lost = 999, 7*time.Second, 3
	p.ByThread, p.ByProcess = byThread, byProcess
	for i, s := range streamSamples() {
		if i%10 == 9 {
			p.AddN(s, 1+i%4)
		} else {
			p.Add(s)
		}
	}
	return p
}

// dumpSamples writes Samples and Stacks as text: what an exporter reading
// the profile through them sees.
func dumpSamples(p *Profile) []byte {
	var b bytes.Buffer
	frames := func(fs []Frame) string {
		var parts []string
		for _, f := range fs {
			parts = append(parts, fmt.Sprintf("%s:%q@%q", f.Kind, f.Name, f.Module))
		}
		return strings.Join(parts, " ")
	}
	fmt.Fprintf(&b, "total %d, with Wasm %d\n", p.Total(), p.WithWasm())
	for _, c := range p.Samples() {
		fmt.Fprintf(&b, "sample pid=%d process=%q tid=%d thread=%q n=%d %s\n", c.PID, c.Process, c.TID, c.Thread, c.N, frames(c.Frames))
	}
	for _, s := range p.Stacks() {
		fmt.Fprintf(&b, "stack %d %s\n", s.Count, frames(s.Frames))
	}
	for _, f := range p.Funcs() {
		fmt.Fprintf(&b, "func %q self=%d total=%d\n", f.Name, f.Self, f.Total)
	}
	return b.Bytes()
}

// The output of every format for a fixed stream of samples, merged and
// split by thread, by process and both, is what the code wrote before the
// aggregation became a frame table and a stack trie: the golden files
// testdata/stream-*.golden were written by that code (commit c0dc073)
// and must not be regenerated to make a change pass.
//
// Compared: text, folded, svg and speedscope byte for byte; pprof by
// pprof's own text dump of the decoded profile (every sample with its
// values, labels and locations, every location, function and mapping,
// the sample and period types, period, duration and comments: its gzip
// bytes are checked only for determinism, two writes giving the same
// bytes); and Samples, Stacks and Funcs dumped as text.
func TestGoldenStream(t *testing.T) {
	for _, tc := range []struct {
		name                string
		byThread, byProcess bool
	}{
		{"stream", false, false},
		{"stream-threads", true, false},
		{"stream-processes", false, true},
		{"stream-processes-threads", true, true},
	} {
		p := streamProfile(tc.byThread, tc.byProcess)
		// 1800 samples added once, 200 with weights 2 and 4 in turn.
		if p.Total() != 2400 {
			t.Fatalf("%s: %d samples, want 2400", tc.name, p.Total())
		}
		t.Run(tc.name+"/samples", func(t *testing.T) { golden(t, tc.name+".samples.txt", dumpSamples(p)) })
		for _, f := range Formats {
			t.Run(tc.name+"/"+string(f.Format), func(t *testing.T) {
				got := write(t, p, f.Format)
				name := tc.name + "." + string(f.Format)
				switch f.Format {
				case PProf:
					got = []byte(parsePprof(t, got).String())
					name += ".txt"
				case Speedscope:
					name += ".json"
				}
				golden(t, name, got)
				if a, b := write(t, p, f.Format), write(t, p, f.Format); !bytes.Equal(a, b) {
					t.Error("two writes of the same profile differ")
				}
			})
		}
	}
}
