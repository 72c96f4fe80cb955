package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/wasmtrace/wasmtrace/arch"
	"github.com/wasmtrace/wasmtrace/layout"
	"github.com/wasmtrace/wasmtrace/walker"
)

// The Go walker and the kernel walker stop at the same limits.
func TestLimitsAgree(t *testing.T) {
	for _, c := range []struct {
		name     string
		goV, bpf int
	}{
		{"frames", walker.MaxFrames, int(wasmtraceWtLimitWT_LIMIT_FRAMES)},
		{"frames (sample)", walker.MaxFrames, MaxFrames},
		{"activations", walker.MaxActivations, int(wasmtraceWtLimitWT_LIMIT_ACTIVATIONS)},
		{"activations (sample)", walker.MaxActivations, MaxActivations},
		{"CallThreadStates", walker.MaxCTS, int(wasmtraceWtLimitWT_LIMIT_CTS)},
		{"loop steps", walker.MaxSteps, int(wasmtraceWtLimitWT_LIMIT_STEPS)},
		{"ranges", MaxRanges, int(wasmtraceWtLimitWT_LIMIT_RANGE_SLOTS) / 2},
		{"log entries", maxReads, int(wasmtraceWtLimitWT_LIMIT_READS)},
	} {
		if c.goV != c.bpf {
			t.Errorf("%s: Go %d, kernel %d", c.name, c.goV, c.bpf)
		}
	}
	// A walk of the newer generation never overflows the log: at most 13
	// reads before the loop, 2 per step, and 5 more for each step that
	// starts an activation.
	if n := 13 + 2*walker.MaxSteps + 5*walker.MaxActivations; n > maxReads {
		t.Errorf("a walk can read %d times, the log holds %d", n, maxReads)
	}
}

// Stop codes and where codes have the same values on both sides.
func TestCodesAgree(t *testing.T) {
	stops := []struct {
		goV walker.Stop
		bpf wasmtraceWtStop
	}{
		{walker.StopOK, wasmtraceWtStopWT_STOP_OK},
		{walker.StopRead, wasmtraceWtStopWT_STOP_READ},
		{walker.StopFPAlign, wasmtraceWtStopWT_STOP_FP_ALIGN},
		{walker.StopFPOrder, wasmtraceWtStopWT_STOP_FP_ORDER},
		{walker.StopFPBound, wasmtraceWtStopWT_STOP_FP_BOUND},
		{walker.StopPCZero, wasmtraceWtStopWT_STOP_PC_ZERO},
		{walker.StopActOrder, wasmtraceWtStopWT_STOP_ACT_ORDER},
		{walker.StopTransition, wasmtraceWtStopWT_STOP_TRANSITION},
		{walker.StopTooDeep, wasmtraceWtStopWT_STOP_TOO_DEEP},
		{walker.StopEntryAlign, wasmtraceWtStopWT_STOP_ENTRY_ALIGN},
		{walker.StopNoFSBase, wasmtraceWtStopWT_STOP_NO_FSBASE},
		{walker.StopFiberSwitch, wasmtraceWtStopWT_STOP_FIBER_SWITCH},
		{walker.StopNoStack, wasmtraceWtStopWT_STOP_NO_STACK},
	}
	if len(stops) != int(wasmtraceWtStopWT_STOP__COUNT) {
		t.Errorf("%d stop codes compared, the kernel has %d", len(stops), wasmtraceWtStopWT_STOP__COUNT)
	}
	for _, s := range stops {
		if uint32(s.goV) != uint32(s.bpf) {
			t.Errorf("stop %q: Go %d, kernel %d", s.goV, s.goV, s.bpf)
		}
	}
	if walker.Stop(wasmtraceWtStopWT_STOP__COUNT).String() != "unknown stop reason" {
		t.Errorf("the Go walker names stop %d, which the kernel does not have", wasmtraceWtStopWT_STOP__COUNT)
	}
	for _, w := range []struct {
		goV walker.Where
		bpf Where
	}{{walker.NoWasm, NoWasm}, {walker.InWasm, InWasm}, {walker.InHost, InHost}} {
		if uint8(w.goV) != uint8(w.bpf) {
			t.Errorf("where %v: Go %d, kernel %d", w.bpf, w.goV, w.bpf)
		}
	}
}

