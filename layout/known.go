package layout

import (
	"sort"
	"strings"
)

// knownBuilds are the builds whose field offsets were verified on live
// processes (see ../shared/notes/wasmtime-internals.md, section 3): the Go
// module github.com/bytecodealliance/wasmtime-go at v3.0.2, v37.0.0 and
// v39.0.1, whose prebuilt libwasmtime.a is Wasmtime 3.0.0, 37.0.0 and 39.0.0.
// The TLS slot is not in the table: it depends on how the embedder was
// linked, and is always computed from the binary.
//
// The table never supplies an offset: offsets are decoded from the binary
// (by package x86, from establish.go), and the table only cross-checks
// them. A build of a listed version whose code disagrees is refused (ErrTableConflict): Rust layouts
// depend on the compiler and features, so the same version number does not
// prove the same layout, but a disagreement means one of the two is wrong.
var knownBuilds = map[string]Layout{
	// crates/runtime/src/traphandlers.rs and vmcontext.rs at v3.0.0.
	"3.0.0": {
		Generation:  Seed,
		TLSMask:     ^uint64(0),
		CTSStore:    0x48, // limits: *const VMRuntimeLimits
		CTSPrev:     0x50,
		SavedExitFP: 0x58, // old_last_wasm_exit_fp
		SavedExitPC: 0x60, // old_last_wasm_exit_pc
		SavedEntry:  0x68, // old_last_wasm_entry_sp
		StoreExitFP: 0x18, // last_wasm_exit_fp
		StoreExitPC: 0x20, // last_wasm_exit_pc
		StoreEntry:  0x28, // last_wasm_entry_sp
	},
	// crates/wasmtime/src/runtime/vm/traphandlers.rs and vmcontext.rs at
	// v37.0.0; CallThreadState still holds a jmp_buf.
	"37.0.0": {
		Generation:  EntryFP,
		TLSMask:     ^uint64(1),
		CTSStore:    0x10, // vm_store_context: NonNull<VMStoreContext>
		CTSPrev:     0xb0,
		CTSOld:      0xb8, // old_state: *mut EntryStoreContext
		SavedExitPC: 0x20, // EntryStoreContext.last_wasm_exit_pc
		SavedExitFP: 0x28, // EntryStoreContext.last_wasm_exit_trampoline_fp
		SavedEntry:  0x30, // EntryStoreContext.last_wasm_entry_fp
		// EntryStoreContext.stack_limit: Option<usize>, its first field
		// (func.rs): the tag word (1 = Some), then the value.
		SavedLimitTag:   0x0,
		SavedLimitValue: 0x8,
		LimitKnown:      true,
		StoreExitFP:     0x28, // last_wasm_exit_trampoline_fp
		StoreExitPC:     0x30, // last_wasm_exit_pc
		StoreEntry:      0x38, // last_wasm_entry_fp
	},
	// Same files at v39.0.0; VMStoreContext gained last_wasm_entry_sp
	// before last_wasm_entry_fp.
	"39.0.0": {
		Generation:  EntryFP,
		TLSMask:     ^uint64(1),
		CTSStore:    0x10,
		CTSPrev:     0xa8,
		CTSOld:      0xb0,
		SavedExitPC: 0x20,
		SavedExitFP: 0x28,
		SavedEntry:  0x30,
		// EntryStoreContext.stack_limit, as in 37.
		SavedLimitTag:   0x0,
		SavedLimitValue: 0x8,
		LimitKnown:      true,
		StoreExitFP:     0x28,
		StoreExitPC:     0x30,
		StoreEntry:      0x40,
	},
}

// tableEntry returns the table's layout for version: an exact match, or,
// for a major version alone ("39", as 39's .wasmtime.engine says), the one
// entry of that major.
func tableEntry(version string) (Layout, string, bool) {
	if k, ok := knownBuilds[version]; ok {
		return k, version, true
	}
	if version == "" || strings.Contains(version, ".") {
		return Layout{}, "", false
	}
	var found []string
	for v := range knownBuilds {
		if strings.HasPrefix(v, version+".") {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		return Layout{}, "", false
	}
	return knownBuilds[found[0]], found[0], true
}

// KnownVersions lists the builds of the table.
func KnownVersions() []string {
	out := make([]string, 0, len(knownBuilds))
	for v := range knownBuilds {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
