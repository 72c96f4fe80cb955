package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmtrace/wasmtrace/internal/testtarget"
)

// Components (testdata/component): the component embedder running the
// project's own component, with exact stacks and core module names, and a
// JavaScript component made by componentize-js, whose frames must be
// exactly what its core modules' name sections say.

// The small component's exports and their stacks (wat/wasmtrace_component.wat):
// run stays in core module main; via-lib calls from main through the fused
// adapter Wasmtime generates into lib_core, the core module of the nested
// component $lib.
var componentScenarios = []struct {
	export, want string
}{
	{"run", "c_run;c_mid;c_leaf"},
	{"via-lib", "c_via_lib;c_call_lib;[adapter];l_work;l_leaf"},
}

// componentModules is the core module each frame of the small component
// must be reported in (speedscope's "file").
var componentModules = map[string]string{
	"c_run": "main", "c_mid": "main", "c_leaf": "main", "c_via_lib": "main", "c_call_lib": "main",
	"l_work": "lib_core", "l_leaf": "lib_core",
	"[adapter]": "",
}

func TestComponentStacks(t *testing.T) {
	requireRoot(t)
	wasm := testtarget.ComponentWasm(t, testtarget.SmallComponent)
	for _, v := range testtarget.ComponentVersions {
		bin := testtarget.ComponentBin(t, v)
		for _, sc := range componentScenarios {
			t.Run(v+"/"+sc.export, func(t *testing.T) {
				cmd := testtarget.StartComponent(t, bin, wasm, sc.export)
				pid := fmt.Sprint(cmd.Process.Pid)
				r := runWasmtrace(t, "record", "-p", pid, "-d", "2s", "-F", "499", "--format", "folded", "-o", "-")
				if r.code != 0 {
					t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
				}
				checkStacks(t, folded(t, r.stdout), sc.want, 50)

				r = runWasmtrace(t, "record", "-p", pid, "-d", "1s", "-F", "499", "--format", "speedscope", "-o", "-")
				if r.code != 0 {
					t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
				}
				for name, file := range speedscopeFrames(t, r.stdout) {
					want, ok := componentModules[name]
					if !ok && !strings.HasPrefix(name, "[") {
						t.Errorf("unexpected frame %q", name)
					}
					if ok && file != want {
						t.Errorf("frame %s in module %q, want %q", name, file, want)
					}
				}
			})
		}
		t.Run(v+"/inspect", func(t *testing.T) {
			cmd := testtarget.StartComponent(t, bin, wasm, "run")
			r := runWasmtrace(t, "inspect", "-p", fmt.Sprint(cmd.Process.Pid))
			if r.code != 0 {
				t.Fatalf("wasmtrace inspect exited %d: %s", r.code, r.stderr)
			}
			for _, want := range []string{
				" component        3 core modules: 7 functions, 5 trampolines, 1 adapter function\n",
				"      core module 0    lib_core         2 functions\n",
				"      core module 1    main             5 functions\n",
				"      core module 2    (fused adapters) 1 function\n",
			} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("inspect output lacks %q:\n%s", want, r.stdout)
				}
			}
		})
	}
}

