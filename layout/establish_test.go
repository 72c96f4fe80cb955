package layout

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmtrace/wasmtrace/internal/testtarget"
)

// inCI reports whether missing prerequisites must fail rather than skip.
func inCI() bool { return os.Getenv("CI") == "true" }

func targetBinary(t *testing.T, version string, stripped bool) string {
	t.Helper()
	return testtarget.Bin(t, version, stripped)
}

// synthetic assembles testdata/NAME.s, a hand-written stand-in for a
// Wasmtime build (see the comment at its top).
func synthetic(t *testing.T, name string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if inCI() {
			t.Fatal("gcc not found")
		}
		t.Skip("gcc not found")
	}
	out := filepath.Join(t.TempDir(), name)
	if b, err := exec.Command(gcc, "-nostdlib", "-static", "-o", out, filepath.Join("testdata", name+".s")).CombinedOutput(); err != nil {
		t.Fatalf("assemble %s: %v\n%s", name, err, b)
	}
	return out
}

func offsets(l *Layout) map[string]uint32 {
	m := map[string]uint32{}
	for _, fl := range l.Generation.fields() {
		m[l.Generation.fieldName(fl)] = *l.ptr(fl)
	}
	return m
}

func TestSyntheticEntryFP(t *testing.T) {
	bin := synthetic(t, "entryfp")
	l, err := Establish(bin, Options{Table: false})
	if err != nil {
		t.Fatal(err)
	}
	want := Layout{Generation: EntryFP, TLSOffset: -0x58, TLSMask: ^uint64(1),
		CTSStore: 0x18, CTSPrev: 0x98, CTSOld: 0xc0,
		SavedExitPC: 0x40, SavedExitFP: 0x48, SavedEntry: 0x50,
		StoreExitFP: 0x28, StoreExitPC: 0x30, StoreEntry: 0x40}
	checkLayout(t, l, &want)
	if l.Version != "37.0.0" {
		t.Errorf("version %q, want 37.0.0 from .rodata", l.Version)
	}
	for _, f := range l.Provenance {
		if f.Source == srcDecoded && !strings.Contains(f.How, " at 0x") {
			t.Errorf("%s: provenance %q names no instruction", f.What, f.How)
		}
	}

	// The synthetic build claims to be 37.0.0, whose table entry differs:
	// with the table on, it is refused, naming the field and both values.
	_, err = Establish(bin, Options{Table: true})
	if !errors.Is(err, ErrTableConflict) {
		t.Fatalf("with the table: err %v, want ErrTableConflict", err)
	}
	for _, s := range []string{"CallThreadState.vm_store_context", "0x18 in the code", "0x10 in the table for Wasmtime 37.0.0"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("refusal %q does not say %q", err, s)
		}
	}
}

func TestSyntheticSeed(t *testing.T) {
	l, err := Establish(synthetic(t, "seed"), Options{Table: true})
	if err != nil {
		t.Fatal(err)
	}
	want := Layout{Generation: Seed, TLSOffset: -0x20, TLSMask: ^uint64(0),
		CTSStore: 0x40, CTSPrev: 0x38,
		SavedExitFP: 0x68, SavedExitPC: 0x70, SavedEntry: 0x78,
		StoreExitFP: 0x08, StoreExitPC: 0x10, StoreEntry: 0x30}
	checkLayout(t, l, &want)
	if f := l.factNamed("CallThreadState.prev"); f == nil || !strings.Contains(f.Check, "no table entry") {
		t.Errorf("prev fact %+v: want a note that no table entry exists", f)
	}
}

func checkLayout(t *testing.T, got, want *Layout) {
	t.Helper()
	if got.Generation != want.Generation {
		t.Fatalf("generation %v, want %v", got.Generation, want.Generation)
	}
	if got.TLSOffset != want.TLSOffset || got.TLSMask != want.TLSMask {
		t.Errorf("TLS fs%+#x mask %#x, want fs%+#x mask %#x", got.TLSOffset, got.TLSMask, want.TLSOffset, want.TLSMask)
	}
	g, w := offsets(got), offsets(want)
	for k, v := range w {
		if g[k] != v {
			t.Errorf("%s = %#x, want %#x (%s)", k, g[k], v, got.factHow(k))
		}
	}
}

