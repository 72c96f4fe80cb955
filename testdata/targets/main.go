// Command target-vN is a Wasmtime embedder used as a profiling target by the
// wasmtrace tests. It runs Wasm with known, fixed call chains in endless loops.
//
// This one file is the program for every version: each of
// testdata/targets/{v39,v37,v3} is a module (all named wasmtrace.test/target)
// that links main.go here and has a package wasmtime which re-exports, from
// its wasmtime-go major version, the small API subset used here (the same in
// v3, v37 and v39). build.sh builds a version's module.
//
// Wasmtime is used with its default Config: no profiling strategy, no perfmap,
// no jitdump. Function names come from the WAT `$names` (the name section).
//
// Command line:
//
//	-scenario NAME   chain|nested|hostburn|recursion|threads|late|all|idle|
//	                 precompiled|deserialized|churn, or one of the benchmark
//	                 scenarios deep|modules (default all)
//	-cwasm PATH      precompiled: where the serialized module is written
//	                 (default: a new temporary directory, removed on
//	                 SIGTERM/SIGINT)
//	-threads N       number of OS threads for the threads scenario (default 3)
//	-late DURATION   delay before the late module starts (default 2s)
//	-depth N         deep: exact number of Wasm frames on the stack (default 30)
//	-iters N         deep, modules: burn-loop iterations per Wasm call
//	                 (default 35000000, about 50 ms)
//	-modules N       modules: number of modules compiled (default 100)
//	-life DURATION   churn: how long each module lives (default 40ms)
//	-churn-iters N   churn: burn-loop iterations per call (default 20000)
//	-report DURATION deep, modules: print a progress line every DURATION
//	                 (default 0: never)
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
//	precompiled  run;chain_a;chain_b;chain_c  from a copy of the main module
//	           loaded with NewModuleDeserializeFile: the main module is
//	           serialized to the -cwasm file at start-up, which Wasmtime then
//	           maps (file-backed code); the compiled main module stays
//	           loaded but is never called
//	deserialized run;chain_a;chain_b;chain_c  likewise from a copy loaded
//	           with NewModuleDeserialize from the serialized bytes (copied
//	           into anonymous memory)
//
// Only the leaf functions (chain_c, inner_leaf, rec at n==0, late_leaf, and
// the Go function behind host.burn) burn CPU; every intermediate function
// does a little work after its call returns, so no call is in tail position.
//
// Benchmark scenarios (bench/ uses them; they compile benchWAT or
// moduleWAT, never add to the scenarios above):
//
//	deep       deep x N  (N = -depth): one thread calls deep(N-1, iters);
//	           deep(n) calls deep(n-1) for n > 0, deep(0) burns iters
//	           iterations, so while it burns exactly N deep frames are on
//	           the stack.
//	modules    mod_work  -modules N modules (each named wasmtrace_mod_K,
//	           K = 0..N-1) are compiled and instantiated before "ready";
//	           one thread calls their export "work" round-robin.
//	churn      churn_entry_K;churn_mid_K;churn_leaf_K (K even) or
//	           churn_entry_K;churn_leaf_K (K odd): two threads each
//	           compile module K, call it for -life, free it (Close) and
//	           go on with a new K: 2/life modules compiled and freed a
//	           second (50 by default). Prints "churn compiled=N freed=M"
//	           every second.
//
// With -report D, the thread running Wasm prints after "ready", between two
// calls, at most every D:
//
//	progress calls=C wall_ns=W cpu_ns=T
//
// C is the number of Wasm calls completed since the first, W the wall time
// since the first call began (CLOCK_MONOTONIC), T that thread's CPU time
// over the same span (CLOCK_THREAD_CPUTIME_ID): throughput per wall second
// and per CPU second of the Wasm thread.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"wasmtrace.test/target/wasmtime"
)

// mainWAT is shared by all scenarios except the late module.
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

// benchWAT is compiled only by the deep scenario.
const benchWAT = `
(module $wasmtrace_bench
  (global $acc (mut i64) (i64.const 1))

  ;; ---- deep: deep(n) -> deep(n-1) -> ... -> deep(0) (burns $iters) ----
  (func $deep (export "deep") (param $n i32) (param $iters i32) (result i64)
    (local $i i32) (local $x i64)
    (if (result i64) (local.get $n)
      (then
        ;; work after the recursive call returns: not a tail call
        (i64.add
          (call $deep (i32.sub (local.get $n) (i32.const 1)) (local.get $iters))
          (i64.extend_i32_u (local.get $n))))
      (else
        (local.set $x (global.get $acc))
        (local.set $i (local.get $iters))
        (loop $spin
          (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005))
                                 (i64.const 1442695040888963407)))
          (global.set $acc (i64.xor (global.get $acc) (i64.shr_u (local.get $x) (i64.const 29))))
          (br_if $spin (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))
        (global.get $acc))))
)
`

