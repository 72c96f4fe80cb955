package layout

import (
	hexenc "encoding/hex"
	"testing"
)

// Hand-written functions, assembled with GNU as (the source is in the
// comments), in the shapes discover.go recognises.
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
	f, err := decodeFunc(name, 0x1000, code)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestMatchEntryFP(t *testing.T) {
	f := decodeHex(t, "walk", entryFPWalk)
	d, err := matchEntryFP(f)
	if err != nil {
		t.Fatal(err)
	}
	want := map[field]int64{fCTSStore: 0x18, fCTSPrev: 0x98, fCTSOld: 0xc0,
		fSavedExitFP: 0x48, fSavedExitPC: 0x40, fSavedEntry: 0x50,
		fStoreExitFP: 0x28, fStoreExitPC: 0x30, fStoreEntry: 0x40}
	for fl, off := range want {
		if got := d.fields[fl]; got == nil || got.off != off {
			t.Errorf("%s = %+v, want %#x", EntryFP.fieldName(fl), got, off)
		}
	}
	if got := d.fields[fCTSPrev].how; got != "followed as a list: walk at 0x1027: mov 0x98(%r12),%r12" {
		t.Errorf("prev provenance %q", got)
	}
	// The same code without the list walk is not recognised.
	if _, err := matchEntryFP(decodeHex(t, "walk", entryFPWalk[:0x1a*2]+"c3")); err == nil {
		t.Error("a function without the list walk was recognised")
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
}

func TestTrampolineStores(t *testing.T) {
	roles := map[storeRole]int64{}
	for _, s := range storesByRole(decodeHex(t, "to_host", toHost)) {
		roles[s.role] = s.off
	}
	if roles[roleCallerFP] != 0x8 || roles[roleRetAddr] != 0x10 {
		t.Errorf("roles %v, want the caller's FP at 0x8 and the return address at 0x10", roles)
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

// Arbitrary bytes never make the interpreter panic or loop forever.
func FuzzDecodeFunc(f *testing.F) {
	for _, h := range []string{entryFPWalk, tlsGet, toHost} {
		b, _ := hexenc.DecodeString(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, code []byte) {
		if len(code) > 4096 {
			return
		}
		if fn, err := decodeFunc("fuzz", 0x1000, code); err == nil {
			matchEntryFP(fn)
			storesByRole(fn)
		}
	})
}