// The maps hold what the Go types say, and the scratch value fits a
// per-CPU array (at most 32 KiB).
func TestMapTypes(t *testing.T) {
	spec, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]uintptr{
		"scratch":   unsafe.Sizeof(wasmtraceWtRecord{}),
		"processes": unsafe.Sizeof(wasmtraceWtProcess{}),
	} {
		if got := spec.Maps[name].ValueSize; uintptr(got) != size {
			t.Errorf("map %s: value size %d, Go type %d", name, got, size)
		}
	}
	if n := unsafe.Sizeof(wasmtraceWtRecord{}); n > 32<<10 {
		t.Errorf("scratch value of %d bytes is over the per-CPU limit of 32 KiB", n)
	}
	if sampleSize%8 != 0 || logHeaderSize%8 != 0 || readSize != 24 {
		t.Errorf("unexpected padding: sample %d, log header at %d, read %d", sampleSize, logHeaderSize, readSize)
	}
}

// encodeRecord builds what the kernel sends: a plain sample's used prefix,
// or a whole sample and the used part of its log.
func encodeRecord(t testing.TB, r *wasmtraceWtRecord) []byte {
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, r); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if r.S.Flags&uint8(wasmtraceWtSampleFlagWT_SAMPLE_LOGGED) != 0 {
		return b[:logHeaderSize+int(r.Log.Nreads)*readSize]
	}
	return b[:sampleHeaderSize+8*int(r.S.Nframes)]
}

func TestDecodeSample(t *testing.T) {
	r := &wasmtraceWtRecord{}
	r.S = wasmtraceWtSample{
		TimeNs: 1, Pid: 2, Tid: 3, Cpu: 1, Where: uint8(InWasm), Stop: 0, Nact: 2, Nframes: 3,
		UserPc: 0x10, UserFp: 0x20, UserSp: 0x30,
		Event: uint16(EventSyscall), Args: [3]uint64{1, 5, 10},
	}
	copy(r.S.Comm[:], []int8{'w', 'a', 's', 'm'})
	r.S.ActStart[1] = 2
	r.S.Pcs[0], r.S.Pcs[1], r.S.Pcs[2] = 0xa, 0xb, 0xc

	s, err := decodeSample(encodeRecord(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if s.Comm != "wasm" || !slices.Equal(s.PCs, []uint64{0xa, 0xb, 0xc}) || !slices.Equal(s.ActStart, []uint16{0, 2}) ||
		s.UserSP != 0x30 || s.Where != InWasm || s.Log != nil || s.Event != EventSyscall || s.Args != [3]uint64{1, 5, 10} {
		t.Errorf("decoded %+v", s)
	}

	r.S.Flags = uint8(wasmtraceWtSampleFlagWT_SAMPLE_LOGGED)
	r.Log.Fsbase, r.Log.Gen, r.Log.Nreads = 0x7f00, 7, 3
	r.Log.Flags = uint32(wasmtraceWtLogFlagWT_LOG_OVERFLOW | wasmtraceWtLogFlagWT_LOG_COPY_MISMATCH)
	r.Log.Reads[0] = wasmtraceWtRead{Addr: 0x1000, Value: 0x1122334455667788, Size: 8}
	r.Log.Reads[1] = wasmtraceWtRead{Addr: 0x2000, Size: 8, Err: -int32(unix.EFAULT)}
	r.Log.Reads[2] = wasmtraceWtRead{Addr: 0x3000, Value: 0xe58948, Size: 3}
	s, err = decodeSample(encodeRecord(t, r))
	if err != nil {
		t.Fatal(err)
	}
	want := &ReadLog{FSBase: 0x7f00, Gen: 7, Overflow: true, CopyMismatch: true, Reads: []Read{
		{Addr: 0x1000, Size: 8, Value: 0x1122334455667788},
		{Addr: 0x2000, Size: 8, Errno: int32(unix.EFAULT)},
		{Addr: 0x3000, Size: 3, Value: 0xe58948},
	}}
	if l := s.Log; l == nil || l.FSBase != want.FSBase || l.Gen != want.Gen || !l.Overflow || l.NoRegs || !l.CopyMismatch ||
		!slices.Equal(l.Reads, want.Reads) {
		t.Errorf("decoded log %+v, want %+v", s.Log, want)
	}
	if b := s.Log.Reads[2].Bytes(); !bytes.Equal(b, []byte{0x48, 0x89, 0xe5}) {
		t.Errorf("code bytes % x", b)
	}

	// Truncated or lying records are errors.
	full := encodeRecord(t, r)
	for _, n := range []int{0, sampleHeaderSize - 1, sampleHeaderSize + 8, sampleSize + 4, len(full) - 1} {
		if _, err := decodeSample(full[:n]); err == nil {
			t.Errorf("%d of %d bytes decoded", n, len(full))
		}
	}
	r.Log.Reads[1].Size = 9
	if _, err := decodeSample(encodeRecord(t, r)); err == nil {
		t.Error("a 9-byte read decoded")
	}
}

// decodeInto reuses the sample's slices for the next record, but gives a
// logged sample slices of its own (a verifier keeps it), and interns
// thread names.
func TestDecodeIntoReuses(t *testing.T) {
	r := &wasmtraceWtRecord{}
	r.S.Nframes, r.S.Nact = 3, 1
	r.S.Pcs[0], r.S.Pcs[1], r.S.Pcs[2] = 1, 2, 3
	copy(r.S.Comm[:], []int8{'a'})
	comms := map[[16]int8]string{}
	var s Sample
	if err := decodeInto(&s, encodeRecord(t, r), comms); err != nil {
		t.Fatal(err)
	}
	first := &s.PCs[0]
	r.S.Nframes, r.S.Pcs[0], r.S.Pcs[1] = 2, 7, 8
	copy(r.S.Comm[:], []int8{'b'})
	if err := decodeInto(&s, encodeRecord(t, r), comms); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.PCs, []uint64{7, 8}) || s.Comm != "b" || len(s.ActStart) != 1 {
		t.Errorf("second record decoded as %+v", s)
	}
	if &s.PCs[0] != first {
		t.Error("the second record's PCs did not reuse the first's array")
	}
	if len(comms) != 2 {
		t.Errorf("%d thread names interned, want 2", len(comms))
	}
	r.S.Flags = uint8(wasmtraceWtSampleFlagWT_SAMPLE_LOGGED)
	if err := decodeInto(&s, encodeRecord(t, r), comms); err != nil {
		t.Fatal(err)
	}
	if &s.PCs[0] == first || s.Log == nil {
		t.Error("a logged sample shares the reused PCs")
	}
}

func FuzzDecodeSample(f *testing.F) {
	r := &wasmtraceWtRecord{}
	r.S.Nframes, r.S.Nact = 2, 1
	f.Add(encodeRecord(f, r))
	r.S.Flags = uint8(wasmtraceWtSampleFlagWT_SAMPLE_LOGGED)
	r.Log.Nreads = 2
	r.Log.Reads[0].Size, r.Log.Reads[1].Size = 8, 1
	f.Add(encodeRecord(f, r))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := decodeSample(raw)
		if err != nil {
			return
		}
		if len(s.PCs) > MaxFrames || len(s.ActStart) > MaxActivations || len(s.Comm) > 16 {
			t.Fatalf("decoded beyond the limits: %d frames, %d activations", len(s.PCs), len(s.ActStart))
		}
		if len(raw) < sampleHeaderSize+8*len(s.PCs) {
			t.Fatalf("%d frames from %d bytes", len(s.PCs), len(raw))
		}
		if s.Log != nil {
			if len(s.Log.Reads) > maxReads || len(raw) < logHeaderSize+readSize*len(s.Log.Reads) {
				t.Fatalf("%d reads from %d bytes", len(s.Log.Reads), len(raw))
			}
			for _, rd := range s.Log.Reads {
				if rd.Size < 1 || rd.Size > 8 || rd.Errno < 0 || len(rd.Bytes()) != int(rd.Size) {
					t.Fatalf("malformed read decoded: %+v", rd)
				}
			}
		}
	})
}

