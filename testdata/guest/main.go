// Command guest-vN is a Wasmtime embedder used as a profiling target by the
// wasmtrace tests: it runs a large real WASI program that nobody on the
// project wrote, CRuby 3.4 for WASI from the npm package
// @ruby/3.4-wasm-wasi (dist/ruby.debug+stdlib.wasm: 17,825 functions, with
// a name section and DWARF), and keeps a CPU-heavy Ruby snippet running.
//
// This one file is the program for every version: each of
// testdata/guest/{v39,v37,v3} is a module (all named wasmtrace.test/guest)
// that links main.go here and has a package wasmtime which re-exports, from
// its wasmtime-go major version, the small API subset used here (the same in
// v3, v37 and v39). build.sh builds a version's module; fetch.sh downloads
// the guest into testdata/guest/cache/.
//
// Wasmtime is used with its default Config: no profiling strategy, no perfmap,
// no jitdump.
//
// Command line:
//
//	-wasm FILE     the Ruby module (default: ../cache/ruby.debug+stdlib.wasm
//	               next to the directory holding this program)
//	-threads N     OS threads running Ruby, each with its own Store and
//	               instance (default 2; one Engine and Module are shared)
//	-script CODE   Ruby code defining the method wt_work (default: a mix of
//	               recursion, blocks, strings, regular expressions, hashes,
//	               sorting and bignums)
//	-cache DIR     keep the compiled module in DIR (default: none, compile
//	               every time): the first run compiles and writes
//	               DIR/NAME-SHA.VERSION.cwasm (SHA: of the Wasm; VERSION: the
//	               wasmtime-go major), later runs deserialize it from bytes,
//	               which leaves the same image in anonymous memory as
//	               compiling does, in seconds instead of a minute; a file
//	               Wasmtime refuses is replaced
//
// The guest is a reactor built with the old (pre-component) canonical ABI
// of wit-bindgen: each thread instantiates it with WASI preview 1 (stdout
// and stderr inherited; the Ruby standard library is inside the module,
// packed by wasi-vfs), calls _initialize, then "ruby-init" with the
// arguments ruby.wasm -EUTF-8 -e_=0 (as @ruby/wasm-wasi's RubyVM does),
// evaluates the script once with "rb-eval-string-protect", and then
// evaluates "wt_work" in an endless loop (a call takes tens of
// milliseconds). The imports rb-js-abi-host.* (the JavaScript bridge, never
// used by the script) trap if called; canonical_abi's resource handles are
// the guest's own values (resource_new and resource_get are the identity),
// and each result is dropped with canonical_abi_drop_rb-abi-value.
//
// The program prints the single line "ready" to stdout once every thread
// has started its loop, and runs until killed. The process's main thread
// (TID == PID) never runs Wasm.
package main

import (
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"wasmtrace.test/guest/wasmtime"
)

// defaultScript defines wt_work, the method the threads call in a loop.
// It returns a String so the host can check that it ran.
const defaultScript = `
def wt_fib(n) = n < 2 ? n : wt_fib(n - 1) + wt_fib(n - 2)

def wt_work
  h = {}
  300.times { |i| h["key#{i}"] = i * i }
  s = h.map { |k, v| "#{k}=#{v}" }.join(",")
  pairs = s.scan(/key(\d+)=(\d+)/).size
  words = s.split(",").map { |w| w.sub(/=(\d+)/) { "=#{$1.to_i * 3}" } }.grep(/7/).size
  sorted = (1..3000).map { |i| (i * 7919) % 1009 }.sort.uniq.size
  big = (1..200).inject(:*).to_s.size
  (wt_fib(20) + pairs + words + sorted + big).to_s
end
wt_work
`

// nestScript makes wt_work call the script's wt_work through %d levels of
// map blocks (each level is the interpreter calling itself through
// rb_yield, about ten Wasm frames), for deeper stacks.
const nestScript = `
alias wt_body wt_work
def wt_nest(n) = n == 0 ? wt_body : [n].map { |k| wt_nest(k - 1) }.first
def wt_work = wt_nest(%d)
`

func init() {
	// Keep the main goroutine on the process's main thread (TID == PID) so
	// that no Wasm ever runs there: Ruby runs on the locked worker threads.
	runtime.LockOSThread()
}