// Discovery alone yields exactly the offsets of the table, for every
// verified build, and agrees with it when the table is on.
func TestDiscoveryMatchesTable(t *testing.T) {
	for _, tc := range []struct{ target, version string }{{"v3", "3.0.0"}, {"v37", "37.0.0"}, {"v39", "39.0.0"}} {
		t.Run(tc.target, func(t *testing.T) {
			bin := targetBinary(t, tc.target, false)
			l, err := Establish(bin, Options{Table: false})
			if err != nil {
				t.Fatal(err)
			}
			if l.Version != tc.version {
				t.Errorf("version %q, want %q", l.Version, tc.version)
			}
			want := knownBuilds[tc.version]
			want.TLSOffset = l.TLSOffset // not in the table: checked below
			checkLayout(t, l, &want)
			for _, f := range l.Provenance {
				if f.Source == srcDecoded && !strings.Contains(f.Check, "table not consulted") && f.What != "thread-local tag mask" {
					t.Errorf("%s: check %q, want the table reported as not consulted", f.What, f.Check)
				}
			}
			// Both sources of the thread-local slot were used and agree.
			if f := l.factNamed("thread-local slot"); f == nil || f.Source != srcSymbol || !strings.HasPrefix(f.Check, "agrees with decoded from") {
				t.Errorf("thread-local slot fact %+v: want the symbol, cross-checked by the accessor's code", f)
			}

			l, err = Establish(bin, Options{Table: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, fl := range l.Generation.fields() {
				if f := l.factNamed(l.Generation.fieldName(fl)); !strings.Contains(f.Check, "table for "+tc.version+" agrees") {
					t.Errorf("%s: check %q", f.What, f.Check)
				}
			}
		})
	}
}

// A table entry that disagrees with the code refuses the build.
func TestTableConflict(t *testing.T) {
	bin := targetBinary(t, "v39", false)
	saved := knownBuilds["39.0.0"]
	t.Cleanup(func() { knownBuilds["39.0.0"] = saved })
	bad := saved
	bad.CTSPrev = 0xb8
	knownBuilds["39.0.0"] = bad
	_, err := Establish(bin, Options{Table: true})
	if !errors.Is(err, ErrTableConflict) {
		t.Fatalf("err %v, want ErrTableConflict", err)
	}
	for _, s := range []string{"CallThreadState.prev", "0xa8 in the code", "0xb8 in the table"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("refusal %q does not say %q", err, s)
		}
	}
	if _, err := Establish(bin, Options{Table: false}); err != nil {
		t.Errorf("with the table off: %v", err)
	}
}

func TestStrippedRefused(t *testing.T) {
	bin := targetBinary(t, "v39", true)
	_, err := Establish(bin, DefaultOptions(""))
	if !errors.Is(err, ErrStripped) {
		t.Fatalf("err %v, want ErrStripped", err)
	}
	// The refusal says what was found and what is missing.
	for _, s := range []string{"contains Wasmtime 39", "stripped", "fs-0x68", "Backtrace::new_with_trap_state"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("refusal %q does not say %q", err, s)
		}
	}
}

func TestNotWasmtime(t *testing.T) {
	self, err := os.Executable() // a Go binary with symbols
	if err != nil {
		t.Fatal(err)
	}
	bins := []string{self}
	for _, b := range []string{"/bin/true", "/usr/bin/true"} {
		if _, err := os.Stat(b); err == nil {
			bins = append(bins, b) // usually stripped
			break
		}
	}
	for _, b := range bins {
		if _, err := Establish(b, DefaultOptions("")); !errors.Is(err, ErrNotWasmtime) {
			t.Errorf("%s: err %v, want ErrNotWasmtime", b, err)
		}
	}
}

func TestTableEnv(t *testing.T) {
	t.Setenv(TableEnv, "off")
	if TableEnabled() || DefaultOptions("").Table {
		t.Error("table on with " + TableEnv + "=off")
	}
	t.Setenv(TableEnv, "")
	if !TableEnabled() {
		t.Error("table off by default")
	}
}

// startTarget runs a target scenario and waits for its "ready" line.
func startTarget(t *testing.T, bin string, args ...string) int {
	t.Helper()
	return testtarget.Start(t, bin, args...).Process.Pid
}

