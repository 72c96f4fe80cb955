package x86

import (
	hexenc "encoding/hex"
	"strings"
	"testing"
)

// Hand-written functions, assembled with GNU as (the source is in the
// comments), in the shapes the matchers recognise.
var (
	// push %r12; push %r13; push %rbx; mov %rdi,%r12; mov %rsi,%r13
	// mov 0x30(%r13),%rcx; mov 0x28(%r13),%rax; mov (%rax),%r8; mov 0x40(%r13),%r9
	// visit: call visit_frames
	// next: test %r12,%r12; je done; mov %r12,%rax; mov 0x98(%r12),%r12
	//       cmp 0x18(%rax),%r13; jne next
	//       mov 0xc0(%rax),%rax; mov 0x48(%rax),%rdx; mov (%rdx),%r8
	//       mov 0x40(%rax),%rcx; mov 0x50(%rax),%r9; jmp visit
	// done: pop %rbx; pop %r13; pop %r12; ret
	// visit_frames: ret
	entryFPWalk = "41544155534989fc4989f5498b4d30498b45284c8b004d8b4d40e8340000004d85e474294c89e04d8ba424980000004c3b681875ea488b80c0000000488b50484c8b02488b48404c8b4850ebcd5b415d415cc3c3"
	// mov %fs:0,%rax; mov -0x58(%rax),%rax; and $-2,%rax; ret
	tlsGet = "64488b042500000000488b40a84883e0fec3"
	// mov 0x8(%rsi),%r10; mov %rbp,0x8(%r10); mov (%rsp),%r11; mov %r11,0x10(%r10); jmp *0x8(%rdi)
	toHost = "4c8b560849896a084c8b1c244d895a10ff6708"
)

