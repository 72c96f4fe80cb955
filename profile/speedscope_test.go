package profile

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The speedscope files validate against the JSON schema in the speedscope
// npm package (pinned in testdata/speedscope/package.json), checked by
// ajv under Node. Install once: npm ci --prefix profile/testdata/speedscope
func TestSpeedscopeSchema(t *testing.T) {
	node := requireTool(t, "apt-get install -y nodejs npm", "node", "nodejs")
	dir, err := filepath.Abs(filepath.Join("testdata", "speedscope"))
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range []string{"ajv", "speedscope"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", mod, "package.json")); err != nil {
			msg := fmt.Sprintf("npm package %s is not installed; run: npm ci --prefix profile/testdata/speedscope", mod)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg + " (CI=true forbids skipping)")
			}
			t.Skip(msg)
		}
	}
	tmp := t.TempDir()
	threads := fixture()
	threads.ByThread = true
	noHz := fixture()
	noHz.Hz = 0
	var files []string
	for name, p := range map[string]*Profile{"small": fixture(), "threads": threads, "no-hz": noHz, "empty": New()} {
		path := filepath.Join(tmp, name+".speedscope.json")
		if err := os.WriteFile(path, write(t, p, Speedscope), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, path)
	}
	out, err := exec.Command(node, append([]string{filepath.Join(dir, "validate.js")}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("validate.js: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "valid "); n != len(files) || strings.Contains(string(out), "INVALID") {
		t.Errorf("want %d valid files:\n%s", len(files), out)
	}
	t.Logf("%s", out)

	// The validator is not vacuous: a file without frames is refused.
	bad := filepath.Join(tmp, "bad.json")
	os.WriteFile(bad, []byte(`{"$schema": "`+SpeedscopeSchema+`", "profiles": [{"type": "sampled"}]}`), 0o644)
	out, err = exec.Command(node, filepath.Join(dir, "validate.js"), bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "INVALID bad.json") {
		t.Errorf("validate.js accepted a file without shared frames: %v\n%s", err, out)
	}
}

// What speedscope will show: each profile's samples, resolved through the
// shared frames, are exactly the profile's stacks, weighted by CPU time.
func TestSpeedscopeContent(t *testing.T) {
	type resolved struct {
		name, unit string
		end        int64
		stacks     map[string]int64
	}
	read := func(p *Profile) []resolved {
		var f speedscopeFile
		if err := json.Unmarshal(write(t, p, Speedscope), &f); err != nil {
			t.Fatal(err)
		}
		if f.Schema != SpeedscopeSchema || f.Exporter != "wasmtrace" || f.Name != "wasmtrace: pid 4242 (target-v39)" {
			t.Errorf("header: %q %q %q", f.Schema, f.Exporter, f.Name)
		}
		seen := map[speedscopeFrame]bool{}
		for _, fr := range f.Shared.Frames {
			if seen[fr] {
				t.Errorf("frame %+v listed twice", fr)
			}
			seen[fr] = true
		}
		var out []resolved
		for _, prof := range f.Profiles {
			if prof.Type != "sampled" || prof.StartValue != 0 || len(prof.Samples) != len(prof.Weights) {
				t.Fatalf("profile %q: type %q, start %d, %d samples, %d weights", prof.Name, prof.Type, prof.StartValue, len(prof.Samples), len(prof.Weights))
			}
			r := resolved{prof.Name, prof.Unit, prof.EndValue, map[string]int64{}}
			sum := int64(0)
			for i, s := range prof.Samples {
				var names []string
				for _, id := range s {
					if id < 0 || id >= len(f.Shared.Frames) {
						t.Fatalf("frame index %d out of range", id)
					}
					fr := f.Shared.Frames[id]
					names = append(names, fr.Name+"@"+fr.File)
				}
				r.stacks[strings.Join(names, ";")] += prof.Weights[i]
				sum += prof.Weights[i]
			}
			if sum != prof.EndValue {
				t.Errorf("profile %q: weights sum to %d, endValue %d", prof.Name, sum, prof.EndValue)
			}
			out = append(out, r)
		}
		return out
	}
	expect := func(p *Profile, tid int) map[string]int64 {
		m := map[string]int64{}
		period := p.Period()
		if period == 0 {
			period = 1
		}
		for _, c := range p.Samples() {
			if tid != 0 && c.TID != tid {
				continue
			}
			var names []string
			for _, f := range c.Frames {
				names = append(names, DisplayName(f.Name)+"@"+f.Module)
			}
			m[strings.Join(names, ";")] += int64(c.N) * period
		}
		return m
	}

	p := fixture()
	got := read(p)
	if len(got) != 1 || got[0].name != "all samples" || got[0].unit != "nanoseconds" || got[0].end != 258*10101010 {
		t.Fatalf("merged: %+v", got)
	}
	if fmt.Sprint(got[0].stacks) != fmt.Sprint(expect(p, 0)) {
		t.Errorf("merged stacks\n%v\nwant\n%v", got[0].stacks, expect(p, 0))
	}

	p.ByThread = true
	got = read(p)
	want := []struct {
		name string
		tid  int
	}{{"tid 10 (main)", 10}, {"tid 12 (worker-2)", 12}, {"tid 11 (worker-1)", 11}} // busiest first
	if len(got) != len(want) {
		t.Fatalf("%d profiles by thread, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].name != w.name || fmt.Sprint(got[i].stacks) != fmt.Sprint(expect(p, w.tid)) {
			t.Errorf("profile %d: %q %v\nwant %q %v", i, got[i].name, got[i].stacks, w.name, expect(p, w.tid))
		}
	}

	p.ByThread, p.Hz = false, 0
	got = read(p)
	if got[0].unit != "none" || got[0].end != 258 {
		t.Errorf("without Hz: unit %q, end %d; want none, 258", got[0].unit, got[0].end)
	}
}
