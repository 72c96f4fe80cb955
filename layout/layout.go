// Package layout says where one build of Wasmtime keeps the per-thread state
// that the stack walk reads: the thread-local pointer to the innermost
// CallThreadState, and the byte offsets of the fields behind it. Rust does
// not fix struct layouts, so these are facts about one build, established
// from its binary and never guessed.
package layout

import (
	"fmt"
	"strings"
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

func (g Generation) String() string {
	switch g {
	case Seed:
		return "seed (entry-SP bound, state saved in CallThreadState)"
	case EntryFP:
		return "entry-FP (entry-FP bound, state saved in EntryStoreContext)"
	}
	return fmt.Sprintf("generation(%d)", int(g))
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

	// CallThreadState fields.
	CTSStore uint32 // *VMStoreContext (seed: *VMRuntimeLimits)
	CTSPrev  uint32 // *CallThreadState of the enclosing call
	CTSOld   uint32 // EntryFP: *EntryStoreContext; Seed: unused

	// Saved values of the enclosing activation: offsets from the
	// EntryStoreContext (EntryFP) or from the CallThreadState (Seed).
	SavedExitPC uint32
	SavedExitFP uint32 // EntryFP: exit trampoline FP
	SavedEntry  uint32 // EntryFP: entry FP; Seed: entry SP

	// VMStoreContext / VMRuntimeLimits fields (repr(C)).
	StoreExitPC uint32
	StoreExitFP uint32 // EntryFP: last_wasm_exit_trampoline_fp
	StoreEntry  uint32 // EntryFP: last_wasm_entry_fp; Seed: last_wasm_entry_sp

	// Provenance says, per fact, how it was established ("symbol ...",
	// "table: verified build 39.0.0", "decoded from ...").
	Provenance []Fact
}

// Fact records how one part of a layout was established.
type Fact struct {
	What, Value, How string
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
	return nil
}

func (l *Layout) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Wasmtime %s, %s\n", orUnknown(l.Version), l.Generation)
	for _, f := range l.Provenance {
		fmt.Fprintf(&b, "  %-34s %-10s %s\n", f.What, f.Value, f.How)
	}
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "(version unknown)"
	}
	return s
}