func decodeHex(t *testing.T, name, h string) *fn {
	t.Helper()
	code, err := hexenc.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	f, err := decode(Code{Name: name, Addr: 0x1000, Bytes: code}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestMatchEntryFP(t *testing.T) {
	code, _ := hexenc.DecodeString(entryFPWalk)
	d, err := Backtrace(Code{Name: "walk", Addr: 0x1000, Bytes: code}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Pattern != EntryFP {
		t.Errorf("pattern %v, want entry-FP", d.Pattern)
	}
	want := map[Field]int64{CTSStore: 0x18, CTSPrev: 0x98, CTSOld: 0xc0,
		SavedExitFP: 0x48, SavedExitPC: 0x40, SavedEntry: 0x50,
		StoreExitFP: 0x28, StoreExitPC: 0x30, StoreEntry: 0x40}
	for fl, off := range want {
		if got := d.Fields[fl]; got == nil || got.Off != off {
			t.Errorf("field %d = %+v, want %#x", fl, got, off)
		}
	}
	if got := d.Fields[CTSPrev].How; got != "followed as a list: walk at 0x1027: mov 0x98(%r12),%r12" {
		t.Errorf("prev provenance %q", got)
	}
	// The same code without the list walk is not recognised, and the
	// refusal says why for each generation.
	code, _ = hexenc.DecodeString(entryFPWalk[:0x1a*2] + "c3")
	_, err = Backtrace(Code{Name: "walk", Addr: 0x1000, Bytes: code}, nil)
	if err == nil {
		t.Fatal("a function without the list walk was recognised")
	}
	for _, s := range []string{"walk at 0x1000 follows neither generation's pattern", "entry-FP: no comparison", "seed: no call"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("refusal %q does not say %q", err, s)
		}
	}
}

func TestTLSAccessorShape(t *testing.T) {
	f := decodeHex(t, "get", tlsGet)
	if len(f.tps) != 1 || f.tps[0].off != -0x58 || !f.tps[0].load {
		t.Fatalf("thread-pointer values %+v, want one load at -0x58", f.tps)
	}
	if len(f.ands) != 1 || f.ands[0].imm != -2 {
		t.Errorf("masks %+v, want and $-2", f.ands)
	}
	if got := f.text(0x1009); got != "mov -0x58(%rax),%rax" {
		t.Errorf("text %q: displacements must be shown signed", got)
	}

	code, _ := hexenc.DecodeString(tlsGet)
	tls, err := TLSAccessor(Code{Name: "raw::get", Addr: 0x1000, Bytes: code})
	if err != nil {
		t.Fatal(err)
	}
	if tls.Off != -0x58 || tls.Index != 0 || tls.Mask != ^uint64(1) ||
		tls.How != "decoded from raw::get at 0x1009: mov -0x58(%rax),%rax" || tls.MaskHow != "masked after loading: raw::get at 0x100d: and $-0x2,%rax" {
		t.Errorf("TLSAccessor: %+v", tls)
	}
	// Without symbols: the same bytes, twice, in a section of other code.
	text := append(append(append([]byte{0x90, 0xc3}, code...), 0x90), code...)
	scan, err := ScanTLSGet([]Code{{Name: ".text", Addr: 0x2000, Bytes: text}})
	if err != nil {
		t.Fatal(err)
	}
	if scan.Off != -0x58 || scan.Mask != ^uint64(1) || !strings.HasPrefix(scan.How, "code pattern at 0x200b: mov %fs:0,%rax; mov -0x58(%rax),%rax; and $-0x2,%rax") ||
		!strings.HasSuffix(scan.How, "(2 occurrences, all agree)") {
		t.Errorf("ScanTLSGet: %+v", scan)
	}
	if _, err := ScanTLSGet([]Code{{Name: ".text", Addr: 0x2000, Bytes: code[:12]}}); err == nil {
		t.Error("a cut-off accessor was recognised")
	}
}

func TestTrampolineStores(t *testing.T) {
	code, _ := hexenc.DecodeString(toHost)
	stores, err := Stores(Code{Name: "to_host", Addr: 0x1000, Bytes: code})
	if err != nil {
		t.Fatal(err)
	}
	roles := map[Role]Store{}
	for _, s := range stores {
		roles[s.Role] = s
	}
	if roles[CallerFP].Off != 0x8 || roles[RetAddr].Off != 0x10 {
		t.Errorf("stores %+v, want the caller's FP at 0x8 and the return address at 0x10", stores)
	}
	if got := roles[CallerFP].At; got != "to_host at 0x1004: mov %rbp,0x8(%r10)" {
		t.Errorf("store described as %q", got)
	}
}

// A list walk widens into one chain instead of growing without end.
func TestChainWidening(t *testing.T) {
	// loop: mov 0x10(%rdi),%rdi; test %rdi,%rdi; jne loop; ret
	f := decodeHex(t, "loop", "488b7f104885ff75f7c3")
	chains := 0
	for _, e := range f.exprs {
		if e.op == opChain {
			chains++
			if e.off != 0x10 || !f.isEntry(e.a, 7) {
				t.Errorf("chain %+v, want chain(entry(rdi), 0x10)", e)
			}
		}
	}
	if chains != 1 || len(f.exprs) > 32 {
		t.Errorf("%d chains, %d expressions", chains, len(f.exprs))
	}
}

// Arbitrary bytes never make the interpreter or a matcher panic or loop
// forever.
func FuzzDecode(f *testing.F) {
	for _, h := range []string{entryFPWalk, tlsGet, toHost, limitRestore} {
		b, _ := hexenc.DecodeString(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, code []byte) {
		if len(code) > 4096 {
			return
		}
		c := Code{Name: "fuzz", Addr: 0x1000, Bytes: code}
		Backtrace(c, func() (Code, Code, error) { return c, c, nil })
		Stores(c)
		TLSAccessor(c)
		ScanTLSGet([]Code{c})
		StackLimit(c, knownEntryFP())
	})
}

// Hand-written functions in the shape of invoke_wasm_and_catch_traps
// (EntryStoreContext::enter_wasm, catch_traps and exit_wasm inlined), with
// the EntryStoreContext at 0x10(%rsp) and the CallThreadState at
// 0x60(%rsp); the store's VMStoreContext is at 0x40(%rdi):
//
//	push %rbx; sub $0x120,%rsp; mov %rdi,%rbx; lea 0x40(%rbx),%rdx
//	mov 0x50(%rbx),%rcx; mov $1,%esi                  (the old stack limit; Some)
//	mov %rsi,0x10(%rsp); mov %rcx,0x18(%rsp)          (esc.stack_limit)
//	mov 0x70(%rbx),%rax; mov %rax,0x30(%rsp)          (esc.last_wasm_exit_pc)
//	mov %rdx,0x58(%rsp)                               (esc.vm_store_context)
//	lea 0x10(%rsp),%rax; mov %rax,0x110(%rsp)         (cts.old_state = &esc)   [noOldState: without the store]
//	lea 0x60(%rsp),%rdi; call replace; mov %rax,0x108(%rsp)   (cts.prev)
//	mov 0x58(%rsp),%rsi; mov 0x30(%rsp),%rax
//	testb $1,0x10(%rsp); je 1f                        [limitCmpJNE: cmpq $0,0x10(%rsp); jne 2f; jmp 1f; 2:]  [wrongSide: jne 1f]
//	mov 0x18(%rsp),%r8; mov %r8,0x10(%rsi)            [intoFrame: mov %r8,0x20(%rsp)]
//	1: mov %rax,0x30(%rsi)                            (vmsc.last_wasm_exit_pc) [noExitPC: without it]
//	add $0x120,%rsp; pop %rbx; ret
//	replace: ret
var (
	limitRestore = "534881ec200100004889fb488d5340488b4b50be01000000488974241048894c2418488b437048894424304889542458488d4424104889842410010000488d7c2460e82f0000004889842408010000488b742458488b442430f64424100174094c8b4424184c894610488946304881c4200100005bc3c3"
	limitCmpJNE  = "534881ec200100004889fb488d5340488b4b50be01000000488974241048894c2418488b437048894424304889542458488d4424104889842410010000488d7c2460e8320000004889842408010000488b742458488b44243048837c2410007502eb094c8b4424184c894610488946304881c4200100005bc3c3"
	noOldState   = "534881ec200100004889fb488d5340488b4b50be01000000488974241048894c2418488b437048894424304889542458488d442410488d7c2460e82f0000004889842408010000488b742458488b442430f64424100174094c8b4424184c894610488946304881c4200100005bc3c3"
	noExitPC     = "534881ec200100004889fb488d5340488b4b50be01000000488974241048894c2418488b437048894424304889542458488d4424104889842410010000488d7c2460e82b0000004889842408010000488b742458488b442430f64424100174094c8b4424184c8946104881c4200100005bc3c3"
	wrongSide    = "534881ec200100004889fb488d5340488b4b50be01000000488974241048894c2418488b437048894424304889542458488d4424104889842410010000488d7c2460e82f0000004889842408010000488b742458488b442430f64424100175094c8b4424184c894610488946304881c4200100005bc3c3"
	intoFrame    = "534881ec200100004889fb488d5340488b4b50be01000000488974241048894c2418488b437048894424304889542458488d4424104889842410010000488d7c2460e8300000004889842408010000488b742458488b442430f644241001740a4c8b4424184c89442420488946304881c4200100005bc3c3"
)

// knownEntryFP are the offsets the stack-limit functions above assume.
func knownEntryFP() *Offsets {
	d := &Offsets{Pattern: EntryFP}
	for fl, off := range map[Field]int64{CTSStore: 0x10, CTSPrev: 0xa8, CTSOld: 0xb0, SavedExitPC: 0x20, SavedExitFP: 0x28, SavedEntry: 0x30,
		StoreExitFP: 0x28, StoreExitPC: 0x30, StoreEntry: 0x40} {
		d.set(fl, off, "test")
	}
	return d
}

func stackLimit(t *testing.T, h string, known *Offsets) (*Limit, error) {
	t.Helper()
	code, err := hexenc.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	return StackLimit(Code{Name: "invoke", Addr: 0x1000, Bytes: code}, known)
}

func TestStackLimit(t *testing.T) {
	for _, tc := range []struct {
		name, code, side, test string
	}{
		{"testb/je", limitRestore, "falls through", "invoke at 0x1059: testb $0x1,0x10(%rsp)"},
		{"cmpq/jne", limitCmpJNE, "jumps", "invoke at 0x1059: cmpq $0x0,0x10(%rsp)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim, err := stackLimit(t, tc.code, knownEntryFP())
			if err != nil {
				t.Fatal(err)
			}
			if lim.Tag.Off != 0 || lim.Value.Off != 8 || lim.Store.Off != 0x10 {
				t.Errorf("tag +%#x, value +%#x, restored into +%#x; want +0, +8, +0x10", lim.Tag.Off, lim.Value.Off, lim.Store.Off)
			}
			for _, s := range []string{"Some when it " + tc.side + "): " + tc.test, "old_state: invoke at 0x1035: mov %rax,0x110(%rsp)"} {
				if !strings.Contains(lim.Tag.How, s) {
					t.Errorf("tag provenance %q does not say %q", lim.Tag.How, s)
				}
			}
			if !strings.Contains(lim.Value.How, "restored into VMStoreContext+0x10 when the tag is set: ") || !strings.Contains(lim.Value.How, "mov 0x18(%rsp),%r8; invoke at ") ||
				!strings.HasSuffix(lim.Store.How, ": mov %rax,0x30(%rsi)") {
				t.Errorf("value provenance %q, store %q", lim.Value.How, lim.Store.How)
			}
			if lim.TagSet != "invoke at 0x1018: mov %rsi,0x10(%rsp)" || lim.ValueSaved != "invoke at 0x100f: mov 0x50(%rbx),%rcx" {
				t.Errorf("entry-side evidence %q, %q", lim.TagSet, lim.ValueSaved)
			}
		})
	}
}

func TestStackLimitRefused(t *testing.T) {
	for _, tc := range []struct {
		name, code, want string
	}{
		{"no old_state store", noOldState, "no frame object whose address is stored into CallThreadState.old_state (+0xb0)"},
		{"no exit PC restore", noExitPC, "through a pointer that no store of last_wasm_exit_pc (VMStoreContext+0x30) goes through"},
		{"restore on the None side", wrongSide, "tests the word at +0x0, but its Some side loads no other word"},
		{"value stored into the frame", intoFrame, "stores the value word into the frame"},
		{"no restore at all", entryFPWalk, "no frame object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := stackLimit(t, tc.code, knownEntryFP())
			if err == nil {
				t.Fatal("recognised")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "invoke: pattern not recognised: ") {
				t.Errorf("refusal %q does not say %q", err, tc.want)
			}
		})
	}
	// The restore must not land on a field already known to be another.
	known := knownEntryFP()
	known.set(StoreEntry, 0x10, "test")
	if _, err := stackLimit(t, limitRestore, known); err == nil || !strings.Contains(err.Error(), "VMStoreContext+0x10, a known exit or entry field") {
		t.Errorf("restore into a known field: err %v", err)
	}
	// Without the entry-FP offsets there is nothing to match against.
	if _, err := stackLimit(t, limitRestore, &Offsets{Pattern: Seed}); err == nil {
		t.Error("recognised with the seed generation's offsets")
	}
}
