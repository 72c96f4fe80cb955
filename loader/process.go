package loader

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"unsafe"

	"github.com/wasmtrace/wasmtrace/arch"
	"github.com/wasmtrace/wasmtrace/layout"
)

// ProcessConfig is what the kernel walker needs to know about one process.
type ProcessConfig struct {
	Layout *layout.Layout
	Arch   arch.Arch
	// Ranges are the [start, end) address ranges of compiled Wasm code
	// (each module's .text). A sample whose PC is in one is "in Wasm".
	Ranges [][2]uint64
}

func (c ProcessConfig) encode() (*wasmtraceWtProcess, error) {
	l := c.Layout
	if l == nil {
		return nil, fmt.Errorf("no layout")
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if len(c.Ranges) > MaxRanges {
		return nil, fmt.Errorf("%d compiled-code ranges, the kernel walker holds %d", len(c.Ranges), MaxRanges)
	}
	// The kernel binary-searches the ranges: sort them, and refuse
	// overlaps, which would make the search miss.
	ranges := slices.Clone(c.Ranges)
	slices.SortFunc(ranges, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	v := &wasmtraceWtProcess{Nranges: uint32(len(ranges))}
	for i, r := range ranges {
		if r[1] <= r[0] || (i > 0 && r[0] < ranges[i-1][1]) {
			return nil, fmt.Errorf("compiled-code range %#x-%#x is empty or overlaps another", r[0], r[1])
		}
		v.Ranges[i] = wasmtraceWtRange{Start: r[0], End: r[1]}
	}
	k := &v.Layout
	k.BoundKind = uint32(wasmtraceWtBoundKindWT_BOUND_ENTRY_FP)
	if l.Generation == layout.Seed {
		k.BoundKind = uint32(wasmtraceWtBoundKindWT_BOUND_ENTRY_SP)
	}
	k.ExitFpIndirect = b2u(l.ExitFPIndirect())
	k.TlsOffset = l.TLSOffset
	k.TlsMask = l.TLSMask
	k.CtsStore, k.CtsPrev = l.CTSStore, l.CTSPrev
	k.CtsOldIndirect, k.CtsOld = b2u(l.SavedIndirect()), l.CTSOld
	k.OldExitPc, k.OldExitFp, k.OldEntry = l.SavedExitPC, l.SavedExitFP, l.SavedEntry
	k.StoreExitPc, k.StoreExitFp, k.StoreEntry = l.StoreExitPC, l.StoreExitFP, l.StoreEntry
	a := c.Arch
	k.RaOffset, k.FpOffset = uint32(a.ReturnAddrOffset), uint32(a.NextOlderFPOffset)
	k.FpAlign = a.FPAlign
	k.SeedGap, k.SeedSpAlign, k.SeedSpRem = a.SeedEntrySPGap, a.SeedEntrySPAlign, a.SeedEntrySPRem
	return v, nil
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// Where a sampled thread was.
type Where uint8

const (
	NoWasm = Where(wasmtraceWtWhereWT_WHERE_NO_WASM)
	InWasm = Where(wasmtraceWtWhereWT_WHERE_WASM)
	InHost = Where(wasmtraceWtWhereWT_WHERE_HOST)
)

func (w Where) String() string {
	switch w {
	case NoWasm:
		return "no-wasm"
	case InWasm:
		return "wasm"
	case InHost:
		return "host"
	}
	return fmt.Sprintf("where(%d)", uint8(w))
}

// Sample is one walk, as the kernel sent it.
type Sample struct {
	TimeNs   uint64
	PID, TID uint32
	CPU      uint32
	Comm     string
	Where    Where
	// Stop is why the walk ended: 0 (walker.StopOK) for a complete walk.
	Stop uint8
	// UserPC, UserFP, UserSP are the sampled registers.
	UserPC, UserFP, UserSP uint64
	// PCs are the Wasm frames, innermost first. PCs[0] is the sampled PC
	// itself when Where is InWasm; every other one is a return address.
	PCs []uint64
	// ActStart[i] is the index in PCs of activation i's innermost frame;
	// activation 0 is the innermost.
	ActStart []uint16
}

var sampleHeaderSize = int(unsafe.Offsetof(wasmtraceWtSample{}.Pcs))

func decodeSample(raw []byte) (Sample, error) {
	if len(raw) < sampleHeaderSize {
		return Sample{}, fmt.Errorf("short sample: %d bytes", len(raw))
	}
	var k wasmtraceWtSample
	n := len(raw)
	if max := int(unsafe.Sizeof(k)); n > max {
		n = max
	}
	buf := make([]byte, unsafe.Sizeof(k))
	copy(buf, raw[:n])
	if err := binary.Read(bytes.NewReader(buf), binary.NativeEndian, &k); err != nil {
		return Sample{}, fmt.Errorf("decode sample: %w", err)
	}
	nf := int(k.Nframes)
	if nf > MaxFrames || sampleHeaderSize+8*nf > len(raw) {
		return Sample{}, fmt.Errorf("sample claims %d frames in %d bytes", nf, len(raw))
	}
	na := int(k.Nact)
	if na > MaxActivations {
		return Sample{}, fmt.Errorf("sample claims %d activations", na)
	}
	s := Sample{
		TimeNs: k.TimeNs, PID: k.Pid, TID: k.Tid, CPU: k.Cpu,
		Where: Where(k.Where), Stop: k.Stop,
		UserPC: k.UserPc, UserFP: k.UserFp, UserSP: k.UserSp,
		PCs:      append([]uint64(nil), k.Pcs[:nf]...),
		ActStart: append([]uint16(nil), k.ActStart[:na]...),
	}
	var comm []byte
	for _, c := range k.Comm {
		if c == 0 {
			break
		}
		comm = append(comm, byte(c))
	}
	s.Comm = string(comm)
	return s, nil
}
