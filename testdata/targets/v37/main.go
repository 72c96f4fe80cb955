// Command target-v37 is a Wasmtime embedder used as a profiling target by the
// wasmtrace tests. It runs Wasm with known, fixed call chains in endless loops.
//
// The three programs testdata/targets/{v39,v37,v3} are identical except for
// the wasmtime-go major version they import (the small API subset used here
// is the same in v3, v37 and v39; v3 also has noexecstack.go). The WAT text
// below MUST stay byte-identical across them.
//
// Wasmtime is used with its default Config: no profiling strategy, no perfmap,
// no jitdump. Function names come from the WAT `$names` (the name section).
//
// Command line:
//
//	-scenario NAME   chain|nested|hostburn|recursion|threads|late|all|idle (default all)
//	-threads N       number of OS threads for the threads scenario (default 3)
//	-late DURATION   delay before the late module starts (default 2s)
//
// Once the Wasm work has started the program prints the single line "ready"
// to stdout (the late scenario prints it at start-up, then "late-started"
// when the late module begins running). It then runs until killed.
//
// Threads: each busy scenario runs on its own goroutine locked to an OS
// thread with its own Store (one Engine and one compiled Module are shared).
// The process's main thread (TID == PID) never runs Wasm. Every Wasm call
// takes roughly 50 ms (35M iterations of the burn loop, or 50 ms of Go spin).
//
// Expected stacks (root first, only Wasm frames and a single <host> marker
// for the host (Go/cgo/Wasmtime trampoline) frames between Wasm frames):
//
//	chain      run;chain_a;chain_b;chain_c
//	nested     outer;outer_mid;<host>;inner;inner_leaf
//	hostburn   hb_outer;hb_mid;<host>
//	recursion  rec_entry;rec;rec;...;rec  with exactly 101 rec frames:
//	           rec_entry calls rec(100), rec(n) calls rec(n-1) for n > 0, and
//	           only rec(0) (the innermost, 101st rec frame) burns CPU.
//	           Written "rec_entry;rec x101".
//	threads    run;chain_a;chain_b;chain_c  (on each of the N threads)
//	late       late_run;late_leaf           (only after "late-started"; the main
//	           module is instantiated at start but never called, the late
//	           module is compiled only after -late)
//	all        chain, nested, hostburn and recursion at once, one thread each
//	idle       no Wasm on any stack (module instantiated, never called)
//
// Only the leaf functions (chain_c, inner_leaf, rec at n==0, late_leaf, and
// the Go function behind host.burn) burn CPU; every intermediate function
// does a little work after its call returns, so no call is in tail position.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/bytecodealliance/wasmtime-go/v37"
)

