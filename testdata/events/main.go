// Command events is a Wasmtime embedder for the tests of `wasmtrace trace`:
// it makes Wasm trap, write to a file through a host import and block in a
// host import, a known number of times each, with known Wasm stacks.
//
// It prints "ready" once its module is instantiated, then waits for a line
// on stdin (so that a tracer can attach first), runs the scenario and prints
// one line of counts:
//
//	done traps=T writes=W sleeps=S
//
// then stays alive until stdin is closed or it is killed.
//
// Scenarios (-scenario, default all; all runs them one after the other on
// one OS thread):
//
//	trap   -n times, alternately: trap_entry;trap_mid;trap_leaf, which
//	       executes unreachable (SIGILL), and oob_entry;oob_leaf, which loads
//	       beyond its memory (SIGSEGV); each trap is caught in Go and counted.
//	write  -n times: writer;write_mid;[host]: the host import host.write
//	       calls os.File.Write on a temporary file (one write system call).
//	block  -n times: sleeper;sleep_mid;[host]: the host import host.sleep
//	       sleeps -sleep (default 20ms) in nanosleep.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/bytecodealliance/wasmtime-go/v39"
)

const eventsWAT = `
(module $wasmtrace_events
  (import "host" "write" (func $host_write))
  (import "host" "sleep" (func $host_sleep))
  (global $acc (mut i32) (i32.const 1))

  ;; ---- trap: trap_entry -> trap_mid -> trap_leaf (unreachable) ----
  (func $trap_entry (export "trap_entry")
    call $trap_mid
    (global.set $acc (i32.add (global.get $acc) (i32.const 1))))
  (func $trap_mid
    call $trap_leaf
    (global.set $acc (i32.add (global.get $acc) (i32.const 2))))
  (func $trap_leaf
    (global.set $acc (i32.add (global.get $acc) (i32.const 3)))
    unreachable)

  ;; ---- trap: oob_entry -> oob_leaf (load beyond the one page of memory) ----
  (memory 1)
  (func $oob_entry (export "oob_entry")
    (global.set $acc (i32.add (global.get $acc) (call $oob_leaf (i32.const -16)))))
  (func $oob_leaf (param $addr i32) (result i32)
    (i32.load (local.get $addr)))

  ;; ---- write: writer -> write_mid -> host.write ----
  (func $writer (export "writer")
    call $write_mid
    (global.set $acc (i32.add (global.get $acc) (i32.const 4))))
  (func $write_mid
    call $host_write
    (global.set $acc (i32.add (global.get $acc) (i32.const 5))))

  ;; ---- block: sleeper -> sleep_mid -> host.sleep ----
  (func $sleeper (export "sleeper")
    call $sleep_mid
    (global.set $acc (i32.add (global.get $acc) (i32.const 6))))
  (func $sleep_mid
    call $host_sleep
    (global.set $acc (i32.add (global.get $acc) (i32.const 7))))
)
`

func main() {
	scenario := flag.String("scenario", "all", "trap, write, block or all")
	n := flag.Int("n", 10, "times each scenario runs")
	sleep := flag.Duration("sleep", 20*time.Millisecond, "how long host.sleep blocks")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("events: ")

	// Everything runs on this goroutine's OS thread.
	runtime.LockOSThread()

	f, err := os.CreateTemp("", "wasmtrace-events")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()

	engine := wasmtime.NewEngine()
	wasm, err := wasmtime.Wat2Wasm(eventsWAT)
	if err != nil {
		log.Fatal(err)
	}
	module, err := wasmtime.NewModule(engine, wasm)
	if err != nil {
		log.Fatal(err)
	}
	store := wasmtime.NewStore(engine)
	linker := wasmtime.NewLinker(engine)
	writes, sleeps := 0, 0
	if err := linker.FuncWrap("host", "write", func() {
		if _, err := f.Write([]byte("wasmtrace\n")); err != nil {
			log.Fatal(err)
		}
		writes++
	}); err != nil {
		log.Fatal(err)
	}
	if err := linker.FuncWrap("host", "sleep", func() {
		ts := syscall.NsecToTimespec(sleep.Nanoseconds())
		for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
		}
		sleeps++
	}); err != nil {
		log.Fatal(err)
	}
	inst, err := linker.Instantiate(store, module)
	if err != nil {
		log.Fatal(err)
	}
	call := func(name string) error {
		_, err := inst.GetFunc(store, name).Call(store)
		return err
	}

	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	in.Scan() // the go-ahead

	traps := 0
	run := func(s string) {
		for i := 0; i < *n; i++ {
			switch s {
			case "trap":
				name := "trap_entry"
				if i%2 == 1 {
					name = "oob_entry"
				}
				if err := call(name); err != nil {
					traps++
				} else {
					log.Fatalf("%s returned without a trap", name)
				}
				time.Sleep(time.Millisecond)
			case "write":
				if err := call("writer"); err != nil {
					log.Fatal(err)
				}
			case "block":
				if err := call("sleeper"); err != nil {
					log.Fatal(err)
				}
			default:
				log.Fatalf("unknown scenario %q", s)
			}
		}
	}
	if *scenario == "all" {
		for _, s := range []string{"trap", "write", "block"} {
			run(s)
		}
	} else {
		run(*scenario)
	}
	fmt.Printf("done traps=%d writes=%d sleeps=%d\n", traps, writes, sleeps)
	for in.Scan() {
	}
}