func main() {
	exe, _ := os.Executable()
	defWasm := filepath.Join(filepath.Dir(exe), "..", "cache", "ruby.debug+stdlib.wasm")
	wasmFile := flag.String("wasm", defWasm, "the Ruby module (`FILE`)")
	threads := flag.Int("threads", 2, "OS threads running Ruby, one Store each")
	script := flag.String("script", defaultScript, "Ruby `CODE` defining wt_work")
	cacheDir := flag.String("cache", "", "keep the compiled module in `DIR`")
	nest := flag.Int("nest", 0, "call wt_work through `N` levels of blocks (deeper stacks)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("guest: ")
	if *threads < 1 || *threads > 64 {
		log.Fatalf("-threads must be in 1..64")
	}
	if *nest < 0 || *nest > 100 {
		log.Fatalf("-nest must be in 0..100")
	}
	if *nest > 0 {
		*script += fmt.Sprintf(nestScript, *nest)
	}

	engine := wasmtime.NewEngine() // default config: no profiler, no perfmap
	module := load(engine, *wasmFile, *cacheDir)
	var started sync.WaitGroup
	for i := 0; i < *threads; i++ {
		started.Add(1)
		go func() {
			runtime.LockOSThread()
			r := newRuby(engine, module)
			r.eval(*script)
			started.Done()
			for {
				r.eval("wt_work")
			}
		}()
	}
	started.Wait()
	fmt.Fprintln(os.Stdout, "ready")
	_ = os.Stdout.Sync()
	select {}
}

// load compiles the module in file, or with cacheDir deserializes it from
// the cache, compiling and caching it when the cache has no usable copy.
func load(engine *wasmtime.Engine, file, cacheDir string) *wasmtime.Module {
	wasm, err := os.ReadFile(file)
	if err != nil {
		log.Fatal(err)
	}
	var cached string
	if cacheDir != "" {
		sum := sha256.Sum256(wasm)
		name := strings.TrimSuffix(filepath.Base(file), ".wasm")
		cached = filepath.Join(cacheDir, fmt.Sprintf("%s-%x.%s.cwasm", name, sum[:8], wasmtime.Major))
		if b, err := os.ReadFile(cached); err == nil {
			if m, err := wasmtime.NewModuleDeserialize(engine, b); err == nil {
				return m
			}
		}
	}
	m, err := wasmtime.NewModule(engine, wasm)
	if err != nil {
		log.Fatalf("compile %s: %v", file, err)
	}
	if cached != "" {
		b, err := m.Serialize()
		if err == nil {
			tmp := fmt.Sprintf("%s.tmp%d", cached, os.Getpid())
			if err = os.WriteFile(tmp, b, 0o644); err == nil {
				err = os.Rename(tmp, cached)
			}
			os.Remove(tmp)
		}
		if err != nil {
			log.Printf("cache %s: %v", cached, err)
		}
	}
	return m
}

// ruby is one instance of the guest in its own store.
type ruby struct {
	store   *wasmtime.Store
	inst    *wasmtime.Instance
	memory  *wasmtime.Memory
	realloc *wasmtime.Func
	evalFn  *wasmtime.Func
	dropFn  *wasmtime.Func
}

// newRuby instantiates module and initialises the Ruby VM in it.
func newRuby(engine *wasmtime.Engine, module *wasmtime.Module) *ruby {
	store := wasmtime.NewStore(engine)
	wasi := wasmtime.NewWasiConfig()
	wasi.InheritStdout()
	wasi.InheritStderr()
	store.SetWasi(wasi)
	linker := wasmtime.NewLinker(engine)
	if err := linker.DefineWasi(); err != nil {
		log.Fatalf("define WASI: %v", err)
	}
	stubImports(linker, module)
	inst, err := linker.Instantiate(store, module)
	if err != nil {
		log.Fatalf("instantiate: %v", err)
	}
	r := &ruby{store: store, inst: inst}
	mem := inst.GetExport(store, "memory")
	if mem == nil || mem.Memory() == nil {
		log.Fatalf("export memory not found")
	}
	r.memory = mem.Memory()
	r.realloc = r.fn("cabi_realloc")
	r.evalFn = r.fn("rb-eval-string-protect: func(str: string) -> tuple<handle<rb-abi-value>, s32>")
	r.dropFn = r.fn("canonical_abi_drop_rb-abi-value")

	r.call(r.fn("_initialize"))
	args := []string{"ruby.wasm", "-EUTF-8", "-e_=0"}
	vec := r.alloc(4, 8*len(args))
	for i, a := range args {
		p := r.putString(a + "\x00")
		data := r.memory.UnsafeData(r.store)
		binary.LittleEndian.PutUint32(data[vec+8*i:], uint32(p))
		binary.LittleEndian.PutUint32(data[vec+8*i+4:], uint32(len(a)+1))
	}
	r.call(r.fn("ruby-init: func(args: list<string>) -> ()"), int32(vec), int32(len(args)))
	return r
}

// stubImports defines every import of module outside WASI.
func stubImports(linker *wasmtime.Linker, module *wasmtime.Module) {
	for _, imp := range module.Imports() {
		if imp.Module() == "wasi_snapshot_preview1" || imp.Name() == nil {
			continue
		}
		ft := imp.Type().FuncType()
		if ft == nil {
			log.Fatalf("import %s.%s is not a function", imp.Module(), *imp.Name())
		}
		mod, name := imp.Module(), *imp.Name()
		var f func(*wasmtime.Caller, []wasmtime.Val) ([]wasmtime.Val, *wasmtime.Trap)
		switch {
		case mod == "canonical_abi" && (name == "resource_new_rb-abi-value" || name == "resource_get_rb-abi-value"):
			f = func(_ *wasmtime.Caller, args []wasmtime.Val) ([]wasmtime.Val, *wasmtime.Trap) {
				return []wasmtime.Val{wasmtime.ValI32(args[0].I32())}, nil
			}
		case mod == "canonical_abi" && len(ft.Results()) == 0:
			f = func(*wasmtime.Caller, []wasmtime.Val) ([]wasmtime.Val, *wasmtime.Trap) { return nil, nil }
		default:
			msg := fmt.Sprintf("import %s.%s is not provided by this host", mod, name)
			f = func(*wasmtime.Caller, []wasmtime.Val) ([]wasmtime.Val, *wasmtime.Trap) {
				return nil, wasmtime.NewTrap(msg)
			}
		}
		if err := linker.FuncNew(mod, name, ft, f); err != nil {
			log.Fatalf("define %s.%s: %v", mod, name, err)
		}
	}
}

func (r *ruby) fn(name string) *wasmtime.Func {
	e := r.inst.GetExport(r.store, name)
	if e == nil || e.Func() == nil {
		log.Fatalf("export %q not found", name)
	}
	return e.Func()
}

func (r *ruby) call(f *wasmtime.Func, args ...interface{}) int32 {
	v, err := f.Call(r.store, args...)
	if err != nil {
		log.Fatalf("call: %v", err)
	}
	n, _ := v.(int32)
	return n
}

// alloc allocates size bytes aligned to align in the guest.
func (r *ruby) alloc(align, size int) int {
	p := r.call(r.realloc, int32(0), int32(0), int32(align), int32(size))
	if p == 0 || int(uint32(p))+size > len(r.memory.UnsafeData(r.store)) {
		log.Fatalf("cabi_realloc(%d) = %#x", size, uint32(p))
	}
	return int(uint32(p))
}

// putString copies s into a fresh guest allocation.
func (r *ruby) putString(s string) int {
	p := r.alloc(1, len(s))
	copy(r.memory.UnsafeData(r.store)[p:], s)
	return p
}

// eval evaluates code with rb_eval_string_protect; an exception ends the
// program.
func (r *ruby) eval(code string) {
	s := code + "\x00"
	p := r.putString(s)
	ret := int(uint32(r.call(r.evalFn, int32(p), int32(len(s)))))
	data := r.memory.UnsafeData(r.store)
	if ret+8 > len(data) {
		log.Fatalf("rb-eval-string-protect returned %#x", ret)
	}
	value := int32(binary.LittleEndian.Uint32(data[ret:]))
	state := int32(binary.LittleEndian.Uint32(data[ret+4:]))
	if state != 0 {
		log.Fatalf("Ruby raised (state %d) evaluating %q", state, code)
	}
	r.call(r.dropFn, value)
}
