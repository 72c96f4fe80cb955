// Command async-vN is a Wasmtime embedder that runs Wasm on Wasmtime's
// async fibers, a profiling target for the wasmtrace tests (see README.md
// for the scenarios and their exact expected stacks).
//
// This one program is every version's: each of testdata/async/{v39,v37} is a
// module (wasmtrace.test/async) that links main.go, async.c and async.h here
// and imports its wasmtime-go version only for the link flags of its
// libwasmtime.a (link.go). All Wasmtime work is in async.c, written against
// Wasmtime's C API (wasmtime/async.h), whose headers build.sh puts on the
// include path (CGO_CFLAGS). The async API is the same in v37 and v39.
//
// Command line:
//
//	-scenario NAME   interleave|nested|threads|trap|all (default all)
//	-pooling         use the pooling instance allocator (fiber stacks from
//	                 its stack pool) instead of the on-demand one
//	-threads N       OS threads of the threads scenario (default 2)
//	-stores N        stores per interleave thread (default 2)
//
// Once the Wasm work has started the program prints the single line
// "ready" to stdout, then runs until killed. Each Wasm-running scenario
// runs on its own goroutine locked to an OS thread; the process's main
// thread (TID == PID) never runs Wasm.
package main

/*
#include "async.h"
*/
import "C"

import (
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

func init() {
	// Keep the main goroutine on the main thread, so that no Wasm runs there.
	runtime.LockOSThread()
}

// spawn runs setup and then run on a new goroutine locked to its own OS
// thread; started is done between the two (right before the first poll).
func spawn(started *sync.WaitGroup, setup func() unsafe.Pointer, run func(unsafe.Pointer)) {
	started.Add(1)
	go func() {
		runtime.LockOSThread()
		h := setup()
		started.Done()
		run(h)
	}()
}

func interleave(started *sync.WaitGroup, stores int) {
	spawn(started,
		func() unsafe.Pointer { return C.wt_setup_interleave(C.int(stores)) },
		func(h unsafe.Pointer) { C.wt_run_interleave(h) })
}

func main() {
	scenario := flag.String("scenario", "all", "interleave|nested|threads|trap|all")
	pooling := flag.Bool("pooling", false, "use the pooling instance allocator")
	threads := flag.Int("threads", 2, "OS threads of -scenario threads")
	stores := flag.Int("stores", 2, "stores per interleave thread")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("async: ")
	if *threads < 1 || *threads > 256 {
		log.Fatalf("-threads must be in 1..256")
	}
	if *stores < 1 || *stores > 256 {
		log.Fatalf("-stores must be in 1..256")
	}
	interleaveThreads := 0
	switch *scenario {
	case "interleave", "all":
		interleaveThreads = 1
	case "threads":
		interleaveThreads = *threads
	case "nested", "trap":
	default:
		log.Fatalf("unknown -scenario %q", *scenario)
	}
	// The pool's size: every interleave store, the nested and trap stores,
	// and room for the nested fiber, with a margin.
	slots := interleaveThreads**stores + 16
	C.wt_init(cBool(*pooling), C.int(*stores), C.int(slots))

	var started sync.WaitGroup
	for i := 0; i < interleaveThreads; i++ {
		interleave(&started, *stores)
	}
	if *scenario == "nested" || *scenario == "all" {
		spawn(&started,
			func() unsafe.Pointer { return C.wt_setup_nested() },
			func(h unsafe.Pointer) { C.wt_run_nested(h) })
	}
	if *scenario == "trap" {
		spawn(&started,
			func() unsafe.Pointer { return C.wt_setup_trap() },
			func(h unsafe.Pointer) { C.wt_run_trap(h) })
	}
	started.Wait()
	fmt.Fprintln(os.Stdout, "ready")
	_ = os.Stdout.Sync()
	for {
		time.Sleep(time.Hour)
	}
}

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
