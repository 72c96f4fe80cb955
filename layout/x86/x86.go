// Package x86 reads Wasmtime's struct offsets out of its x86-64 machine
// code: it decodes the instructions of a function, runs a small abstract
// interpreter over them (interp.go) and recognises the shapes of the
// Wasmtime functions that use the offsets (backtrace.go, and the TLS
// accessor and trampoline matchers of x86.go). It knows nothing of ELF
// files, symbols or processes: package layout finds the functions, hands
// their bytes here as a Code, and turns what comes back into the Facts of
// a Layout. Every offset returned comes with a sentence naming the
// instruction it was read from (Found.How).
//
// Where this sits in the flow of record.Prepare → layout.ForProcess →
// layout.Establish, for the binary holding Wasmtime:
//
//  1. the thread-local slot: TLSAccessor on tls::raw::get (37, 39) or
//     tls::raw::PTR::__getit (3); ScanTLSGet on the executable sections
//     when the binary is stripped (only to say so in the refusal);
//  2. the struct offsets and the generation: Backtrace on
//     Backtrace::new_with_trap_state and trace_with_trap_state, which for
//     the seed generation also reads Wasmtime 3's assembly trampolines;
//     then (entry-FP generation) StackLimit on invoke_wasm_and_catch_traps,
//     given those offsets: EntryStoreContext.stack_limit (limit.go);
//  3. the live check of the process (entry-FP generation): Stores on the
//     JIT trampolines of its compiled modules, whose VMStoreContext
//     offsets must be the binary's.
//
// The shapes, per generation (see ../shared/notes/wasmtime-internals.md):
//
// EntryFP (Wasmtime ~28 and later; 37 and 39 here). Backtrace::
// new_with_trap_state (or trace_with_trap_state where it is not inlined)
// walks the CallThreadState list looking for activations of one store:
//
//	loop:  x = x->prev                     self-linked field:   prev
//	       if x->vm_store_context == store  compared to the store: vm_store_context
//	           e = x->old_state             loaded from x, then read: old_state
//	           (pc, fp, entry) = (e->exit_pc, *e->exit_trampoline_fp, e->entry_fp)
//
// and the first activation takes the same three values from the store's
// VMStoreContext. Both tuples meet in the same variables (the loop over
// activations, or the arguments of frame_iterator), which pairs every
// EntryStoreContext field with its VMStoreContext field. The exit FP is
// the pair that is dereferenced (the trampoline's FP points to the Wasm
// FP). The exit PC follows the exit trampoline FP in VMStoreContext, which
// is repr(C) and declares them in that order. The entry FP is the pair the
// walk compares with the frame pointer (fp == trampoline_fp), when that
// comparison is inlined; otherwise the next paired VMStoreContext field.
//
// Seed (Wasmtime 3 to ~25; 3 here). Backtrace::new_with_trap_state and
// trace_with_trap_state call trace_through_wasm once with the values of
// VMRuntimeLimits (behind CallThreadState.limits) and then, following
// prev, with the values saved inline in each CallThreadState: the
// argument positions pair the fields. Their roles come from Wasmtime's
// assembly trampolines: wasm_to_host_trampoline stores %rbp (exit FP) and
// the return address (exit PC), host_to_wasm_trampoline stores %rsp
// (entry SP), each into VMRuntimeLimits.
//
// Thread-local slot: tls::raw::get (37, 39) loads it from the thread
// pointer and clears bit 0 (mov %fs:0,%rax; mov -0x68(%rax),%rax; and
// $-2,%rax); tls::raw::PTR::__getit (3) returns its address (lea).
package x86

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// Code is the machine code of one function (for ScanTLSGet, of one
// executable section).
type Code struct {
	Name  string // how descriptions name it: "Backtrace::new_with_trap_state"
	Addr  uint64 // the address of Bytes[0]
	Bytes []byte
	// TLSIndex reports whether addr holds a tls_index of the module the
	// code is from (a GOT entry with an R_X86_64_DTPMOD64 relocation): a
	// call with it in %rdi is __tls_get_addr, which returns a pointer into
	// the module's TLS block. Nil: none.
	TLSIndex func(addr uint64) bool
}

// Found is one offset and how the code shows it, naming the instruction:
// "followed as a list: Backtrace::new_with_trap_state at 0x5d2c41: mov
// 0xa8(%r14),%r14".
type Found struct {
	Off int64
	How string
}

// ---- struct offsets, from the backtrace code ----

// Field is one of the struct offsets the backtrace code shows. Names are
// the entry-FP generation's; see Offsets for the seed generation's.
type Field int

