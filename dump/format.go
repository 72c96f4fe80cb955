package dump

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/wasmtrace/wasmtrace/walker"
)

// Frame is one line of a thread's stack: a Wasm function, or host code
// (Host: a host function Wasm called, or the host frames between two
// activations).
type Frame struct {
	PC   uint64 // 0 for host code
	Name string
	Host bool
}

// Namer names the code at pc; host says it is host code (a trampoline)
// rather than a Wasm function. ok is false when nothing is known of pc.
type Namer func(pc uint64) (name string, host, ok bool)

// Frames renders a walk, innermost first, with one host line at the top
// when the thread was in host code called from Wasm and between
// activations, and a [fiber] line below the activations that ran on a
// fiber stack.
func Frames(r walker.Result, name Namer) []Frame {
	var out []Frame
	host := func() {
		if len(out) == 0 || out[len(out)-1].Name != "[host]" {
			out = append(out, Frame{Name: "[host]", Host: true})
		}
	}
	fiber := func() { out = append(out, Frame{Name: "[fiber]", Host: true}) }
	if r.Where == walker.InHost && len(r.PCs) > 0 {
		host()
	}
	act := 0
	for i, pc := range r.PCs {
		for act+1 < len(r.ActStart) && r.ActStart[act+1] <= i {
			if r.FiberRoot(act) {
				fiber()
			}
			act++
			host()
		}
		lookup := pc
		if i > 0 || r.Where != walker.InWasm {
			lookup = pc - 1 // a return address: the call is just before
		}
		n, isHost, ok := name(lookup)
		switch {
		case !ok:
			out = append(out, Frame{PC: pc, Name: fmt.Sprintf("%#x", pc)})
		case isHost:
			host()
		default:
			out = append(out, Frame{PC: pc, Name: n})
		}
	}
	if r.FiberRoot(act) {
		fiber()
	}
	return out
}

// State describes where a thread was, in words.
func State(th Thread) string {
	if th.Err != nil {
		if th.Err == ErrExited {
			return "exited during the dump"
		}
		return "stack not taken: " + th.Err.Error()
	}
	r := th.Stack
	var s string
	switch {
	case r.Where == walker.NoWasm || (len(r.PCs) == 0 && r.Stop == walker.StopOK):
		s = "(no Wasm)"
	case r.Where == walker.InWasm:
		s = "in Wasm"
	default:
		s = "in host code called from Wasm"
	}
	// Its innermost activation on a fiber. (A thread whose SP is off its
	// own stack without one, as in a signal handler on its alternate
	// stack, is not on a fiber.)
	if r.Where != walker.NoWasm && len(r.ActStart) > 0 && r.OnFiberAct(0) {
		s += ", on a fiber"
	}
	if r.Stop != walker.StopOK {
		s += ", walk stopped: " + r.Stop.String()
	}
	return s
}

// Write prints each thread's stack, innermost frame first. With verbose,
// each thread's line says how long it was stopped (Thread.Pause and
// Thread.Held) and how many reads of its memory the walk made.
func Write(w io.Writer, threads []Thread, name Namer, verbose bool) error {
	var b strings.Builder
	for _, th := range threads {
		fmt.Fprintf(&b, "thread %d", th.TID)
		if th.Name != "" {
			fmt.Fprintf(&b, " (%s)", th.Name)
		}
		fmt.Fprintf(&b, ": %s", State(th))
		if verbose && th.Pause > 0 {
			fmt.Fprintf(&b, "  [paused at most %s, held %s, %d reads]",
				th.Pause.Round(time.Microsecond), th.Held.Round(time.Microsecond), th.Reads)
		}
		b.WriteByte('\n')
		if th.Err != nil {
			continue
		}
		n := 0
		for _, f := range Frames(th.Stack, name) {
			if f.Host {
				fmt.Fprintf(&b, "      %18s  %s\n", "", f.Name)
				continue
			}
			fmt.Fprintf(&b, "  #%-3d 0x%016x  %s\n", n, f.PC, f.Name)
			n++
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
