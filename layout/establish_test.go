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
	tableConflict(t, func(k *Layout) { k.CTSPrev = 0xb8 }, "CallThreadState.prev", "0xa8 in the code", "0xb8 in the table")
}

// tableConflict establishes target-v39 with its table entry changed by
// mutate: it must be refused, saying want, and accepted with the table
// off. The entry is restored when the test ends.
func tableConflict(t *testing.T, mutate func(k *Layout), want ...string) string {
	t.Helper()
	bin := targetBinary(t, "v39", false)
	saved := knownBuilds["39.0.0"]
	t.Cleanup(func() { knownBuilds["39.0.0"] = saved })
	bad := saved
	mutate(&bad)
	knownBuilds["39.0.0"] = bad
	_, err := Establish(bin, Options{Table: true})
	if !errors.Is(err, ErrTableConflict) {
		t.Fatalf("err %v, want ErrTableConflict", err)
	}
	for _, s := range want {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("refusal %q does not say %q", err, s)
		}
	}
	if _, err := Establish(bin, Options{Table: false}); err != nil {
		t.Errorf("with the table off: %v", err)
	}
	return bin
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
				// Every thread in Wasm has an oldest activation, which
				// saved Some(usize::MAX): read as a tag, that is refused.
				if !l.LimitKnown || !strings.Contains(all, limitFact+": plausible in ") || strings.Contains(all, " 0 Some(usize::MAX)") {
					t.Errorf("stack_limit not confirmed:\n%s", all)
				}
				bad = *l
				bad.Live = nil
				bad.SavedLimitTag = bad.SavedLimitValue
				if err := bad.checkLive(pid); !errors.Is(err, ErrLive) || !strings.Contains(err.Error(), "neither 0 (None) nor 1 (Some)") {
					t.Errorf("stack_limit tag at +%#x: err %v, want ErrLive", bad.SavedLimitTag, err)
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

// EntryStoreContext.stack_limit is decoded from invoke_wasm_and_catch_traps
// in every entry-FP build, sync and async hosts alike, and agrees with the
// table.
func TestStackLimitDecoded(t *testing.T) {
	for _, tc := range []struct{ name, bin, version, test string }{
		{"v37", "", "37.0.0", "testb $0x1,0x58(%rsp)"},
		{"v39", "", "39.0.0", "testb $0x1,0x110(%rsp)"},
		{"async-v37", "v37", "37.0.0", "testb $0x1,0x58(%rsp)"},
		{"async-v39", "v39", "39.0.0", "testb $0x1,0x110(%rsp)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bin string
			if tc.bin == "" {
				bin = targetBinary(t, tc.name, false)
			} else {
				bin = testtarget.AsyncBin(t, tc.bin)
			}
			l, err := Establish(bin, Options{Table: false})
			if err != nil {
				t.Fatal(err)
			}
			if !l.LimitKnown || l.SavedLimitTag != 0 || l.SavedLimitValue != 8 {
				t.Fatalf("stack_limit known %v, tag +%#x, value +%#x; want +0, +8 (%s)", l.LimitKnown, l.SavedLimitTag, l.SavedLimitValue, l.factHow(limitFact))
			}
			tag, value := l.factNamed(limitTagFact), l.factNamed(limitValueFact)
			if !strings.Contains(tag.How, "invoke_wasm_and_catch_traps at 0x") || !strings.Contains(tag.How, ": "+tc.test+"; ") ||
				!strings.HasSuffix(tag.How, "(3 functions show it, all agree)") {
				t.Errorf("tag provenance %q", tag.How)
			}
			if !strings.Contains(value.How, "restored into VMStoreContext+0x10 when the tag is set") || !strings.Contains(value.How, "also restores last_wasm_exit_pc") {
				t.Errorf("value provenance %q", value.How)
			}
			for _, f := range []*Fact{tag, value} {
				if !strings.HasPrefix(f.Check, "agrees with decoded from enter_wasm") || !strings.HasSuffix(f.Check, "table not consulted (WASMTRACE_LAYOUT_TABLE=off)") {
					t.Errorf("%s: check %q", f.What, f.Check)
				}
			}
			// The facts sit with the other EntryStoreContext fields.
			var order []string
			for _, f := range l.Provenance {
				if st, _, _ := strings.Cut(f.What, "."); len(order) == 0 || order[len(order)-1] != st {
					order = append(order, st)
				}
			}
			if strings.Count(strings.Join(order, " "), "EntryStoreContext") != 1 {
				t.Errorf("EntryStoreContext facts are split: %v", order)
			}

			l, err = Establish(bin, Options{Table: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{limitTagFact, limitValueFact} {
				if f := l.factNamed(name); !strings.HasSuffix(f.Check, "table for "+tc.version+" agrees") {
					t.Errorf("%s: check %q", name, f.Check)
				}
			}
		})
	}
}

// A build whose code does not show the restore keeps the stack limit
// unknown, and says why, without a refusal; a seed build has none.
func TestStackLimitUnknown(t *testing.T) {
	l, err := Establish(synthetic(t, "entryfp"), Options{Table: false})
	if err != nil {
		t.Fatal(err)
	}
	f := l.factNamed(limitFact)
	if l.LimitKnown || f == nil || f.Value != "unknown" || f.Source != srcMissing ||
		!strings.Contains(f.How, "invoke_wasm_and_catch_traps (where EntryStoreContext::exit_wasm restores it) not found") {
		t.Errorf("known %v, fact %+v", l.LimitKnown, f)
	}
	// With a table entry, the table's offsets are named but not used.
	l.Version = "39.0.0"
	if err := l.crossCheckLimit(knownBuilds["39.0.0"], "39.0.0"); err != nil || l.LimitKnown ||
		!strings.Contains(f.Check, "the table for 39.0.0 lists tag +0x0, value +0x8, which are not used without the code") {
		t.Errorf("err %v, known %v, check %q", err, l.LimitKnown, f.Check)
	}

	l, err = Establish(targetBinary(t, "v3", false), Options{Table: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range l.Provenance {
		if strings.HasPrefix(f.What, limitFact) {
			t.Errorf("seed build with a stack_limit fact %+v", f)
		}
	}
	if l.LimitKnown {
		t.Error("seed build with a stack limit")
	}
}

// A table entry whose stack_limit disagrees with the code refuses the
// build; with the table off the code alone is used.
func TestStackLimitTableConflict(t *testing.T) {
	saved := knownBuilds["39.0.0"]
	bin := tableConflict(t, func(k *Layout) { k.SavedLimitValue = 0x10 },
		"EntryStoreContext.stack_limit.value", "0x8 in the code", "0x10 in the table for Wasmtime 39.0.0")
	// A table entry without the stack limit only says so.
	bad := saved
	bad.LimitKnown = false
	knownBuilds["39.0.0"] = bad
	l, err := Establish(bin, Options{Table: true})
	if err != nil {
		t.Fatal(err)
	}
	if f := l.factNamed(limitTagFact); !l.LimitKnown || !strings.HasSuffix(f.Check, "no stack_limit in the table for 39.0.0") {
		t.Errorf("check %q", f.Check)
	}
}

func TestValidateStackLimit(t *testing.T) {
	for _, tc := range []struct {
		name       string
		tag, value uint32
		want       string
	}{
		{"unaligned", 0x4, 0x8, "implausible offset 0x4"},
		{"same word", 0x8, 0x8, "tag and value at the same offset"},
		{"on the exit PC", 0x0, 0x20, "overlaps a saved exit or entry field"},
	} {
		l := knownBuilds["39.0.0"]
		l.TLSOffset = -0x68
		l.SavedLimitTag, l.SavedLimitValue = tc.tag, tc.value
		if err := l.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	l := knownBuilds["39.0.0"]
	l.TLSOffset = -0x68
	if err := l.Validate(); err != nil {
		t.Errorf("the table's 39.0.0: %v", err)
	}
}
