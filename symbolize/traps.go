package symbolize

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/wasmtrace/wasmtrace/proc"
)

// TrapTable is a compiled module's .wasmtime.traps section: where its code
// traps on purpose (an unreachable, a bounds check, a division by zero), and
// why. Wasmtime's own signal handler looks a faulting PC up in it.
//
// The encoding, the same from Wasmtime 3 to 39 (crates/environ/src/
// trap_encoding.rs, parse): a little-endian u32 count N, N sorted u32
// offsets of trapping instructions from the start of .text, then N one-byte
// trap codes (enum Trap).
type TrapTable struct {
	textStart uint64
	offsets   []uint32
	codes     []byte
}

// ReadTraps reads the trap table of m from the memory of its process.
// A module without the section gets an empty table.
func ReadTraps(mem proc.Memory, m *Module) (*TrapTable, error) {
	f, err := elf.NewFile(proc.ReaderAt{Mem: mem, Base: m.Base, Limit: int64(m.size)})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	b, err := readSection(f, ".wasmtime.traps", maxSectionRead, false)
	if err != nil {
		return nil, err
	}
	return parseTraps(b, m.TextStart)
}

func parseTraps(b []byte, textStart uint64) (*TrapTable, error) {
	t := &TrapTable{textStart: textStart}
	if len(b) == 0 {
		return t, nil
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("trap table of %d bytes", len(b))
	}
	n := uint64(binary.LittleEndian.Uint32(b))
	if 4+5*n != uint64(len(b)) {
		return nil, fmt.Errorf("trap table of %d bytes claims %d traps", len(b), n)
	}
	t.offsets = make([]uint32, n)
	for i := range t.offsets {
		t.offsets[i] = binary.LittleEndian.Uint32(b[4+4*i:])
	}
	t.codes = b[4+4*n:]
	return t, nil
}

// Lookup returns the trap code of the instruction at pc, and whether pc is
// a trapping instruction of the table.
func (t *TrapTable) Lookup(pc uint64) (TrapCode, bool) {
	if t == nil || pc < t.textStart || pc-t.textStart > 1<<32-1 {
		return 0, false
	}
	off := uint32(pc - t.textStart)
	i := sort.Search(len(t.offsets), func(i int) bool { return t.offsets[i] >= off })
	if i == len(t.offsets) || t.offsets[i] != off {
		return 0, false
	}
	return TrapCode(t.codes[i]), true
}

// TrapCode is Wasmtime's enum Trap, as stored in the table.
type TrapCode uint8

// The codes that are the same in Wasmtime 3 to 39 (enum Trap).
var trapNames = []string{
	"stack overflow",                // StackOverflow
	"out of bounds memory access",   // MemoryOutOfBounds (HeapOutOfBounds in 3)
	"unaligned atomic",              // HeapMisaligned
	"out of bounds table access",    // TableOutOfBounds
	"uninitialized element",         // IndirectCallToNull
	"indirect call type mismatch",   // BadSignature
	"integer overflow",              // IntegerOverflow
	"integer divide by zero",        // IntegerDivisionByZero
	"invalid conversion to integer", // BadConversionToInteger
	"unreachable",                   // UnreachableCodeReached
	"interrupt",                     // Interrupt
	"degenerate component adapter",  // AlwaysTrapAdapter
}

func (c TrapCode) String() string {
	if int(c) < len(trapNames) {
		return trapNames[c]
	}
	return fmt.Sprintf("trap code %d", uint8(c))
}
