package testtarget

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The component targets of testdata/component: a Wasmtime embedder using
// the component C API (component-VERSION, built by build.sh) and the
// components it runs (built by wasm.sh into testdata/component/cache).

// ComponentVersions are the Wasmtime versions with a component target.
var ComponentVersions = []string{"v39", "v37"}

// Components built by testdata/component/wasm.sh.
const (
	// SmallComponent is wat/wasmtrace_component.wat: known call chains.
	SmallComponent = "wasmtrace_component.wasm"
	// JSComponent is js/app.js made a StarlingMonkey component by
	// componentize-js.
	JSComponent = "js_burner.wasm"
)

// ComponentBin returns testdata/component/bin/component-VERSION, building
// it with build.sh when missing, like Bin.
func ComponentBin(tb testing.TB, version string) string {
	tb.Helper()
	return built(tb, filepath.Join(Root(), "testdata/component/bin", "component-"+version), "testdata/component/build.sh", version)
}

// ComponentWasm returns testdata/component/cache/NAME, running wasm.sh
// (idempotent, quick once built) so that it is up to date.
func ComponentWasm(tb testing.TB, name string) string {
	tb.Helper()
	path := filepath.Join(Root(), "testdata/component/cache", name)
	if _, err := os.Stat(path); err != nil && testing.Short() && !InCI() {
		tb.Skipf("%s not built (make targets); skipped in -short mode", path)
	}
	out, err := exec.Command(filepath.Join(Root(), "testdata/component/wasm.sh")).CombinedOutput()
	if err != nil {
		tb.Fatalf("build components: %v\n%s", err, out)
	}
	return path
}

// StartComponent runs the component target bin on component wasm, calling
// export, waits for its "ready" line, and kills it when the test ends.
// It waits up to 5 minutes: Wasmtime compiles the 12 MB JavaScript
// component in about 35 s on an idle machine.
func StartComponent(tb testing.TB, bin, wasm, export string) *exec.Cmd {
	tb.Helper()
	return StartWithin(tb, 5*time.Minute, bin, "-component", wasm, "-export", export)
}

// CoreModule is what a component binary says about one of its core
// modules, numbered as Wasmtime numbers static modules: in the order the
// core modules appear in the binary, nested components' included.
type CoreModule struct {
	Index       int
	Name        string         // the module's name section: module name
	FuncNames   map[int]string // the module's name section: function names
	FuncImports int            // imported functions (they come first)
	Funcs       int            // defined functions
}

// CoreModules lists the core modules of a component binary.
func CoreModules(wasm []byte) ([]CoreModule, error) {
	var mods []CoreModule
	if err := walkComponent(wasm, &mods); err != nil {
		return nil, err
	}
	return mods, nil
}

var errTruncated = errors.New("truncated")

type wasmReader struct {
	b []byte
	p int
}

func (r *wasmReader) u32() (uint32, error) {
	v, n := binary.Uvarint(r.b[r.p:])
	if n <= 0 || v > 1<<32-1 {
		return 0, errTruncated
	}
	r.p += n
	return uint32(v), nil
}

func (r *wasmReader) bytes(n uint32) ([]byte, error) {
	if uint64(n) > uint64(len(r.b)-r.p) {
		return nil, errTruncated
	}
	s := r.b[r.p : r.p+int(n)]
	r.p += int(n)
	return s, nil
}

func (r *wasmReader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	s, err := r.bytes(n)
	return string(s), err
}

// sections calls f with each section of a module or component binary.
func sections(wasm []byte, f func(id byte, body []byte) error) error {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return errors.New("not a Wasm binary")
	}
	r := &wasmReader{b: wasm, p: 8}
	for r.p < len(wasm) {
		id := wasm[r.p]
		r.p++
		n, err := r.u32()
		if err != nil {
			return err
		}
		body, err := r.bytes(n)
		if err != nil {
			return err
		}
		if err := f(id, body); err != nil {
			return err
		}
	}
	return nil
}

func walkComponent(wasm []byte, mods *[]CoreModule) error {
	return sections(wasm, func(id byte, body []byte) error {
		switch id {
		case 1: // core module
			m, err := coreModule(body)
			if err != nil {
				return fmt.Errorf("core module %d: %w", len(*mods), err)
			}
			m.Index = len(*mods)
			*mods = append(*mods, m)
		case 4: // nested component
			return walkComponent(body, mods)
		}
		return nil
	})
}

func coreModule(wasm []byte) (CoreModule, error) {
	m := CoreModule{FuncNames: map[int]string{}}
	err := sections(wasm, func(id byte, body []byte) error {
		r := &wasmReader{b: body}
		switch id {
		case 2: // imports
			n, err := r.u32()
			for i := uint32(0); err == nil && i < n; i++ {
				if _, err = r.name(); err != nil {
					break
				}
				if _, err = r.name(); err != nil {
					break
				}
				if r.p >= len(body) {
					return errTruncated
				}
				kind := body[r.p]
				r.p++
				switch kind {
				case 0: // func: type index
					m.FuncImports++
					_, err = r.u32()
				case 1: // table: reftype, limits
					r.p++
					err = skipLimits(r)
				case 2: // memory: limits
					err = skipLimits(r)
				case 3: // global: valtype, mutability
					r.p += 2
				case 4: // tag: attribute, type index
					r.p++
					_, err = r.u32()
				default:
					return fmt.Errorf("import kind %d", kind)
				}
			}
			return err
		case 3: // functions
			n, err := r.u32()
			m.Funcs = int(n)
			return err
		case 0:
			name, err := r.name()
			if err != nil || name != "name" {
				return err
			}
			for r.p < len(body) {
				sub := body[r.p]
				r.p++
				n, err := r.u32()
				if err != nil {
					return err
				}
				s, err := r.bytes(n)
				if err != nil {
					return err
				}
				sr := &wasmReader{b: s}
				switch sub {
				case 0:
					m.Name, err = sr.name()
				case 1:
					var count uint32
					count, err = sr.u32()
					for i := uint32(0); err == nil && i < count; i++ {
						var idx uint32
						if idx, err = sr.u32(); err == nil {
							m.FuncNames[int(idx)], err = sr.name()
						}
					}
				}
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
	return m, err
}

func skipLimits(r *wasmReader) error {
	if r.p >= len(r.b) {
		return errTruncated
	}
	flags := r.b[r.p]
	r.p++
	if _, err := r.u32(); err != nil {
		return err
	}
	if flags&1 != 0 {
		_, err := r.u32()
		return err
	}
	return nil
}