const (
	CTSStore    Field = iota // CallThreadState.vm_store_context (seed: limits)
	CTSPrev                  // CallThreadState.prev
	CTSOld                   // CallThreadState.old_state (entry-FP only)
	SavedExitPC              // EntryStoreContext.last_wasm_exit_pc (seed: CallThreadState.old_last_wasm_exit_pc)
	SavedExitFP              // EntryStoreContext.last_wasm_exit_trampoline_fp (seed: CallThreadState.old_last_wasm_exit_fp)
	SavedEntry               // EntryStoreContext.last_wasm_entry_fp (seed: CallThreadState.old_last_wasm_entry_sp)
	StoreExitPC              // VMStoreContext.last_wasm_exit_pc (seed: VMRuntimeLimits')
	StoreExitFP              // VMStoreContext.last_wasm_exit_trampoline_fp (seed: VMRuntimeLimits.last_wasm_exit_fp)
	StoreEntry               // VMStoreContext.last_wasm_entry_fp (seed: VMRuntimeLimits.last_wasm_entry_sp)
	NumFields
)

// Pattern is which generation of Wasmtime's code a function follows.
type Pattern int

const (
	// Seed: the previous activation's state is saved inline in
	// CallThreadState (Wasmtime 3 to ~25).
	Seed Pattern = iota + 1
	// EntryFP: it is saved in an EntryStoreContext behind
	// CallThreadState.old_state (Wasmtime since late 2024).
	EntryFP
)

// Offsets is what one backtrace function's code says.
type Offsets struct {
	Pattern Pattern
	How     string // why the code follows that pattern
	Fields  [NumFields]*Found
}

func (d *Offsets) set(fl Field, off int64, how string) {
	d.Fields[fl] = &Found{off, how}
}

// Trampolines returns the code of Wasmtime 3's assembly trampolines,
// wasm_to_host_trampoline and host_to_wasm_trampoline, whose stores give
// the roles of VMRuntimeLimits' fields. Backtrace calls it only for code
// that follows the seed pattern.
type Trampolines func() (toHost, toWasm Code, err error)

// Backtrace reads the struct offsets from Backtrace::new_with_trap_state
// or trace_with_trap_state, and says which generation's pattern the code
// follows; an error says why it follows neither.
func Backtrace(c Code, tramp Trampolines) (*Offsets, error) {
	f, err := decode(c, 0)
	if err != nil {
		return nil, err
	}
	d, errE := matchEntryFP(f)
	if errE == nil {
		return d, nil
	}
	d, errS := matchSeed(f, tramp)
	if errS == nil {
		return d, nil
	}
	return nil, fmt.Errorf("%s at %#x follows neither generation's pattern (entry-FP: %s; seed: %s)",
		f.name, f.addr, stripFn(errE), stripFn(errS))
}

// ---- the thread-local slot ----

// TLS is how a thread-local accessor reaches the slot of the innermost
// CallThreadState pointer.
type TLS struct {
	// Off is the slot's offset from the thread pointer (%fs:0) or, when
	// Index is not 0, from the pointer __tls_get_addr returns for the
	// tls_index at address Index (the module's TLS block plus the
	// tls_index's own offset).
	Off   int64
	Index uint64
	How   string
	// Mask is what the code applies to the slot's word (^0: nothing).
	Mask    uint64
	MaskHow string
}

// TLSAccessor decodes Wasmtime's TLS accessor: tls::raw::get (37, 39:
// loads the slot and masks bit 0) or tls::raw::PTR::__getit (3: returns
// the slot's address).
func TLSAccessor(c Code) (*TLS, error) {
	f, err := decode(c, 0)
	if err != nil {
		return nil, err
	}
	if len(f.tps) != 1 {
		return nil, &errPattern{f.name, fmt.Sprintf("%d thread-local values, want 1", len(f.tps))}
	}
	tp := f.tps[0]
	t := &TLS{Off: tp.off, How: "decoded from " + f.at(tp.pc), Mask: ^uint64(0), MaskHow: "the slot's address is returned, no tag bits: " + f.at(tp.pc)}
	if tp.index != 0 {
		t.Index = tp.index
		t.How = fmt.Sprintf("decoded from %s, after __tls_get_addr(&tls_index at %#x)", f.at(tp.pc), tp.index)
	}
	if tp.load {
		t.MaskHow = "loaded and used unmasked: " + f.at(tp.pc)
		for _, a := range f.ands {
			if len(a.vals) == 1 && f.exprs[a.vals[0]].op == opLoad && (f.isEntry(f.exprs[a.vals[0]].a, regTP) || f.isEntry(f.exprs[a.vals[0]].a, regTLS)) {
				t.Mask = uint64(a.imm)
				t.MaskHow = "masked after loading: " + f.at(a.pc)
			}
		}
	}
	return t, nil
}