// The kernel walker must stay cheap to verify: well under the kernel's
// limit of a million instructions, and fast to load.
func TestVerifierCost(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("loading BPF needs root, and CI=true forbids skipping")
		}
		t.Skip("loading BPF needs root")
	}
	spec, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
	})
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			t.Fatalf("%+v", verr)
		}
		t.Fatal(err)
	}
	defer coll.Close()
	for name, prog := range coll.Programs {
		log := prog.VerifierLog
		m := regexp.MustCompile(`processed (\d+) insns`).FindStringSubmatch(log)
		if m == nil {
			t.Fatalf("%s: no instruction count in the verifier log:\n%s", name, log)
		}
		n, _ := strconv.Atoi(m[1])
		t.Logf("verifier: %s: %s", name, m[0])
		if n > 100_000 {
			t.Errorf("%s: the verifier processed %d instructions, want at most 100k:\n%s", name, n, log)
		}
	}
}

func TestEncodeVerify(t *testing.T) {
	l := layout39()
	for _, c := range []struct {
		f     float64
		below uint64
	}{{0, 0}, {1, 1 << 32}, {0.5, 1 << 31}, {0.25, 1 << 30}} {
		v, _, err := ProcessConfig{Layout: l, Arch: arch.AMD64, Verify: c.f}.encode()
		if err != nil || v.VerifyBelow != c.below {
			t.Errorf("Verify %v: below %#x, %v; want %#x", c.f, v.VerifyBelow, err, c.below)
		}
	}
	for _, f := range []float64{-0.1, 1.01, math.NaN()} {
		if _, _, err := (ProcessConfig{Layout: l, Arch: arch.AMD64, Verify: f}).encode(); err == nil {
			t.Errorf("Verify %v accepted", f)
		}
	}
}

