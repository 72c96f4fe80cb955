package walker

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/wasmtrace/wasmtrace/arch"
	"github.com/wasmtrace/wasmtrace/symbolize"
)

// A sample may land on any instruction of a Wasm function. For every
// instruction of every Wasm function of real compiled images (Wasmtime 3,
// 37 and 39, symbolize/testdata), lay out the stack as it is when that
// instruction is about to run, called from a known chain of Wasm callers,
// and check the walk finds exactly the function and every caller: the
// prologue (before and after push %rbp), the body, and each epilogue's
// ret or ret $N (where rbp is the caller's again).
func TestEveryInstruction(t *testing.T) {
	for _, fx := range []struct {
		file string
		cfg  config
	}{
		{"v39-module.elf", configs[0]},
		{"v39-stackargs.elf", configs[0]}, // $many has stack arguments: ret $N
		{"v37-module.elf", configs[0]},
		{"v3-module.elf", configs[2]},
	} {
		t.Run(fx.file, func(t *testing.T) {
			img, err := os.ReadFile(filepath.Join("..", "symbolize", "testdata", fx.file))
			if err != nil {
				t.Fatal(err)
			}
			const base = wasmLo + 0x10000 // the image, inside compiled code
			m, err := symbolize.ParseImage(bytes.NewReader(img), int64(len(img)), base)
			if err != nil {
				t.Fatal(err)
			}
			checked, retN := 0, 0
			for _, f := range m.Funcs {
				if f.Kind != symbolize.WasmFunction || f.End > base+uint64(len(img)) {
					continue
				}
				code := img[f.Start-base : f.End-base]
				if !bytes.HasPrefix(code, []byte{0x55, 0x48, 0x89, 0xe5}) {
					t.Errorf("%s: no push %%rbp; mov %%rsp,%%rbp prologue: % x", f.Name, code[:min(8, len(code))])
					continue
				}
				for off := 0; off < len(code); {
					in, err := x86asm.Decode(code[off:], 64)
					if err != nil {
						break // padding after the last instruction
					}
					pc := f.Start + uint64(off)
					checkInstruction(t, fx.cfg, f.Name, pc, code, off, in)
					checked++
					if in.Op == x86asm.RET && in.Args[0] != nil {
						retN++
					}
					off += in.Len
				}
			}
			if checked < 20 {
				t.Fatalf("only %d instructions checked", checked)
			}
			if strings.Contains(fx.file, "stackargs") && retN == 0 {
				t.Fatal("no ret $N in the function with stack arguments")
			}
			t.Logf("%d instructions (%d ret $N) of %d functions", checked, retN, len(m.Funcs))
		})
	}
}

// checkInstruction walks a thread about to run instruction in at pc (off
// bytes into the function's code), called by actA's chain.
func checkInstruction(t *testing.T, cfg config, name string, pc uint64, code []byte, off int, in x86asm.Inst) {
	t.Helper()
	// The function's own frame exists in the body only.
	ownFrame := off > 1 && in.Op != x86asm.RET
	sc := scene{acts: [][]uint64{actA}}
	if ownFrame {
		sc.acts = [][]uint64{cat([]uint64{pc}, actA)}
	}
	b := build(cfg, sc)
	b.mem.Set(pc-uint64(off), code)
	if ownFrame {
		b.thread.PC = pc // the scene's innermost frame is the function's
	} else {
		// rbp is the caller's; the return address is on top of the stack,
		// or under the pushed rbp right after the push.
		b.thread.PC = pc
		b.thread.FP = b.fps[0][0]
		b.thread.SP = b.fps[0][0] - 0x20
		b.set(b.thread.SP, actA[0])
		if off == 1 {
			b.set(b.thread.SP, b.thread.FP)
			b.set(b.thread.SP+8, actA[0])
		}
	}
	got := Walk(b.mem, b.cfg.l, cfg.a, b.thread, inWasm)
	want := cat([]uint64{pc}, actA)
	if cfg.a.Name != arch.AMD64.Name {
		t.Fatal("x86-64 code")
	}
	if got.Stop != StopOK || got.Where != InWasm || len(got.PCs) != len(want) || got.PCs[0] != want[0] || got.PCs[1] != want[1] {
		t.Errorf("%s+%#x (%v): walk %s %v, want %s", name, off, in, got.Stop, hexs(got.PCs), hexs(want))
	}
}
