// Package layout says where one build of Wasmtime keeps the per-thread state
// that the stack walk reads: the thread-local pointer to the innermost
// CallThreadState, and the byte offsets of the fields behind it. Rust does
// not fix struct layouts, so these are facts about one build, established
// from its binary and never guessed; each Fact of a Layout's Provenance
// says how, naming the instruction an offset was read from.
//
// The flow, as record.Prepare runs it through ForProcess (establish.go
// reads top-down in this order):
//
//  1. The binary: the process's executable or, when that holds no
//     Wasmtime, the shared library that does (library.go); its symbols,
//     demangled as needed, and its code (binary.go, demangle.go).
//  2. The version, from a versioned export's name, a compiled module's
//     .wasmtime.engine section or the strings in .rodata.
//  3. The thread-local slot, from the TLS symbol and the code of
//     Wasmtime's TLS accessor, which must agree.
//  4. The generation and the struct offsets, from the code of
//     Backtrace::new_with_trap_state (and, for Wasmtime 3, its assembly
//     trampolines). Package layout/x86 does all the machine-code
//     analysis: it takes a function's bytes, found here by symbol, and
//     returns each offset with the instruction it came from.
//     For the entry-FP generation, then, EntryStoreContext.stack_limit,
//     from the code of invoke_wasm_and_catch_traps that restores it on
//     leaving Wasm: optional, a build that does not show it has
//     LimitKnown false and a fact saying why.
//  5. The table of builds verified live (known.go), a cross-check only:
//     where it has an entry for the version and disagrees, the build is
//     refused. WASMTRACE_LAYOUT_TABLE=off (Options.Table) turns it off.
//  6. For a running process: a library's TLS block (library.go), then the
//     live checks against its memory, without stopping it (live.go).
//
// A build whose layout cannot be established with confidence (stripped,
// no Wasmtime symbols, a function not found, a pattern not recognised, a
// contradiction in the live process) is refused with a sentence saying
// what was missing.
package layout

import (
	"fmt"
	"strings"

	"github.com/wasmtrace/wasmtrace/layout/x86"
)

// Generation is how a Wasmtime build records Wasm entries and exits.
type Generation int

const (
	// Seed: Wasmtime 3 to ~25. VMRuntimeLimits holds the last exit FP
	// (the Wasm frame's own) and PC and the entry SP; a region ends at
	// the trampoline frame just below the entry SP. Older activations'
	// values are saved inline in CallThreadState.
	Seed Generation = 1
	// EntryFP: Wasmtime since late 2024 ("stop at a precise fp").
	// VMStoreContext holds the exit trampoline's FP (the Wasm FP is the
	// word it points to), the exit PC and the entry trampoline's FP; a
	// region ends when fp reaches the entry FP. Older activations' values
	// are saved in an EntryStoreContext that CallThreadState points to.
	EntryFP Generation = 2
)

// Short names the generation in one word.
func (g Generation) Short() string {
	switch g {
	case Seed:
		return "seed"
	case EntryFP:
		return "entry-FP"
	}
	return fmt.Sprintf("generation(%d)", int(g))
}

// tlsMask is how the generation tags the thread-local word.
func (g Generation) tlsMask() uint64 {
	if g == EntryFP {
		return ^uint64(1)
	}
	return ^uint64(0)
}

func (g Generation) String() string {
	switch g {
	case Seed:
		return "seed (entry-SP bound, state saved in CallThreadState)"
	case EntryFP:
		return "entry-FP (entry-FP bound, state saved in EntryStoreContext)"
	}
	return fmt.Sprintf("generation(%d)", int(g))
}

// generationOf is the generation whose code follows pattern p.
func generationOf(p x86.Pattern) Generation {
	switch p {
	case x86.Seed:
		return Seed
	case x86.EntryFP:
		return EntryFP
	}
	return 0
}

// fieldNames are Wasmtime's names for each field, by generation.
var fieldNames = map[Generation][x86.NumFields]string{
	EntryFP: {
		"CallThreadState.vm_store_context", "CallThreadState.prev", "CallThreadState.old_state",
		"EntryStoreContext.last_wasm_exit_pc", "EntryStoreContext.last_wasm_exit_trampoline_fp", "EntryStoreContext.last_wasm_entry_fp",
		"VMStoreContext.last_wasm_exit_pc", "VMStoreContext.last_wasm_exit_trampoline_fp", "VMStoreContext.last_wasm_entry_fp",
	},
	Seed: {
		"CallThreadState.limits", "CallThreadState.prev", "",
		"CallThreadState.old_last_wasm_exit_pc", "CallThreadState.old_last_wasm_exit_fp", "CallThreadState.old_last_wasm_entry_sp",
		"VMRuntimeLimits.last_wasm_exit_pc", "VMRuntimeLimits.last_wasm_exit_fp", "VMRuntimeLimits.last_wasm_entry_sp",
	},
}

