package dump

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wasmtrace/wasmtrace/arch"
	"github.com/wasmtrace/wasmtrace/layout"
	"github.com/wasmtrace/wasmtrace/proc"
	"github.com/wasmtrace/wasmtrace/walker"
)

// TestMain doubles as the target: a process with busy and sleeping
// threads, no Wasm.
func TestMain(m *testing.M) {
	if os.Getenv("DUMP_TEST_CHILD") == "1" {
		for i := 0; i < 3; i++ {
			go func() {
				runtime.LockOSThread()
				for x := 0; ; x++ {
					_ = x * x
				}
			}()
		}
		time.Sleep(100 * time.Millisecond)
		fmt.Println("ready")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func startChild(t *testing.T) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DUMP_TEST_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("child said %q", line)
	}
	return cmd
}

// threadState returns a thread's State and TracerPid lines.
func threadState(pid, tid int) (state, tracer string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
	if err != nil {
		return "gone", ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "State:"); ok {
			state = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "TracerPid:"); ok {
			tracer = strings.TrimSpace(v)
		}
	}
	return state, tracer
}

// Take stops every thread briefly, reads its registers, and leaves none
// stopped or traced.
func TestTake(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("ptrace of another process needs root here, and CI=true forbids skipping")
		}
		t.Skip("needs root")
	}
	child := startChild(t)
	pid := child.Process.Pid
	l := &layout.Layout{
		Generation: layout.EntryFP, TLSOffset: -0x68, TLSMask: ^uint64(1),
		CTSStore: 0x10, CTSPrev: 0xa8, CTSOld: 0xb0,
		SavedExitPC: 0x20, SavedExitFP: 0x28, SavedEntry: 0x30,
		StoreExitFP: 0x28, StoreExitPC: 0x30, StoreEntry: 0x40,
	}
	for round := 0; round < 3; round++ {
		threads, err := Take(pid, Options{Layout: l, Arch: arch.AMD64, InWasm: func(uint64) bool { return false }})
		if err != nil {
			t.Fatal(err)
		}
		if len(threads) < 4 {
			t.Fatalf("%d threads, want at least 4", len(threads))
		}
		var longest, longestHeld time.Duration
		for _, th := range threads {
			if th.Err != nil {
				t.Errorf("thread %d: %v", th.TID, th.Err)
				continue
			}
			if th.Regs.PC == 0 || th.Regs.SP == 0 || th.Regs.ThreadPointer == 0 {
				t.Errorf("thread %d: registers %+v", th.TID, th.Regs)
			}
			if th.Stack.Where != walker.NoWasm || len(th.Stack.PCs) != 0 {
				t.Errorf("thread %d: Wasm found in a Go program: %+v", th.TID, th.Stack)
			}
			if th.Pause <= 0 || th.Held <= 0 || th.Held > th.Pause || th.Pause > time.Second {
				t.Errorf("thread %d: paused %v, held %v", th.TID, th.Pause, th.Held)
			}
			longest = max(longest, th.Pause)
			longestHeld = max(longestHeld, th.Held)
		}
		t.Logf("round %d: %d threads, longest pause %v, longest held %v", round, len(threads), longest, longestHeld)
		tids, _ := proc.Threads(pid)
		for _, tid := range tids {
			state, tracer := threadState(pid, tid)
			if tracer != "0" || strings.HasPrefix(state, "t") || strings.HasPrefix(state, "T") {
				t.Errorf("thread %d left %s, tracer %s", tid, state, tracer)
			}
		}
	}
}

// A process that is gone is an error; threads that exit are reported.
func TestTakeGone(t *testing.T) {
	if _, err := Take(999999999, Options{}); err == nil {
		t.Fatal("no error for a missing process")
	}
}
