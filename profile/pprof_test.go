package profile

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/pprof/profile"
)

func parsePprof(t *testing.T, data []byte) *profile.Profile {
	t.Helper()
	pp, err := profile.Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse pprof: %v", err)
	}
	return pp
}

// What is written is what pprof reads back: every sample with its
// frames, modules, values and labels, and writing the parsed profile
// again gives the same bytes.
func TestPprofRoundTrip(t *testing.T) {
	p := fixture()
	data := write(t, p, PProf)
	pp := parsePprof(t, data)
	if err := pp.CheckValid(); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := pp.Write(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), data) {
		t.Error("writing the parsed profile gives different bytes")
	}
	if got, want := pp.String(), p.Pprof().String(); got != want {
		t.Errorf("parsed profile differs from the one written:\n%s\nwant:\n%s", got, want)
	}

	vt := func(v *profile.ValueType) string { return v.Type + "/" + v.Unit }
	if got := fmt.Sprintln(vt(pp.SampleType[0]), vt(pp.SampleType[1]), vt(pp.PeriodType), pp.Period, pp.DurationNanos); got != "samples/count cpu/nanoseconds cpu/nanoseconds 10101010 3000000000\n" {
		t.Errorf("sample types, period type, period, duration = %s", got)
	}
	// Decode every sample back into the model and compare.
	samples := p.Samples()
	if len(pp.Sample) != len(samples) {
		t.Fatalf("%d pprof samples, want %d", len(pp.Sample), len(samples))
	}
	for i, s := range pp.Sample {
		want := samples[i]
		var names, wantNames []string
		for j := len(s.Location) - 1; j >= 0; j-- {
			fn := s.Location[j].Line[0].Function
			names = append(names, fn.Name+"@"+fn.Filename)
		}
		for _, f := range want.Frames {
			wantNames = append(wantNames, DisplayName(f.Name)+"@"+f.Module)
		}
		if !slices.Equal(names, wantNames) {
			t.Errorf("sample %d frames %q, want %q", i, names, wantNames)
		}
		if got := s.Value; got[0] != int64(want.N) || got[1] != int64(want.N)*10101010 {
			t.Errorf("sample %d values %v, want [%d %d]", i, got, want.N, want.N*10101010)
		}
		if got := fmt.Sprint(s.NumLabel[LabelPID], s.Label[LabelProcess], s.NumLabel[LabelTID], s.Label[LabelThread]); got != fmt.Sprint([]int64{4242}, []string{"target-v39"}, []int64{int64(want.TID)}, []string{want.Thread}) {
			t.Errorf("sample %d labels %s", i, got)
		}
	}
	// One location per distinct frame.
	frames := map[Frame]bool{}
	for _, c := range samples {
		for _, f := range c.Frames {
			frames[f] = true
		}
	}
	if len(pp.Location) != len(frames) {
		t.Errorf("%d locations, want one per distinct frame: %d", len(pp.Location), len(frames))
	}
}

// go tool pprof reads the file and shows, with -top, the same self and
// total samples per function as wasmtrace's own text table.
func TestGoToolPprof(t *testing.T) {
	goBin := requireTool(t, "the Go toolchain", "go")
	p := fixture()
	path := filepath.Join(t.TempDir(), "cpu.pb.gz")
	if err := os.WriteFile(path, write(t, p, PProf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goBin, "tool", "pprof", "-top", "-nodecount=100", "-sample_index=samples", path).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof -top: %v\n%s", err, out)
	}
	// Rows: flat flat% sum% cum cum% name (the name may contain spaces).
	row := regexp.MustCompile(`^ *(\d+) +\S+ +\S+ +(\d+) +\S+  (.*)$`)
	got := map[string][2]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			got[m[3]] = [2]string{m[1], m[2]}
		}
	}
	if !strings.Contains(string(out), "File: target-v39") || !strings.Contains(string(out), "Type: samples") {
		t.Errorf("header does not name the process and sample type:\n%s", out)
	}
	// pprof keeps functions of the same name in different modules apart;
	// the fixture has none, so its rows are the text table's. For display
	// pprof drops <...> from names (C++ and Rust generic arguments).
	generic := regexp.MustCompile(`<[^<>]*>`)
	for _, f := range p.Funcs() {
		name := generic.ReplaceAllString(f.Name, "")
		want := [2]string{fmt.Sprint(f.Self), fmt.Sprint(f.Total)}
		if got[name] != want {
			t.Errorf("pprof -top row for %q: flat, cum = %v, want %v", name, got[name], want)
		}
		delete(got, name)
	}
	if len(got) > 0 {
		t.Errorf("pprof -top shows functions wasmtrace does not: %v\n%s", got, out)
	}

	// The default sample type is CPU time, and the labels are there.
	out, err = exec.Command(goBin, "tool", "pprof", "-tags", path).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof -tags: %v\n%s", err, out)
	}
	for _, want := range []string{"pid: Total", "4242", "process: Total", "target-v39", "tid: Total", "thread: Total", "main", "worker-1", "worker-2"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("pprof -tags does not show %q:\n%s", want, out)
		}
	}
}
