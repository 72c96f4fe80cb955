package loader

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/wasmtrace/wasmtrace/arch"
	"github.com/wasmtrace/wasmtrace/layout"
	"github.com/wasmtrace/wasmtrace/proc"
)

// ProcessConfig is what the kernel walker needs to know about one process.
type ProcessConfig struct {
	Layout *layout.Layout
	Arch   arch.Arch
	// Stacks says where the process's threads keep their own stacks.
	Stacks proc.Stacks
	// Ranges are the [start, end) address ranges of compiled Wasm code
	// (each module's .text). A sample whose PC is in one is "in Wasm".
	Ranges [][2]uint64
	// CoveredNs is the time (of the kernel's clock, Sample.TimeNs) of the
	// latest EventCode note of the process that Ranges take into account:
	// the kernel's own list of code published since then still counts.
	// 0 when no note was read.
	CoveredNs uint64
	// Verify is the fraction (0 to 1) of samples whose walk logs every
	// memory read it makes (Sample.Log), for checking against the Go
	// walker. 0 costs nothing.
	Verify float64
}

func (c ProcessConfig) encode() (*wasmtraceWtProcess, []wasmtraceWtRange, error) {
	l := c.Layout
	if l == nil {
		return nil, nil, fmt.Errorf("no layout")
	}
	if err := l.Validate(); err != nil {
		return nil, nil, err
	}
	if len(c.Ranges) > MaxRanges {
		return nil, nil, fmt.Errorf("%d compiled-code ranges, the kernel walker holds %d per process", len(c.Ranges), MaxRanges)
	}
	// The kernel binary-searches the ranges: sort them, and refuse
	// overlaps, which would make the search miss.
	if !(c.Verify >= 0 && c.Verify <= 1) {
		return nil, nil, fmt.Errorf("verification fraction %v is not between 0 and 1", c.Verify)
	}
	ranges := slices.Clone(c.Ranges)
	slices.SortFunc(ranges, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	v := &wasmtraceWtProcess{Nranges: uint32(len(ranges))}
	if c.Stacks.TCBBlock > math.MaxUint32-8 {
		return nil, nil, fmt.Errorf("TCB stack block offset %#x out of range", c.Stacks.TCBBlock)
	}
	v.Stacks = wasmtraceWtStacks{MainLo: c.Stacks.MainLo, MainHi: c.Stacks.MainHi, TcbBlock: uint32(c.Stacks.TCBBlock)}
	// A sample is logged when a uniform 32-bit random number is below
	// VerifyBelow: 1<<32 logs all.
	v.VerifyBelow = uint64(math.Round(c.Verify * (1 << 32)))
	kr := make([]wasmtraceWtRange, len(ranges))
	for i, r := range ranges {
		if r[1] <= r[0] || (i > 0 && r[0] < ranges[i-1][1]) {
			return nil, nil, fmt.Errorf("compiled-code range %#x-%#x is empty or overlaps another", r[0], r[1])
		}
		kr[i] = wasmtraceWtRange{Start: r[0], End: r[1]}
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
	saved := []uint32{l.SavedExitPC, l.SavedExitFP, l.SavedEntry}
	if l.LimitKnown && l.SavedIndirect() {
		k.OldLimitKnown, k.OldLimitTag, k.OldLimitValue = 1, l.SavedLimitTag, l.SavedLimitValue
		saved = append(saved, l.SavedLimitTag, l.SavedLimitValue)
	}
	if l.SavedIndirect() {
		k.CtsSpan = span(l.CTSStore, l.CTSPrev, l.CTSOld)
		k.SavedSpan = span(saved...)
	} else {
		k.CtsSpan = span(append(saved, l.CTSStore, l.CTSPrev)...)
	}
	k.StoreSpan = span(l.StoreExitPC, l.StoreExitFP, l.StoreEntry)
	a := c.Arch
	// The kernel reads a frame record from its stack copy as two words.
	if offs := [2]uint64{a.ReturnAddrOffset, a.NextOlderFPOffset}; offs != [2]uint64{8, 0} && offs != [2]uint64{0, 8} {
		return nil, nil, fmt.Errorf("frame record with the return address at +%d and the caller's FP at +%d: the kernel walker reads them as two words at FP",
			a.ReturnAddrOffset, a.NextOlderFPOffset)
	}
	k.RaOffset, k.FpOffset = uint32(a.ReturnAddrOffset), uint32(a.NextOlderFPOffset)
	k.FpAlign = a.FPAlign
	k.SeedGap, k.SeedSpAlign, k.SeedSpRem = a.SeedEntrySPGap, a.SeedEntrySPAlign, a.SeedEntrySPRem
	return v, kr, nil
}

// span is the bytes of a record that hold the words at offsets, for the
// kernel to copy in one read; none when they lie farther apart than its
// copy holds.
func span(offsets ...uint32) wasmtraceWtSpan {
	lo, hi := slices.Min(offsets), slices.Max(offsets)+8
	if hi-lo > uint32(wasmtraceWtLimitWT_LIMIT_SPAN_BYTES) {
		return wasmtraceWtSpan{}
	}
	return wasmtraceWtSpan{Lo: lo, Len: hi - lo}
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
	// Fibers has bit i set when activation i ran on a fiber stack;
	// StackEnds when activation i was the oldest of its store on its
	// stack (see walker.Result). OnFiber: the sampled SP was not on the
	// thread's own stack.
	Fibers, StackEnds uint32
	OnFiber           bool
	// CTS: the thread's thread-local slot held a CallThreadState.
	CTS bool
	// Event is what made the walk (EventSample for record), Args its
	// arguments (see Event).
	Event Event
	Args  [3]uint64
	// Log is what the walk read, for the samples chosen for verification
	// (ProcessConfig.Verify); nil for the others.
	Log *ReadLog
}

// ReadLog is every user-memory read of one kernel walk, in order: with the
// sample's registers, all that a replay of the walk needs.
type ReadLog struct {
	FSBase uint64 // the thread pointer the walk used (0: unknown)
	// Gen identifies the configuration the walk used; Ranges are its
	// compiled-code ranges (sorted), nil when that configuration is no
	// longer known.
	Gen    uint32
	Ranges [][2]uint64
	// Overflow: the walk read more than the log holds; Reads is a prefix.
	Overflow bool
	// NoRegs: the walk did not start, the user registers were unreadable.
	NoRegs bool
	// CopyMismatch: a word the kernel took from its copy of user memory
	// differed from a direct read of the same word (Reads holds the
	// direct reads): a fault of the kernel walker's copies.
	CopyMismatch bool
	Reads        []Read
}

// Read is one logged read.
type Read struct {
	Addr  uint64
	Size  uint32 // 1 to 8 bytes
	Errno int32  // 0 when the read succeeded, else the (positive) errno
	Value uint64 // the bytes read, little-endian; 0 when it failed
}

// Bytes returns the bytes the read returned.
func (r Read) Bytes() []byte {
	b := make([]byte, r.Size)
	for i := range b {
		b[i] = byte(r.Value >> (8 * i))
	}
	return b
}

var (
	sampleHeaderSize = int(unsafe.Offsetof(wasmtraceWtSample{}.Pcs))
	sampleSize       = int(unsafe.Sizeof(wasmtraceWtSample{}))
	// A logged sample: the whole sample, the log's header, its reads.
	logHeaderSize = int(unsafe.Offsetof(wasmtraceWtRecord{}.Log) + unsafe.Offsetof(wasmtraceWtReadlog{}.Reads))
	readSize      = int(unsafe.Sizeof(wasmtraceWtRead{}))
	maxReads      = len(wasmtraceWtReadlog{}.Reads)
)

func decodeSample(raw []byte) (Sample, error) {
	var s Sample
	err := decodeInto(&s, raw, nil)
	return s, err
}

// decodeInto decodes raw into s, reusing the capacity of s's PCs and
// ActStart (a sample with a read log gets slices of its own: a verifier
// keeps those). comms, if not nil, interns thread names.
func decodeInto(s *Sample, raw []byte, comms map[[16]int8]string) error {
	if len(raw) < sampleHeaderSize {
		return fmt.Errorf("short sample: %d bytes", len(raw))
	}
	// The record is the C struct's bytes, in the host's byte order and
	// layout (structs.HostLayout): copy the header over the Go mirror
	// rather than decode field by field, which cost more than the rest of
	// a sample's handling; the PCs are copied straight into s.
	var k wasmtraceWtSample
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&k)), sampleHeaderSize), raw)
	nf := int(k.Nframes)
	if nf > MaxFrames || sampleHeaderSize+8*nf > len(raw) {
		return fmt.Errorf("sample claims %d frames in %d bytes", nf, len(raw))
	}
	na := int(k.Nact)
	if na > MaxActivations {
		return fmt.Errorf("sample claims %d activations", na)
	}
	logged := k.Flags&uint8(wasmtraceWtSampleFlagWT_SAMPLE_LOGGED) != 0
	pcs, acts := s.PCs[:0], s.ActStart[:0]
	if logged {
		pcs, acts = nil, nil
	}
	// The PCs follow the header, 8-byte aligned as the ring buffer keeps
	// every record.
	for i := range nf {
		pcs = append(pcs, binary.NativeEndian.Uint64(raw[sampleHeaderSize+8*i:]))
	}
	*s = Sample{
		TimeNs: k.TimeNs, PID: k.Pid, TID: k.Tid, CPU: k.Cpu,
		Where: Where(k.Where), Stop: k.Stop,
		UserPC: k.UserPc, UserFP: k.UserFp, UserSP: k.UserSp,
		Event: Event(k.Event), Args: k.Args,
		PCs:      pcs,
		ActStart: append(acts, k.ActStart[:na]...),
		OnFiber:  k.Flags&uint8(wasmtraceWtSampleFlagWT_SAMPLE_ON_FIBER) != 0,
		CTS:      k.Flags&uint8(wasmtraceWtSampleFlagWT_SAMPLE_CTS) != 0,
		// Bits of activations it does not have are not trusted.
		Fibers:    k.FiberActs & (1<<na - 1),
		StackEnds: k.StackEnds & (1<<na - 1),
		Comm:      commName(k.Comm, comms),
	}
	if logged {
		log, err := decodeLog(raw)
		if err != nil {
			return err
		}
		s.Log = log
	}
	return nil
}

