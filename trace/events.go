package trace

import (
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/wasmtrace/wasmtrace/loader"
)

// EventSpec is one EVENT argument of `wasmtrace trace`, parsed.
type EventSpec struct {
	Kind    loader.Event
	Syscall int           // EventSyscall: the x86-64 system call number
	Name    string        // EventSyscall: its name
	Uprobe  loader.Uprobe // EventUprobe
}

func (e EventSpec) String() string {
	switch e.Kind {
	case loader.EventSyscall:
		return "syscall:" + e.Name
	case loader.EventUprobe:
		return "uprobe:" + e.Uprobe.Binary + ":" + e.Uprobe.Symbol
	}
	return e.Kind.String()
}

// EventHelp describes the EVENT arguments.
const EventHelp = `Events:
  trap                  a Wasm trap (SIGSEGV, SIGILL, SIGFPE or SIGBUS delivered to the
                        process): the faulting Wasm function on top
  syscall:NAME          entry of the system call NAME (x86-64 names: write, openat, ...)
  offcpu                a thread back on CPU after blocking with Wasm on its stack,
                        with the time it was off CPU (at least --min-block)
  uprobe:BINARY:SYMBOL  a call of SYMBOL in the executable or library BINARY`

// ParseEvents parses EVENT arguments. Each event is given once at most.
func ParseEvents(args []string) ([]EventSpec, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("no event given\n%s", EventHelp)
	}
	var out []EventSpec
	seen := map[string]bool{}
	for _, a := range args {
		var e EventSpec
		kind, rest, hasArg := strings.Cut(a, ":")
		switch {
		case kind == "trap" && !hasArg:
			e.Kind = loader.EventTrap
		case kind == "offcpu" && !hasArg:
			e.Kind = loader.EventOffCPU
		case kind == "syscall" && hasArg:
			nr, ok := syscallNumbers[rest]
			if !ok {
				return nil, fmt.Errorf("event %q: unknown system call %q (x86-64 names, e.g. syscall:write)", a, rest)
			}
			e.Kind, e.Syscall, e.Name = loader.EventSyscall, nr, rest
		case kind == "uprobe" && hasArg:
			i := strings.LastIndexByte(rest, ':')
			if i <= 0 || i == len(rest)-1 {
				return nil, fmt.Errorf("event %q: want uprobe:BINARY:SYMBOL", a)
			}
			e.Kind, e.Uprobe = loader.EventUprobe, loader.Uprobe{Binary: rest[:i], Symbol: rest[i+1:]}
		default:
			return nil, fmt.Errorf("unknown event %q\n%s", a, EventHelp)
		}
		if seen[e.String()] {
			return nil, fmt.Errorf("event %q given twice", a)
		}
		seen[e.String()] = true
		out = append(out, e)
	}
	return out, nil
}

// SyscallNames lists the system call names syscall:NAME knows.
func SyscallNames() []string {
	names := make([]string, 0, len(syscallNumbers))
	for n := range syscallNumbers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// syscallNames is syscallNumbers reversed (x86-64 has no aliases).
var syscallNames = func() map[int]string {
	m := make(map[int]string, len(syscallNumbers))
	for n, v := range syscallNumbers {
		m[v] = n
	}
	return m
}()

func syscallName(nr int) string {
	if n, ok := syscallNames[nr]; ok {
		return n
	}
	return fmt.Sprint(nr)
}

var signalNames = map[uint64]string{
	uint64(unix.SIGILL): "SIGILL", uint64(unix.SIGBUS): "SIGBUS",
	uint64(unix.SIGFPE): "SIGFPE", uint64(unix.SIGSEGV): "SIGSEGV",
}

// siCodes names the si_code values of the trap signals (asm-generic/siginfo.h).
var siCodes = map[uint64]map[int64]string{
	uint64(unix.SIGILL):  {1: "ILL_ILLOPC", 2: "ILL_ILLOPN", 3: "ILL_ILLADR", 4: "ILL_ILLTRP", 5: "ILL_PRVOPC", 6: "ILL_PRVREG", 7: "ILL_COPROC", 8: "ILL_BADSTK"},
	uint64(unix.SIGFPE):  {1: "FPE_INTDIV", 2: "FPE_INTOVF", 3: "FPE_FLTDIV", 4: "FPE_FLTOVF", 5: "FPE_FLTUND", 6: "FPE_FLTRES", 7: "FPE_FLTINV", 8: "FPE_FLTSUB"},
	uint64(unix.SIGSEGV): {1: "SEGV_MAPERR", 2: "SEGV_ACCERR", 3: "SEGV_BNDERR", 4: "SEGV_PKUERR"},
	uint64(unix.SIGBUS):  {1: "BUS_ADRALN", 2: "BUS_ADRERR", 3: "BUS_OBJERR"},
}