// The live checks confirm each build's layout on a running target (its
// own child, so no root is needed where ptrace_scope allows reading one's
// children), and catch a wrong offset.
func TestLive(t *testing.T) {
	for _, v := range []string{"v3", "v37", "v39"} {
		t.Run(v, func(t *testing.T) {
			pid := startTarget(t, targetBinary(t, v, false), "-scenario", "all")
			l, err := EstablishProcess(pid, Options{Table: true, Live: true})
			if err != nil {
				if strings.Contains(err.Error(), "operation not permitted") && !inCI() {
					t.Skip(err)
				}
				t.Fatal(err)
			}
			var live []string
			for _, f := range l.Live {
				live = append(live, f.What+": "+f.How)
			}
			all := strings.Join(live, "\n")
			if !strings.Contains(all, "thread-local slot and offsets: confirmed on") {
				t.Errorf("live checks did not confirm the layout:\n%s", all)
			}
			if l.Generation == EntryFP && !strings.Contains(all, "VMStoreContext offsets agree") {
				t.Errorf("JIT trampolines not checked:\n%s", all)
			}

			bad := *l
			bad.Live = nil
			bad.CTSStore += 8
			if err := bad.checkLive(pid); !errors.Is(err, ErrLive) {
				t.Errorf("CallThreadState store at +%#x: err %v, want ErrLive", bad.CTSStore, err)
			}
			if l.Generation == EntryFP {
				bad := *l
				bad.StoreEntry -= 8
				if err := bad.checkLive(pid); !errors.Is(err, ErrLive) {
					t.Errorf("entry FP at +%#x: err %v, want ErrLive", bad.StoreEntry, err)
				}
			}
		})
	}
}

// sharedTarget builds target-v39 against libwasmtime.so, a shared library
// made from wasmtime-go's static libwasmtime.a, into a directory reused
// across runs.
func sharedTarget(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "wasmtrace-layout-so")
	bin := filepath.Join(dir, "target-v39-so")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if testing.Short() && !inCI() {
		t.Skip("the shared-library target is not built; skipped in -short mode")
	}
	fail := func(format string, a ...any) {
		t.Helper()
		if inCI() {
			t.Fatalf(format, a...)
		}
		t.Skipf(format, a...)
	}
	src, err := filepath.Abs("../testdata/targets/v39")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "GOWORK=off", "CGO_ENABLED=1")
	list := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/bytecodealliance/wasmtime-go/v39")
	list.Dir, list.Env = src, env
	out, err := list.Output()
	if err != nil {
		fail("locate wasmtime-go: %v", err)
	}
	archive := filepath.Join(strings.TrimSpace(string(out)), "build/linux-x86_64/libwasmtime.a")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(dir, "build")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	if b, err := exec.Command("gcc", "-shared", "-o", filepath.Join(dir, "libwasmtime.so"),
		"-Wl,--whole-archive", archive, "-Wl,--no-whole-archive", "-lm", "-ldl", "-pthread").CombinedOutput(); err != nil {
		fail("link libwasmtime.so: %v\n%s", err, b)
	}
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(tmp, "target"), ".")
	build.Dir = src
	build.Env = append(env, "CGO_LDFLAGS=-L"+dir+" -Wl,-rpath,"+dir)
	if b, err := build.CombinedOutput(); err != nil {
		fail("build the shared-library target: %v\n%s", err, b)
	}
	if err := os.Rename(filepath.Join(tmp, "target"), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// Wasmtime in a shared library loaded at start-up: the layout comes from
// the library, its thread-local from the library's static TLS block.
func TestSharedLibrary(t *testing.T) {
	bin := sharedTarget(t)
	if _, err := Establish(bin, DefaultOptions("")); !errors.Is(err, ErrNotWasmtime) {
		t.Errorf("the executable alone: err %v, want ErrNotWasmtime", err)
	}
	pid := startTarget(t, bin, "-scenario", "all")
	l, err := EstablishProcess(pid, Options{Table: true, Live: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(l.Library, "/libwasmtime.so") {
		t.Errorf("library %q", l.Library)
	}
	want := knownBuilds["39.0.0"]
	want.TLSOffset = l.TLSOffset
	checkLayout(t, l, &want)
	if f := l.factNamed("thread-local slot"); f == nil || !strings.Contains(f.Check, "static TLS") {
		t.Errorf("thread-local slot fact %+v: want the live TLS block explained", f)
	}
	confirmed := false
	for _, f := range l.Live {
		confirmed = confirmed || strings.HasPrefix(f.How, "confirmed on")
	}
	if !confirmed {
		t.Errorf("the slot fs%+#x was not confirmed on a thread in Wasm: %+v", l.TLSOffset, l.Live)
	}
}