// moduleWAT is the template of the modules compiled by the modules
// scenario: %d is the module's number K, which makes each module (its
// name and its constant) different.
const moduleWAT = `
(module $wasmtrace_mod_%d
  (global $acc (mut i64) (i64.const %d))

  ;; ---- modules: mod_work (burns $iters) ----
  (func $mod_work (export "work") (param $iters i32) (result i64)
    (local $i i32) (local $x i64)
    (local.set $x (global.get $acc))
    (local.set $i (local.get $iters))
    (loop $spin
      (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005))
                             (i64.const 1442695040888963407)))
      (global.set $acc (i64.xor (global.get $acc) (i64.shr_u (local.get $x) (i64.const 29))))
      (br_if $spin (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))
    (global.get $acc))
)
`

// churnWAT is the template of the churn scenario's modules: %[1]d is the
// module's number K, in every name, so a sample named with a module that
// was freed shows as a wrong K. Even and odd modules differ in shape (odd
// ones have no churn_mid_K), and share the size of their mapping, so a
// module's code is often where the one before it was, in an identical maps
// line: a table of the wrong module would name the other shape's PCs.
const churnWAT = `
(module $wasmtrace_churn_%[1]d
  (global $acc (mut i64) (i64.const %[1]d))
  (func $churn_entry_%[1]d (export "entry") (param $iters i32) (result i64)
    %[2]s)
  (func $churn_mid_%[1]d (param $iters i32) (result i64)
    (call $churn_leaf_%[1]d (local.get $iters)))
  (func $churn_leaf_%[1]d (param $iters i32) (result i64)
    (local $i i32) (local $x i64)
    (local.set $x (global.get $acc))
    (local.set $i (local.get $iters))
    (loop $spin
      (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005))
                             (i64.const 1442695040888963407)))
      (global.set $acc (i64.xor (global.get $acc) (i64.shr_u (local.get $x) (i64.const 29))))
      (br_if $spin (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))
    (global.get $acc))
)
`

// churnModule returns module K's text.
func churnModule(k int) string {
	call := fmt.Sprintf("(call $churn_mid_%d (local.get $iters))", k)
	if k%2 == 1 {
		call = fmt.Sprintf("(call $churn_leaf_%d (local.get $iters))", k)
	}
	return fmt.Sprintf(churnWAT, k, call)
}

// spawnChurn runs the churn scenario on threads threads: each compiles a
// module, calls its entry for life, frees it and compiles the next, so
// that threads/life modules are compiled and freed each second. Module
// numbers are unique across threads. Every second it prints "churn
// compiled=N freed=M".
func spawnChurn(threads int, life time.Duration, iters int, started *sync.WaitGroup) {
	var mu sync.Mutex
	next, compiled, freed := 0, 0, 0
	for t := 0; t < threads; t++ {
		started.Add(1)
		go func() {
			runtime.LockOSThread()
			first := true
			for {
				mu.Lock()
				k := next
				next++
				mu.Unlock()
				m := compile(churnModule(k))
				store := wasmtime.NewStore(engine)
				inst, err := wasmtime.NewInstance(store, m, nil)
				if err != nil {
					log.Fatalf("instantiate churn module %d: %v", k, err)
				}
				f := inst.GetFunc(store, "entry")
				if f == nil {
					log.Fatalf("churn module %d: export entry not found", k)
				}
				mu.Lock()
				compiled++
				mu.Unlock()
				if first {
					started.Done()
					first = false
				}
				for end := time.Now().Add(life); time.Now().Before(end); {
					mustCall(store, f, "entry", int32(iters))
				}
				wasmtime.Free(store, m)
				mu.Lock()
				freed++
				mu.Unlock()
			}
		}()
	}
	go func() {
		for range time.Tick(time.Second) {
			mu.Lock()
			fmt.Fprintf(os.Stdout, "churn compiled=%d freed=%d\n", compiled, freed)
			mu.Unlock()
		}
	}()
}

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

// reload serializes mainModule and loads it back: from a .cwasm file at
// path that Wasmtime maps (path != ""), or from the bytes.
func reload(path string) *wasmtime.Module {
	b, err := mainModule.Serialize()
	if err != nil {
		log.Fatalf("serialize: %v", err)
	}
	if path == "" {
		m, err := wasmtime.NewModuleDeserialize(engine, b)
		if err != nil {
			log.Fatalf("deserialize: %v", err)
		}
		return m
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		log.Fatalf("write %s: %v", path, err)
	}
	m, err := wasmtime.NewModuleDeserializeFile(engine, path)
	if err != nil {
		log.Fatalf("deserialize %s: %v", path, err)
	}
	return m
}

