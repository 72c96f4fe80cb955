package trace

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/wasmtrace/wasmtrace/loader"
)

func TestParseEvents(t *testing.T) {
	got, err := ParseEvents([]string{"trap", "syscall:write", "syscall:openat", "offcpu", "uprobe:/usr/lib/libc.so.6:malloc"})
	if err != nil {
		t.Fatal(err)
	}
	want := []EventSpec{
		{Kind: loader.EventTrap},
		{Kind: loader.EventSyscall, Syscall: unix.SYS_WRITE, Name: "write"},
		{Kind: loader.EventSyscall, Syscall: unix.SYS_OPENAT, Name: "openat"},
		{Kind: loader.EventOffCPU},
		{Kind: loader.EventUprobe, Uprobe: loader.Uprobe{Binary: "/usr/lib/libc.so.6", Symbol: "malloc"}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if got[4].String() != "uprobe:/usr/lib/libc.so.6:malloc" || got[1].String() != "syscall:write" {
		t.Errorf("names %s %s", got[4], got[1])
	}
	for arg, msg := range map[string]string{
		"":                 "no event given",
		"trapp":            `unknown event "trapp"`,
		"trap:x":           `unknown event "trap:x"`,
		"syscall":          `unknown event "syscall"`,
		"syscall:frob":     `unknown system call "frob"`,
		"uprobe:/bin/ls":   "want uprobe:BINARY:SYMBOL",
		"uprobe:/bin/ls:":  "want uprobe:BINARY:SYMBOL",
		"offcpu offcpu":    "given twice",
		"syscall:write x":  `unknown event "x"`,
		"syscall:openat t": `unknown event "t"`,
	} {
		_, err := ParseEvents(strings.Fields(arg))
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseEvents(%q) = %v, want %q", arg, err, msg)
		}
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		s          loader.Sample
		name, args string
	}{
		{loader.Sample{Event: loader.EventTrap, UserPC: 0x1000, Args: [3]uint64{uint64(unix.SIGSEGV), 1, 0xfff0}}, "trap", "SIGSEGV SEGV_MAPERR pc=0x1000 addr=0xfff0"},
		{loader.Sample{Event: loader.EventTrap, Args: [3]uint64{uint64(unix.SIGILL), 99, 0}}, "trap", "SIGILL code 99 pc=0x0 addr=0x0"},
		{loader.Sample{Event: loader.EventSyscall, Args: [3]uint64{unix.SYS_WRITE, 5, 10}}, "syscall:write", "arg0=5 arg2=10"},
		{loader.Sample{Event: loader.EventOffCPU, Args: [3]uint64{20_059_123}}, "offcpu", "blocked=20.059ms"},
		{loader.Sample{Event: loader.EventUprobe, Args: [3]uint64{1}}, "uprobe:/b:s", ""},
	} {
		name, args := describe(tc.s, map[uint64]string{1: "uprobe:/b:s"})
		if name != tc.name || args != tc.args {
			t.Errorf("describe(%+v) = %q %q, want %q %q", tc.s, name, args, tc.name, tc.args)
		}
	}
}
