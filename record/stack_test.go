package record

import (
	"strings"
	"testing"

	"github.com/wasmtrace/wasmtrace/loader"
	"github.com/wasmtrace/wasmtrace/symbolize"
	"github.com/wasmtrace/wasmtrace/walker"
)

// funcTable is a fixed module: functions at [start, end).
type funcTable struct {
	m symbolize.Module
}

// Executable memory that no module of the table holds.
const unseenLo, unseenHi = 0x5000, 0x6000

func (t *funcTable) UnseenCode(pc uint64) bool { return pc >= unseenLo && pc < unseenHi }

func (t *funcTable) Lookup(pc uint64) (symbolize.Func, *symbolize.Module, bool) {
	for _, f := range t.m.Funcs {
		if pc >= f.Start && pc < f.End {
			return f, &t.m, true
		}
	}
	return symbolize.Func{}, nil, false
}

func testModule() *funcTable {
	fn := func(start uint64, name string, kind symbolize.Kind) symbolize.Func {
		return symbolize.Func{Start: start, End: start + 0x100, Name: name, Kind: kind, Index: -1}
	}
	return &funcTable{symbolize.Module{Name: "m", Funcs: []symbolize.Func{
		fn(0x1000, "outer", symbolize.WasmFunction),
		fn(0x1100, "outer_mid", symbolize.WasmFunction),
		fn(0x1200, "inner", symbolize.WasmFunction),
		fn(0x1300, "inner_leaf", symbolize.WasmFunction),
		fn(0x1400, "wasm[0]::array_to_wasm_trampoline[3]", symbolize.Trampoline),
		fn(0x1500, "signatures[0]::wasm_to_array_trampoline", symbolize.Trampoline),
	}}}
}

// Each kind of kernel sample becomes exactly one stack, root first.
func TestStack(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    loader.Sample
		want string
	}{
		{"in Wasm: the leaf PC is exact, the others are return addresses",
			loader.Sample{Where: loader.InWasm, UserPC: 0x1310, PCs: []uint64{0x1310, 0x1201, 0x1101, 0x1001}, ActStart: []uint16{0}},
			"outer;outer_mid;inner;inner_leaf"},
		{"a return address at the end of a function names that function",
			loader.Sample{Where: loader.InWasm, UserPC: 0x1300, PCs: []uint64{0x1300, 0x1200}, ActStart: []uint16{0}},
			"outer_mid;inner_leaf"},
		{"nested activations are separated by [host]",
			loader.Sample{Where: loader.InWasm, UserPC: 0x1310, PCs: []uint64{0x1310, 0x1201, 0x1101, 0x1001}, ActStart: []uint16{0, 2}},
			"outer;outer_mid;[host];inner;inner_leaf"},
		{"host code called from Wasm is a [host] leaf",
			loader.Sample{Where: loader.InHost, UserPC: 0x9999, PCs: []uint64{0x1101, 0x1001}, ActStart: []uint16{0}},
			"outer;outer_mid;[host]"},
		{"an exit trampoline frame is host code, and markers do not repeat",
			loader.Sample{Where: loader.InWasm, UserPC: 0x1510, PCs: []uint64{0x1510, 0x1101, 0x1001}, ActStart: []uint16{0}},
			"outer;outer_mid;[host]"},
		{"sampled in an entry trampoline: an empty innermost activation",
			loader.Sample{Where: loader.InWasm, UserPC: 0x1410, PCs: []uint64{0x1101, 0x1001}, ActStart: []uint16{0, 0}},
			"outer;outer_mid;[host]"},
		{"an address in no function is shown in hex",
			loader.Sample{Where: loader.InWasm, UserPC: 0x7000, PCs: []uint64{0x7000, 0x1001}, ActStart: []uint16{0}},
			"outer;0x7000"},
		{"on a fiber: [fiber] at the root",
			loader.Sample{Where: loader.InWasm, UserPC: 0x1310, PCs: []uint64{0x1310, 0x1201, 0x1101, 0x1001}, ActStart: []uint16{0, 2}, Fibers: 3, OnFiber: true},
			"[fiber];outer;outer_mid;[host];inner;inner_leaf"},
		{"a fiber resumed by host code that Wasm on the thread's own stack called",
			loader.Sample{Where: loader.InHost, UserPC: 0x9999, PCs: []uint64{0x1201, 0x1101, 0x1001}, ActStart: []uint16{0, 1}, Fibers: 1, StackEnds: 1, OnFiber: true},
			"outer;outer_mid;[host];[fiber];inner;[host]"},
		{"a fiber resumed by host code on another fiber",
			loader.Sample{Where: loader.InWasm, UserPC: 0x1310, PCs: []uint64{0x1310, 0x1201, 0x1101, 0x1001}, ActStart: []uint16{0, 2}, Fibers: 3, StackEnds: 1, OnFiber: true},
			"[fiber];outer;outer_mid;[host];[fiber];inner;inner_leaf"},
		{"on a fiber with no Wasm yet, below Wasm on the thread's own stack",
			loader.Sample{Where: loader.InHost, UserPC: 0x9999, PCs: []uint64{0x1101, 0x1001}, ActStart: []uint16{0}, OnFiber: true},
			"outer;outer_mid;[host]"},
		{"sampled while switching fibers",
			loader.Sample{Where: loader.InHost, Stop: uint8(walker.StopFiberSwitch), UserPC: 0x9999},
			"[unwind failed: sampled while switching fibers]"},
		{"a thread in Wasm sampled in code no known module holds",
			loader.Sample{Where: loader.NoWasm, UserPC: 0x5010, CTS: true},
			"[unwind failed: code wasmtrace has not seen yet]"},
		{"the same code in a thread that never entered Wasm is another engine's, not Wasm",
			loader.Sample{Where: loader.NoWasm, UserPC: 0x5010},
			"[no Wasm]"},
		{"host code of a thread that entered Wasm is host code",
			loader.Sample{Where: loader.InHost, UserPC: 0x9999, PCs: []uint64{0x1101}, ActStart: []uint16{0}, CTS: true},
			"outer_mid;[host]"},
		{"no Wasm on the stack",
			loader.Sample{Where: loader.NoWasm, UserPC: 0x9999},
			"[no Wasm]"},
		{"a failed walk is rooted at its reason, its frames dropped",
			loader.Sample{Where: loader.InWasm, Stop: uint8(walker.StopFPOrder), UserPC: 0x1310, PCs: []uint64{0x1310}},
			"[unwind failed: frame pointer not increasing]"},
		{"a host sample whose PC is compiled Wasm came before the kernel knew the module",
			loader.Sample{Where: loader.InHost, UserPC: 0x1310, PCs: []uint64{0x1101}},
			"[unwind failed: module compiled after the last range update]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &Stats{Stops: map[string]int{}}
			b := stackBuilder{syms: testModule(), stats: st}
			ps := b.stack(tc.s)
			var names []string
			for _, f := range ps.Frames {
				names = append(names, f.Name)
			}
			if got := strings.Join(names, ";"); got != tc.want {
				t.Errorf("stack %q, want %q", got, tc.want)
			}
			failed := strings.HasPrefix(tc.want, "[unwind failed: ")
			if n := len(st.Stops); (n == 1) != failed {
				t.Errorf("stops counted %v", st.Stops)
			}
		})
	}
}