// fsLoadRAX starts Wasmtime 37/39's tls::raw::get, located without
// symbols: the thread pointer's load (its general-dynamic form, relaxed by
// the linker, carries three 0x66 prefixes).
var fsLoadRAX = []byte{0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0} // mov %fs:0,%rax

// ScanTLSGet scans executable code for the accessor's shape, mov
// %fs:0,%rax; mov d(%rax),%rax; and $-2,%rax, and returns d (from the
// thread pointer) when all occurrences agree. It needs no symbols.
func ScanTLSGet(text []Code) (*TLS, error) {
	var found *TLS
	n := 0
	for _, s := range text {
		data := s.Bytes
		for i := 0; i < len(data); {
			k := bytes.Index(data[i:], fsLoadRAX)
			if k < 0 {
				break
			}
			j := i + k
			i = j + 1
			f, err := decode(Code{Name: "tls::raw::get", Addr: s.Addr + uint64(j), Bytes: data[j:]}, 3)
			if err != nil {
				continue
			}
			if len(f.tps) == 0 || !f.tps[0].load || len(f.ands) == 0 || f.ands[0].imm != -2 || f.insns[2].inst.Op != x86asm.AND {
				continue
			}
			n++
			t := &TLS{Off: f.tps[0].off, Mask: ^uint64(1),
				How:     fmt.Sprintf("code pattern at %#x: mov %%fs:0,%%rax; %s; %s", f.insns[1].pc, f.text(f.insns[1].pc), f.text(f.insns[2].pc)),
				MaskHow: fmt.Sprintf("code pattern at %#x: %s", f.insns[2].pc, f.text(f.insns[2].pc))}
			if found != nil && found.Off != t.Off {
				return nil, fmt.Errorf("the accessor's pattern occurs with different offsets (fs%+#x, fs%+#x)", found.Off, t.Off)
			}
			if found == nil {
				found = t
			}
		}
	}
	if found == nil {
		return nil, errors.New("the TLS accessor's code pattern (mov %fs:0,%rax; mov d(%rax),%rax; and $-2,%rax) was not found")
	}
	if n > 1 {
		found.How += fmt.Sprintf(" (%d occurrences, all agree)", n)
	}
	return found, nil
}

// ---- trampolines' stores ----

// Role is what a trampoline stores into the runtime's state.
type Role int

const (
	CallerFP Role = iota + 1 // the caller's frame pointer (%rbp at entry)
	OwnFP                    // this function's frame pointer (after push %rbp; mov %rsp,%rbp)
	SP                       // a stack pointer
	RetAddr                  // the return address
)

// Store is one 8-byte store of a trampoline through a pointer it loaded
// from an argument (the VMRuntimeLimits or VMStoreContext pointer).
type Store struct {
	Role Role
	Off  int64  // the field stored to
	At   string // the instruction: "NAME at 0x...: mov %rbp,0x28(%rax)"
}

// Stores lists what the trampoline stores, in code order.
func Stores(c Code) ([]Store, error) {
	f, err := decode(c, 0)
	if err != nil {
		return nil, err
	}
	var out []Store
	for _, st := range storesByRole(f) {
		out = append(out, Store{Role: st.role, Off: st.off, At: f.at(st.pc)})
	}
	return out, nil
}

// roleStore is a Store before its instruction is described.
type roleStore struct {
	role Role
	off  int64
	pc   uint64
}

// storesByRole classifies the 8-byte stores of f through a pointer loaded
// from an argument (the VMRuntimeLimits or VMStoreContext pointer).
func storesByRole(f *fn) []roleStore {
	var out []roleStore
	for _, st := range f.stores {
		a := f.exprs[st.addr]
		if st.bytes != 8 || a.op != opAdd || f.exprs[a.a].op != opLoad {
			continue
		}
		for _, v := range st.vals {
			x := f.exprs[v]
			var role Role
			switch {
			case f.isEntry(v, regRBP):
				role = CallerFP
			case f.isEntry(v, regRetAddr):
				role = RetAddr
			case f.isEntry(v, regRSP):
				role = SP
			case x.op == opAdd && f.isEntry(x.a, regRSP):
				role = SP
				if x.off == -8 && f.ownFramePushed() {
					role = OwnFP
				}
			default:
				continue
			}
			out = append(out, roleStore{role: role, off: a.off, pc: st.pc})
		}
	}
	return out
}

// ownFramePushed reports whether f starts with push %rbp; mov %rsp,%rbp.
func (f *fn) ownFramePushed() bool {
	if len(f.insns) < 2 {
		return false
	}
	return f.text(f.insns[0].pc) == "push %rbp" && f.text(f.insns[1].pc) == "mov %rsp,%rbp"
}