// speedscopeFrames returns speedscope output's frames: name -> file.
func speedscopeFrames(t *testing.T, out string) map[string]string {
	t.Helper()
	var doc struct {
		Shared struct {
			Frames []struct {
				Name string `json:"name"`
				File string `json:"file"`
			} `json:"frames"`
		} `json:"shared"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("speedscope output: %v", err)
	}
	frames := map[string]string{}
	for _, f := range doc.Shared.Frames {
		if old, dup := frames[f.Name]; dup && old != f.File {
			t.Errorf("frame %q in two modules, %q and %q", f.Name, old, f.File)
		}
		frames[f.Name] = f.File
	}
	return frames
}

var unnamedFrame = regexp.MustCompile(`^wasm\[(\d+)\]::function\[(\d+)\]$`)

// The JavaScript component: StarlingMonkey's C++ functions (its engine,
// interpreting app.js) and the WASI adapter's. Each frame must be exactly
// what the component's own name sections say: a function's name from its
// core module's name section, or wasm[N]::function[I] for a function I
// that core module N defines and does not name.
func TestComponentJS(t *testing.T) {
	requireRoot(t)
	wasmPath := testtarget.ComponentWasm(t, testtarget.JSComponent)
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := testtarget.CoreModules(wasm)
	if err != nil {
		t.Fatalf("%s: %v", wasmPath, err)
	}
	named := map[string]bool{} // names of defined functions
	for _, m := range mods {
		for idx, name := range m.FuncNames {
			if idx >= m.FuncImports && idx < m.FuncImports+m.Funcs {
				named[name] = true
			}
		}
	}
	for _, v := range testtarget.ComponentVersions {
		t.Run(v, func(t *testing.T) {
			cmd := testtarget.StartComponent(t, testtarget.ComponentBin(t, v), wasmPath, "run")
			r := runWasmtrace(t, "record", "-p", fmt.Sprint(cmd.Process.Pid), "-d", "3s", "-F", "499", "--format", "folded", "-o", "-")
			if r.code != 0 {
				t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
			}
			wasmSamples, frames := 0, map[string]int{}
			for stack, n := range folded(t, r.stdout) {
				if isMarkerRoot(stack) {
					continue
				}
				wasmSamples += n
				for _, f := range strings.Split(stack, ";") {
					frames[f] += n
				}
			}
			if wasmSamples < 100 {
				t.Fatalf("only %d samples with Wasm on the stack (want >= 100):\n%s", wasmSamples, r.stdout)
			}
			unnamed := 0
			for f, n := range frames {
				switch m := unnamedFrame.FindStringSubmatch(f); {
				case f == "[host]":
				case m != nil:
					unnamed++
					mi, _ := strconv.Atoi(m[1])
					fi, _ := strconv.Atoi(m[2])
					if mi >= len(mods) || fi < mods[mi].FuncImports || fi >= mods[mi].FuncImports+mods[mi].Funcs {
						t.Errorf("frame %s (%d samples): core module %d defines no function %d", f, n, mi, fi)
					} else if name, ok := mods[mi].FuncNames[fi]; ok {
						t.Errorf("frame %s (%d samples) has a name: %q", f, n, name)
					}
				case !named[f]:
					t.Errorf("frame %q (%d samples) is no name of the component's name sections", f, n)
				}
			}
			t.Logf("%d samples with Wasm, %d distinct frames (%d without a name in the name section)", wasmSamples, len(frames), unnamed)
		})
	}
}

// --verify on components: the kernel and Go walkers agree on every sample,
// through adapters and component trampolines, in our component and in the
// JavaScript one.
func TestComponentVerify(t *testing.T) {
	requireRoot(t)
	wasms := map[string]string{
		"own":        testtarget.ComponentWasm(t, testtarget.SmallComponent),
		"javascript": testtarget.ComponentWasm(t, testtarget.JSComponent),
	}
	for _, v := range testtarget.ComponentVersions {
		bin := testtarget.ComponentBin(t, v)
		for _, which := range []string{"own", "javascript"} {
			t.Run(v+"/"+which, func(t *testing.T) {
				export := "run"
				if which == "own" {
					export = "via-lib"
				}
				cmd := testtarget.StartComponent(t, bin, wasms[which], export)
				// 5 s: 2,000 verified samples even on a loaded machine.
				r := runWasmtrace(t, "record", "-p", fmt.Sprint(cmd.Process.Pid), "-d", "5s", "-F", "999", "--verify", "--format", "folded", "-o", "-")
				if r.code != 0 {
					t.Fatalf("wasmtrace exited %d: %s", r.code, r.stderr)
				}
				checkVerified(t, r.stderr, 2000)
			})
		}
	}
}