// cwasmPath returns where the precompiled scenario writes its module:
// flagPath, or a file in a new temporary directory that is removed when
// the program is ended by SIGTERM or SIGINT.
func cwasmPath(flagPath string) string {
	if flagPath != "" {
		return flagPath
	}
	dir, err := os.MkdirTemp("", "wasmtrace-target-")
	if err != nil {
		log.Fatalf("temporary directory: %v", err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sig
		os.RemoveAll(dir)
		signal.Reset()
		syscall.Kill(os.Getpid(), s.(syscall.Signal))
	}()
	return filepath.Join(dir, "wasmtrace_target.cwasm")
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
func spawn(name string, started *sync.WaitGroup) { spawnModule(mainModule, name, started) }

// spawnModule is spawn for an instance of m.
func spawnModule(m *wasmtime.Module, name string, started *sync.WaitGroup) {
	started.Add(1)
	go func() {
		runtime.LockOSThread()
		store, inst := instantiate(m)
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

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	const clockThreadCPUTimeID = 3 // CLOCK_THREAD_CPUTIME_ID
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		log.Fatalf("clock_gettime: %v", e)
	}
	return time.Duration(ts.Nano())
}

// benchLoop runs call forever on the current (locked) OS thread. With
// report > 0 it prints a progress line, between two calls, at most every
// report (see the package comment).
func benchLoop(call func(), report time.Duration, started *sync.WaitGroup) {
	started.Done()
	start, startCPU := time.Now(), threadCPU()
	next := start.Add(report)
	for calls := 1; ; calls++ {
		call()
		if report <= 0 {
			continue
		}
		if now := time.Now(); !now.Before(next) {
			fmt.Fprintf(os.Stdout, "progress calls=%d wall_ns=%d cpu_ns=%d\n",
				calls, now.Sub(start).Nanoseconds(), (threadCPU() - startCPU).Nanoseconds())
			next = now.Add(report)
		}
	}
}

// mustCall calls f with args and ends the program on a trap.
func mustCall(store *wasmtime.Store, f *wasmtime.Func, name string, args ...interface{}) {
	if _, err := f.Call(store, args...); err != nil {
		log.Fatalf("call %s: %v", name, err)
	}
}

// spawnDeep runs the deep scenario: deep(depth-1, iters) forever.
func spawnDeep(depth, iters int, report time.Duration, started *sync.WaitGroup) {
	m := compile(benchWAT)
	started.Add(1)
	go func() {
		runtime.LockOSThread()
		store := wasmtime.NewStore(engine)
		inst, err := wasmtime.NewInstance(store, m, nil)
		if err != nil {
			log.Fatalf("instantiate bench: %v", err)
		}
		f := inst.GetFunc(store, "deep")
		if f == nil {
			log.Fatalf("export deep not found")
		}
		n, it := int32(depth-1), int32(iters)
		benchLoop(func() { mustCall(store, f, "deep", n, it) }, report, started)
	}()
}

// spawnModules runs the modules scenario: n modules compiled and
// instantiated up front, then their "work" called round-robin forever.
func spawnModules(n, iters int, report time.Duration, started *sync.WaitGroup) {
	mods := make([]*wasmtime.Module, n)
	for k := range mods {
		mods[k] = compile(fmt.Sprintf(moduleWAT, k, k+1))
	}
	started.Add(1)
	go func() {
		runtime.LockOSThread()
		store := wasmtime.NewStore(engine)
		funcs := make([]*wasmtime.Func, n)
		for k, m := range mods {
			inst, err := wasmtime.NewInstance(store, m, nil)
			if err != nil {
				log.Fatalf("instantiate module %d: %v", k, err)
			}
			if funcs[k] = inst.GetFunc(store, "work"); funcs[k] == nil {
				log.Fatalf("module %d: export work not found", k)
			}
		}
		it, k := int32(iters), 0
		benchLoop(func() {
			mustCall(store, funcs[k], "work", it)
			k = (k + 1) % n
		}, report, started)
	}()
}

func main() {
	scenario := flag.String("scenario", "all", "chain|nested|hostburn|recursion|threads|late|all|idle|precompiled|deserialized|deep|modules|churn")
	cwasm := flag.String("cwasm", "", "where -scenario precompiled writes the serialized module (default: a new temporary directory)")
	threads := flag.Int("threads", 3, "number of OS threads for -scenario threads")
	late := flag.Duration("late", 2*time.Second, "delay before the late module starts (-scenario late)")
	depth := flag.Int("depth", 30, "exact number of Wasm frames on the stack (-scenario deep)")
	iters := flag.Int("iters", 35000000, "burn-loop iterations per Wasm call (-scenario deep, modules)")
	nmodules := flag.Int("modules", 100, "number of modules compiled (-scenario modules)")
	life := flag.Duration("life", 40*time.Millisecond, "how long each module lives (-scenario churn, on 2 threads: 2/life modules a second)")
	churnIters := flag.Int("churn-iters", 20000, "burn-loop iterations per call (-scenario churn)")
	report := flag.Duration("report", 0, "print a progress line every `DURATION` (-scenario deep, modules; 0: never)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("target: ")
	if *depth < 1 || *depth > 10000 {
		log.Fatalf("-depth must be in 1..10000")
	}
	if *iters < 1 || *iters > 1<<31-1 {
		log.Fatalf("-iters must be in 1..2147483647")
	}
	if *nmodules < 1 || *nmodules > 10000 {
		log.Fatalf("-modules must be in 1..10000")
	}

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
	case "precompiled":
		spawnModule(reload(cwasmPath(*cwasm)), "run", &started)
	case "deserialized":
		spawnModule(reload(""), "run", &started)
	case "deep":
		spawnDeep(*depth, *iters, *report, &started)
	case "modules":
		spawnModules(*nmodules, *iters, *report, &started)
	case "churn":
		spawnChurn(2, *life, *churnIters, &started)
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