// mainWAT is shared by all scenarios except the late module.
// Keep identical across testdata/targets/{v39,v37,v3}/main.go.
const mainWAT = `
(module $wasmtrace_target
  (import "host" "callback" (func $host_callback))
  (import "host" "burn" (func $host_burn))

  (global $acc (mut i64) (i64.const 1))

  ;; ---- chain: run -> chain_a -> chain_b -> chain_c (burns) ----
  (func $run (export "run") (result i64)
    call $chain_a
    global.get $acc
    i64.add)

  (func $chain_a (result i64)
    call $chain_b
    i64.const 3
    i64.add)

  (func $chain_b (result i64)
    call $chain_c
    i64.const 5
    i64.add)

  (func $chain_c (result i64)
    (local $i i32) (local $x i64)
    (local.set $x (global.get $acc))
    (local.set $i (i32.const 35000000))
    (loop $spin
      (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005))
                             (i64.const 1442695040888963407)))
      (global.set $acc (i64.xor (global.get $acc) (i64.shr_u (local.get $x) (i64.const 29))))
      (br_if $spin (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))
    (global.get $acc))

  ;; ---- nested: outer -> outer_mid -> host.callback -> inner -> inner_leaf (burns) ----
  (func $outer (export "outer") (result i64)
    call $outer_mid
    global.get $acc
    i64.add)

  (func $outer_mid (result i64)
    call $host_callback
    global.get $acc
    i64.const 7
    i64.add)

  (func $inner (export "inner") (result i64)
    call $inner_leaf
    i64.const 11
    i64.add)

  (func $inner_leaf (result i64)
    (local $i i32) (local $x i64)
    (local.set $x (global.get $acc))
    (local.set $i (i32.const 35000000))
    (loop $spin
      (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005))
                             (i64.const 1442695040888963407)))
      (global.set $acc (i64.xor (global.get $acc) (i64.shr_u (local.get $x) (i64.const 29))))
      (br_if $spin (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))
    (global.get $acc))

  ;; ---- hostburn: hb_outer -> hb_mid -> host.burn (Go burns) ----
  (func $hb_outer (export "hb_outer") (result i64)
    call $hb_mid
    global.get $acc
    i64.add)

  (func $hb_mid (result i64)
    call $host_burn
    global.get $acc
    i64.const 13
    i64.add)

  ;; ---- recursion: rec_entry -> rec(100) -> rec(99) -> ... -> rec(0) (burns) ----
  (func $rec_entry (export "rec_entry") (result i64)
    (call $rec (i32.const 100))
    global.get $acc
    i64.add)

  (func $rec (param $n i32) (result i64)
    (local $i i32) (local $x i64)
    (if (result i64) (local.get $n)
      (then
        ;; work after the recursive call returns: not a tail call
        (i64.add
          (call $rec (i32.sub (local.get $n) (i32.const 1)))
          (i64.extend_i32_u (local.get $n))))
      (else
        (local.set $x (global.get $acc))
        (local.set $i (i32.const 35000000))
        (loop $spin
          (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005))
                                 (i64.const 1442695040888963407)))
          (global.set $acc (i64.xor (global.get $acc) (i64.shr_u (local.get $x) (i64.const 29))))
          (br_if $spin (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))
        (global.get $acc))))
)
`

// lateWAT is the second module compiled by the late scenario.
// Keep identical across testdata/targets/{v39,v37,v3}/main.go.
const lateWAT = `
(module $wasmtrace_late
  (global $acc (mut i64) (i64.const 1))

  ;; ---- late: late_run -> late_leaf (burns) ----
  (func $late_run (export "late_run") (result i64)
    call $late_leaf
    global.get $acc
    i64.add)

  (func $late_leaf (result i64)
    (local $i i32) (local $x i64)
    (local.set $x (global.get $acc))
    (local.set $i (i32.const 35000000))
    (loop $spin
      (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005))
                             (i64.const 1442695040888963407)))
      (global.set $acc (i64.xor (global.get $acc) (i64.shr_u (local.get $x) (i64.const 29))))
      (br_if $spin (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))
    (global.get $acc))
)
`

// hostBurnDuration is how long the Go side of host.burn spins per call.
const hostBurnDuration = 50 * time.Millisecond

var (
	engine     *wasmtime.Engine
	mainModule *wasmtime.Module
	sink       uint64        // written by burnGo so the loop is not dead code
	keepAlive  []interface{} // stores of the idle/late scenarios
)

func compile(wat string) *wasmtime.Module {
	wasm, err := wasmtime.Wat2Wasm(wat)
	if err != nil {
		log.Fatalf("wat2wasm: %v", err)
	}
	m, err := wasmtime.NewModule(engine, wasm)
	if err != nil {
		log.Fatalf("compile: %v", err)
	}
	return m
}

// burnGo busy-loops in Go for about d.
func burnGo(d time.Duration) {
	x := sink | 1
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for i := 0; i < 100000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	sink = x
}

// newLinker returns a linker providing the "host" imports of mainWAT.
func newLinker() *wasmtime.Linker {
	l := wasmtime.NewLinker(engine)
	// host.callback re-enters Wasm on the same store by calling export "inner".
	err := l.FuncWrap("host", "callback", func(c *wasmtime.Caller) *wasmtime.Trap {
		inner := c.GetExport("inner")
		if inner == nil || inner.Func() == nil {
			return wasmtime.NewTrap("export inner not found")
		}
		if _, err := inner.Func().Call(c); err != nil {
			return wasmtime.NewTrap("inner: " + err.Error())
		}
		return nil
	})
	if err != nil {
		log.Fatalf("define host.callback: %v", err)
	}
	if err := l.FuncWrap("host", "burn", func() { burnGo(hostBurnDuration) }); err != nil {
		log.Fatalf("define host.burn: %v", err)
	}
	return l
}