// The kernel copies each record's words in one read: the spans cover
// exactly the fields the walk reads, and a layout whose fields are too far
// apart for one copy gets none.
func TestEncodeSpans(t *testing.T) {
	v39 := layout39()
	seed := &layout.Layout{
		Generation: layout.Seed, TLSOffset: -0x40, TLSMask: ^uint64(0),
		CTSStore: 0x48, CTSPrev: 0x50,
		SavedExitFP: 0x58, SavedExitPC: 0x60, SavedEntry: 0x68,
		StoreExitFP: 0x18, StoreExitPC: 0x20, StoreEntry: 0x28,
	}
	far := *v39
	far.CTSPrev = 0x400
	type spans struct{ cts, saved, store wasmtraceWtSpan }
	sp := func(lo, n uint32) wasmtraceWtSpan { return wasmtraceWtSpan{Lo: lo, Len: n} }
	for _, c := range []struct {
		name string
		l    *layout.Layout
		want spans
	}{
		{"39", v39, spans{sp(0x10, 0xa8), sp(0x20, 0x18), sp(0x28, 0x20)}},
		// Saved values inline: the CTS span holds them, no span of their own.
		{"seed", seed, spans{sp(0x48, 0x28), sp(0, 0), sp(0x18, 0x18)}},
		{"far apart", &far, spans{sp(0, 0), sp(0x20, 0x18), sp(0x28, 0x20)}},
	} {
		v, _, err := ProcessConfig{Layout: c.l, Arch: arch.AMD64}.encode()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := (spans{v.Layout.CtsSpan, v.Layout.SavedSpan, v.Layout.StoreSpan}); got != c.want {
			t.Errorf("%s: spans %+v, want %+v", c.name, got, c.want)
		}
	}
	odd := arch.AMD64
	odd.ReturnAddrOffset = 16
	if _, _, err := (ProcessConfig{Layout: v39, Arch: odd}).encode(); err == nil {
		t.Errorf("a return address at FP+16 was accepted")
	}
}

// layout39 is Wasmtime 39's layout (layout/known.go).
func layout39() *layout.Layout {
	return &layout.Layout{
		Generation: layout.EntryFP, TLSOffset: -0x68, TLSMask: ^uint64(1),
		CTSStore: 0x10, CTSPrev: 0xa8, CTSOld: 0xb0,
		SavedExitPC: 0x20, SavedExitFP: 0x28, SavedEntry: 0x30,
		StoreExitFP: 0x28, StoreExitPC: 0x30, StoreEntry: 0x40,
	}
}

// Every program of the object has a place to go, and each command loads
// only the programs it attaches: the verifier's time on the others would
// delay the first sample.
func TestLoadsOnlyAttachedPrograms(t *testing.T) {
	spec, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	places := (&wasmtracePrograms{}).byName()
	for name := range spec.Programs {
		if places[name] == nil {
			t.Errorf("program %s of the object is never assigned", name)
		}
	}
	if len(places) != len(spec.Programs) {
		t.Errorf("%d places for %d programs", len(places), len(spec.Programs))
	}

	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("loading BPF needs root, and CI=true forbids skipping")
		}
		t.Skip("loading BPF needs root")
	}
	loaded := func(tr *Tracer) []string {
		var out []string
		for name, p := range tr.objs.wasmtracePrograms.byName() {
			if *p != nil {
				out = append(out, name)
			}
		}
		slices.Sort(out)
		return out
	}
	tr, err := Open(99)
	if err != nil {
		t.Fatal(err)
	}
	// The code notes' programs go with every command (code.go).
	if got := loaded(tr); !slices.Equal(got, []string{progCode, progSample, progUnmap}) {
		t.Errorf("Open loaded %v, want only %s and the code notes'", got, progSample)
	}
	tr.Close()
	tr, err = OpenTrace(TraceOptions{Trap: true, OffCPU: true, MinBlock: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := loaded(tr); !slices.Equal(got, []string{progCode, progOffCPU, progTrap, progUnmap}) {
		t.Errorf("OpenTrace(trap, offcpu) loaded %v, want %s and %s and the code notes'", got, progOffCPU, progTrap)
	}
	tr.Close()
}