func (g Generation) fieldName(fl x86.Field) string { return fieldNames[g][fl] }

// fields lists the fields a generation uses, in display order.
func (g Generation) fields() []x86.Field {
	if g == Seed {
		return []x86.Field{x86.CTSStore, x86.CTSPrev, x86.SavedExitFP, x86.SavedExitPC, x86.SavedEntry, x86.StoreExitFP, x86.StoreExitPC, x86.StoreEntry}
	}
	return []x86.Field{x86.CTSStore, x86.CTSPrev, x86.CTSOld, x86.SavedExitFP, x86.SavedExitPC, x86.SavedEntry, x86.StoreExitFP, x86.StoreExitPC, x86.StoreEntry}
}

func (l *Layout) ptr(fl x86.Field) *uint32 {
	switch fl {
	case x86.CTSStore:
		return &l.CTSStore
	case x86.CTSPrev:
		return &l.CTSPrev
	case x86.CTSOld:
		return &l.CTSOld
	case x86.SavedExitPC:
		return &l.SavedExitPC
	case x86.SavedExitFP:
		return &l.SavedExitFP
	case x86.SavedEntry:
		return &l.SavedEntry
	case x86.StoreExitPC:
		return &l.StoreExitPC
	case x86.StoreExitFP:
		return &l.StoreExitFP
	case x86.StoreEntry:
		return &l.StoreEntry
	}
	panic("bad field")
}

// Layout is everything the walk needs to know about one build. Field names
// follow Wasmtime's (CallThreadState, VMStoreContext, EntryStoreContext).
type Layout struct {
	Version    string // "39.0.0", or "" when unknown
	Generation Generation

	// TLSOffset locates the thread-local slot holding the innermost
	// CallThreadState pointer: slot = thread pointer (fs_base) + TLSOffset.
	TLSOffset int64
	// TLSMask is applied to the slot's word: newer builds keep an
	// "initialised" tag in bit 0.
	TLSMask   uint64
	TLSSymbol string // demangled name of the thread-local

	// Library is the path of the shared library holding Wasmtime, "" when
	// Wasmtime is linked into the executable. Its thread-local is then at
	// TLSModuleOffset in the library's TLS block; TLSOffset is where that
	// block sits from the thread pointer (the same for every thread when
	// the library was loaded at start-up: static TLS).
	Library         string
	TLSModuleOffset int64
	tlsIndex        uint64 // link-time address of the library's tls_index

	// CallThreadState fields.
	CTSStore uint32 // *VMStoreContext (seed: *VMRuntimeLimits)
	CTSPrev  uint32 // *CallThreadState of the enclosing call
	CTSOld   uint32 // EntryFP: *EntryStoreContext; Seed: unused

	// Saved values of the enclosing activation: offsets from the
	// EntryStoreContext (EntryFP) or from the CallThreadState (Seed).
	SavedExitPC uint32
	SavedExitFP uint32 // EntryFP: exit trampoline FP
	SavedEntry  uint32 // EntryFP: entry FP; Seed: entry SP
	// SavedLimitTag and SavedLimitValue (EntryFP, when LimitKnown): the
	// EntryStoreContext's stack_limit, an Option<usize> holding the
	// VMStoreContext.stack_limit in force before its activation. Async
	// stores set a fresh limit at every entry and a fiber starts with
	// usize::MAX, so Some(usize::MAX) (tag word 1) marks the oldest
	// activation of its store on its stack: the next older one is on
	// another stack.
	SavedLimitTag   uint32
	SavedLimitValue uint32
	LimitKnown      bool

	// VMStoreContext / VMRuntimeLimits fields (repr(C)).
	StoreExitPC uint32
	StoreExitFP uint32 // EntryFP: last_wasm_exit_trampoline_fp
	StoreEntry  uint32 // EntryFP: last_wasm_entry_fp; Seed: last_wasm_entry_sp

	// Provenance says, per fact, how it was established and how it was
	// cross-checked.
	Provenance []Fact
	// Live is what the running process confirmed (ForProcess only).
	Live []Fact
}

