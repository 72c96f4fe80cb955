package record

import (
	"bytes"
	"strings"
	"testing"

	"github.com/wasmtrace/wasmtrace/loader"
	"github.com/wasmtrace/wasmtrace/profile"
	"github.com/wasmtrace/wasmtrace/symbolize"
	"github.com/wasmtrace/wasmtrace/walker"
)

// funcTable is a fixed module: functions at [start, end). A test may
// replace the module (replace) as a module freed and another compiled at
// its address would be.
type funcTable struct {
	m       *symbolize.Module
	gen     uint64
	lookups int // Lookup calls
	current int // Current calls
}

func (t *funcTable) Generation() uint64 { return t.gen }

func (t *funcTable) Current(m *symbolize.Module) bool {
	t.current++
	return m == t.m
}

// replace puts another module at the same address: as the real
// Symbolizer, only Current says so, and then the generation changes.
func (t *funcTable) replace(rename func(string) string) {
	m := *t.m
	m.Funcs = nil
	for _, f := range t.m.Funcs {
		f.Name = rename(f.Name)
		m.Funcs = append(m.Funcs, f)
	}
	t.m = &m
	t.gen++
}

// Executable memory that no module of the table holds.
const unseenLo, unseenHi = 0x5000, 0x6000

func (t *funcTable) UnseenCode(pc uint64) bool { return pc >= unseenLo && pc < unseenHi }

func (t *funcTable) Lookup(pc uint64) (symbolize.Func, *symbolize.Module, bool) {
	t.lookups++
	for _, f := range t.m.Funcs {
		if pc >= f.Start && pc < f.End {
			return f, t.m, true
		}
	}
	return symbolize.Func{}, nil, false
}

func testModule() *funcTable {
	fn := func(start uint64, name string, kind symbolize.Kind) symbolize.Func {
		return symbolize.Func{Start: start, End: start + 0x100, Name: name, Kind: kind, Index: -1}
	}
	return &funcTable{m: &symbolize.Module{Name: "m", Funcs: []symbolize.Func{
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
			// A recording's path, with its caches: the same stack, the
			// second and third time from the cache.
			rst := &Stats{Stops: map[string]int{}}
			p := profile.New()
			rb := newStackBuilder(testModule(), rst, p)
			for range 3 {
				rb.add(p, tc.s, "proc")
			}
			if got, want := folded(t, p), tc.want+" 3\n"; got != want {
				t.Errorf("recorded %q, want %q", got, want)
			}
			if rst.Samples != 3 || len(rst.Stops) != len(st.Stops) {
				t.Errorf("recorded stats %+v, want 3 samples and stops %v", rst, st.Stops)
			}
		})
	}
}

func folded(t *testing.T, p *profile.Profile) string {
	t.Helper()
	var b bytes.Buffer
	if err := p.WriteFolded(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var deepSample = loader.Sample{PID: 1, TID: 2, Comm: "w", Where: loader.InWasm, UserPC: 0x1310,
	PCs: []uint64{0x1310, 0x1201, 0x1101, 0x1001}, ActStart: []uint16{0, 2}}

// A stack seen before is not symbolized again: no Lookup at all.
func TestStackCacheSkipsSymbolizing(t *testing.T) {
	syms := testModule()
	p := profile.New()
	b := newStackBuilder(syms, &Stats{Stops: map[string]int{}}, p)
	b.add(p, deepSample, "proc")
	n := syms.lookups
	if n != 4 {
		t.Fatalf("%d lookups for 4 PCs", n)
	}
	for range 10 {
		b.add(p, deepSample, "proc")
	}
	if syms.lookups != n {
		t.Errorf("%d lookups for 10 cached samples", syms.lookups-n)
	}
	// Another stack sharing PCs looks up only the new one.
	other := deepSample
	other.PCs = []uint64{0x1310, 0x1201, 0x1101, 0x1010}
	b.add(p, other, "proc")
	if syms.lookups != n+1 {
		t.Errorf("%d lookups for a stack with one new PC", syms.lookups-n)
	}
	// What else decides the frames is in the key: the same PCs in one
	// activation have no [host] between them.
	one := deepSample
	one.ActStart = []uint16{0}
	b.add(p, one, "proc")
	if got, want := folded(t, p), "outer;outer_mid;[host];inner;inner_leaf 11\nouter;outer_mid;inner;inner_leaf 1\nouter;outer_mid;[host];inner;inner_leaf 1\n"; got != want &&
		got != "outer;outer_mid;[host];inner;inner_leaf 12\nouter;outer_mid;inner;inner_leaf 1\n" {
		t.Errorf("profile:\n%s", got)
	}
}

// A module replaced at the same address (same generation until Current
// is asked) is noticed on the first cached use after a refresh, and its
// new names are used from then on.
func TestStackCacheFollowsModules(t *testing.T) {
	syms := testModule()
	p := profile.New()
	b := newStackBuilder(syms, &Stats{Stops: map[string]int{}}, p)
	b.add(p, deepSample, "proc")
	b.add(p, deepSample, "proc")
	if syms.current != 0 {
		// Lookup itself checked the module: no Current needed yet.
		t.Errorf("%d Current calls before any refresh", syms.current)
	}
	b.newEpoch()
	b.add(p, deepSample, "proc")
	b.add(p, deepSample, "proc")
	if syms.current != 1 {
		t.Errorf("%d Current calls for two cached samples after a refresh, want 1", syms.current)
	}
	syms.replace(func(n string) string { return "new_" + n })
	syms.gen-- // not known until Current says so
	b.newEpoch()
	b.add(p, deepSample, "proc")
	if got, want := folded(t, p), "new_outer;new_outer_mid;[host];new_inner;new_inner_leaf 1\nouter;outer_mid;[host];inner;inner_leaf 4\n"; got != want {
		t.Errorf("after the module was replaced:\n%s\nwant\n%s", got, want)
	}
	// A generation change alone empties the caches too.
	syms.replace(func(n string) string { return "v3_" + n[len("new_"):] })
	b.add(p, deepSample, "proc")
	if got := folded(t, p); !strings.Contains(got, "v3_outer;v3_outer_mid;[host];v3_inner;v3_inner_leaf 1\n") {
		t.Errorf("after a generation change:\n%s", got)
	}
}

// A profile that folds its stacks renumbers them: the cache does not
// count a sample under a stale id.
func TestStackCacheFollowsFolding(t *testing.T) {
	syms := testModule()
	p := profile.New()
	p.MaxStacks = 2
	b := newStackBuilder(syms, &Stats{Stops: map[string]int{}}, p)
	a := deepSample
	c := deepSample
	c.PCs = []uint64{0x1210, 0x1101, 0x1001}
	c.ActStart = []uint16{0}
	d := c
	d.PCs = []uint64{0x1010}
	for range 5 {
		b.add(p, a, "proc")
	}
	b.add(p, c, "proc")
	b.add(p, d, "proc") // a third stack: the two rarest fold
	for range 2 {
		b.add(p, a, "proc")
	}
	if got, want := folded(t, p), "[folded] 2\nouter;outer_mid;[host];inner;inner_leaf 7\n"; got != want {
		t.Errorf("profile:\n%s\nwant\n%s", got, want)
	}
}