// instantiate creates a new store with an instance of module m.
func instantiate(m *wasmtime.Module) (*wasmtime.Store, *wasmtime.Instance) {
	store := wasmtime.NewStore(engine)
	inst, err := newLinker().Instantiate(store, m)
	if err != nil {
		log.Fatalf("instantiate: %v", err)
	}
	return store, inst
}

// loopExport calls export name of instance inst forever. started is marked
// done right before the first call.
func loopExport(store *wasmtime.Store, inst *wasmtime.Instance, name string, started *sync.WaitGroup) {
	f := inst.GetFunc(store, name)
	if f == nil {
		log.Fatalf("export %q not found", name)
	}
	if started != nil {
		started.Done()
	}
	for {
		if _, err := f.Call(store); err != nil {
			log.Fatalf("call %s: %v", name, err)
		}
	}
}

// spawn runs export name of a fresh instance of mainModule forever on its own
// locked OS thread with its own store.
func spawn(name string, started *sync.WaitGroup) {
	started.Add(1)
	go func() {
		runtime.LockOSThread()
		store, inst := instantiate(mainModule)
		loopExport(store, inst, name, started)
	}()
}

var scenarioExports = map[string]string{
	"chain":     "run",
	"nested":    "outer",
	"hostburn":  "hb_outer",
	"recursion": "rec_entry",
}

func ready() {
	fmt.Fprintln(os.Stdout, "ready")
	_ = os.Stdout.Sync()
}

func init() {
	// Keep the main goroutine on the process's main thread (TID == PID) so
	// that no Wasm ever runs there: every scenario's Wasm runs on a worker
	// thread locked by spawn or runLate.
	runtime.LockOSThread()
}

// runLate sleeps for delay without touching Wasm, then compiles lateWAT,
// prints "late-started" and calls late_run forever on a locked OS thread.
func runLate(delay time.Duration) {
	runtime.LockOSThread()
	time.Sleep(delay)
	lateModule := compile(lateWAT)
	store := wasmtime.NewStore(engine)
	inst, err := wasmtime.NewInstance(store, lateModule, nil)
	if err != nil {
		log.Fatalf("instantiate late: %v", err)
	}
	fmt.Fprintln(os.Stdout, "late-started")
	_ = os.Stdout.Sync()
	loopExport(store, inst, "late_run", nil)
}

func main() {
	scenario := flag.String("scenario", "all", "chain|nested|hostburn|recursion|threads|late|all|idle")
	threads := flag.Int("threads", 3, "number of OS threads for -scenario threads")
	late := flag.Duration("late", 2*time.Second, "delay before the late module starts (-scenario late)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("target: ")

	engine = wasmtime.NewEngine() // default config: no profiler, no perfmap
	mainModule = compile(mainWAT)

	var started sync.WaitGroup
	switch *scenario {
	case "chain", "nested", "hostburn", "recursion":
		spawn(scenarioExports[*scenario], &started)
	case "threads":
		if *threads < 1 {
			log.Fatalf("-threads must be >= 1")
		}
		for i := 0; i < *threads; i++ {
			spawn("run", &started)
		}
	case "all":
		for _, s := range []string{"chain", "nested", "hostburn", "recursion"} {
			spawn(scenarioExports[s], &started)
		}
	case "idle":
		store, inst := instantiate(mainModule) // instantiated, never called
		keepAlive = append(keepAlive, store, inst)
	case "late":
		// The main module is compiled and instantiated (but never called)
		// up front; the late module is compiled only after the delay.
		store, inst := instantiate(mainModule)
		keepAlive = append(keepAlive, store, inst)
		go runLate(*late)
	default:
		log.Fatalf("unknown -scenario %q", *scenario)
	}
	started.Wait()
	ready()
	for {
		time.Sleep(time.Hour)
	}
}