// commName is a thread name's string, from comms when it has it (most
// samples name a thread seen before), added there otherwise.
func commName(c [16]int8, comms map[[16]int8]string) string {
	if name, ok := comms[c]; ok {
		return name
	}
	var b []byte
	for _, ch := range c {
		if ch == 0 {
			break
		}
		b = append(b, byte(ch))
	}
	name := string(b)
	if comms != nil {
		if len(comms) >= maxComms {
			clear(comms)
		}
		comms[c] = name
	}
	return name
}

// maxComms bounds the interned thread names.
const maxComms = 4096

// decodeLog decodes the read log that follows a whole sample.
func decodeLog(raw []byte) (*ReadLog, error) {
	if len(raw) < logHeaderSize {
		return nil, fmt.Errorf("logged sample of %d bytes has no read log", len(raw))
	}
	le := binary.NativeEndian
	var k wasmtraceWtReadlog
	h := raw[sampleSize:]
	flags := le.Uint32(h[unsafe.Offsetof(k.Flags):])
	n := int(le.Uint32(h[unsafe.Offsetof(k.Nreads):]))
	if n > maxReads || logHeaderSize+n*readSize > len(raw) {
		return nil, fmt.Errorf("read log claims %d reads in %d bytes", n, len(raw))
	}
	log := &ReadLog{
		FSBase:       le.Uint64(h[unsafe.Offsetof(k.Fsbase):]),
		Gen:          le.Uint32(h[unsafe.Offsetof(k.Gen):]),
		Overflow:     flags&uint32(wasmtraceWtLogFlagWT_LOG_OVERFLOW) != 0,
		NoRegs:       flags&uint32(wasmtraceWtLogFlagWT_LOG_NO_REGS) != 0,
		CopyMismatch: flags&uint32(wasmtraceWtLogFlagWT_LOG_COPY_MISMATCH) != 0,
		Reads:        make([]Read, n),
	}
	var e wasmtraceWtRead
	for i := range log.Reads {
		b := raw[logHeaderSize+i*readSize:]
		r := Read{
			Addr:  le.Uint64(b[unsafe.Offsetof(e.Addr):]),
			Value: le.Uint64(b[unsafe.Offsetof(e.Value):]),
			Size:  le.Uint32(b[unsafe.Offsetof(e.Size):]),
			Errno: -int32(le.Uint32(b[unsafe.Offsetof(e.Err):])),
		}
		if r.Size == 0 || r.Size > 8 || r.Errno < 0 {
			return nil, fmt.Errorf("read %d of the log is malformed: %d bytes, error %d", i, r.Size, r.Errno)
		}
		log.Reads[i] = r
	}
	return log, nil
}