// Fact records how one part of a layout was established.
type Fact struct {
	What   string // "CallThreadState.prev"
	Value  string // "0xa8"
	Source string // "decoded", "symbol", "binary", "process", "live"
	How    string // the evidence: "followed as a list: F at 0x...: mov 0xa8(%r14),%r14"
	Check  string // cross-checks: "table for 39.0.0 agrees", ...
}

// SavedIndirect reports whether the saved values sit behind CTSOld.
func (l *Layout) SavedIndirect() bool { return l.Generation == EntryFP }

// ExitFPIndirect reports whether the exit FP fields hold a trampoline FP
// whose frame record holds the last Wasm FP.
func (l *Layout) ExitFPIndirect() bool { return l.Generation == EntryFP }

// Validate checks the layout is complete and plausible.
func (l *Layout) Validate() error {
	if l.Generation != Seed && l.Generation != EntryFP {
		return fmt.Errorf("unknown Wasmtime generation %d", int(l.Generation))
	}
	if l.TLSOffset == 0 || l.TLSMask == 0 {
		return fmt.Errorf("thread-local slot of the CallThreadState pointer not found")
	}
	const maxOff = 4096
	for name, off := range map[string]uint32{
		"CallThreadState.store": l.CTSStore, "CallThreadState.prev": l.CTSPrev,
		"saved exit pc": l.SavedExitPC, "saved exit fp": l.SavedExitFP, "saved entry": l.SavedEntry,
		"store exit pc": l.StoreExitPC, "store exit fp": l.StoreExitFP, "store entry": l.StoreEntry,
	} {
		if off%8 != 0 || off >= maxOff {
			return fmt.Errorf("implausible offset %#x for %s", off, name)
		}
	}
	if l.CTSPrev == l.CTSStore || l.StoreExitPC == l.StoreExitFP || l.StoreExitPC == l.StoreEntry {
		return fmt.Errorf("offsets overlap")
	}
	if l.LimitKnown {
		if l.Generation != EntryFP {
			return fmt.Errorf("a saved stack_limit in the %s generation", l.Generation.Short())
		}
		for _, off := range []uint32{l.SavedLimitTag, l.SavedLimitValue} {
			if off%8 != 0 || off >= maxOff {
				return fmt.Errorf("implausible offset %#x for EntryStoreContext.stack_limit", off)
			}
			if off == l.SavedExitPC || off == l.SavedExitFP || off == l.SavedEntry {
				return fmt.Errorf("EntryStoreContext.stack_limit (+%#x) overlaps a saved exit or entry field", off)
			}
		}
		if l.SavedLimitTag == l.SavedLimitValue {
			return fmt.Errorf("EntryStoreContext.stack_limit's tag and value at the same offset %#x", l.SavedLimitTag)
		}
	}
	return nil
}

// Where says in one sentence where the walk finds a thread's state.
func (l *Layout) Where() string {
	tag := ""
	if l.TLSMask != ^uint64(0) {
		tag = fmt.Sprintf(" (masked with %#x)", l.TLSMask)
	}
	switch l.Generation {
	case EntryFP:
		return fmt.Sprintf("the thread-local word at fs%+#x%s points to the innermost CallThreadState; "+
			"its vm_store_context (VMStoreContext) holds the current activation's exit and entry, "+
			"and old_state points to the EntryStoreContext on the stack that saved the previous one; prev links older CallThreadStates", l.TLSOffset, tag)
	case Seed:
		return fmt.Sprintf("the thread-local word at fs%+#x%s points to the innermost CallThreadState; "+
			"its limits (VMRuntimeLimits) hold the current activation's exit and entry, "+
			"the previous activation's values are saved inline in the CallThreadState, and prev links older ones", l.TLSOffset, tag)
	}
	return "unknown"
}

func (l *Layout) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Wasmtime %s, %s generation", orUnknown(l.Version), l.Generation.Short())
	if l.Library != "" {
		fmt.Fprintf(&b, ", in %s", l.Library)
	}
	b.WriteString("\n")
	for _, f := range l.Provenance {
		fmt.Fprintf(&b, "  %-46s %-9s %s: %s\n", f.What, f.Value, f.Source, f.How)
		if f.Check != "" {
			fmt.Fprintf(&b, "  %-46s %-9s check: %s\n", "", "", f.Check)
		}
	}
	for _, f := range l.Live {
		fmt.Fprintf(&b, "  live: %s: %s\n", f.What, f.How)
	}
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "(version unknown)"
	}
	return s
}
