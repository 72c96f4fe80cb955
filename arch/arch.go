// Package arch holds the facts about a machine's stack that the frame-pointer
// walk depends on. They are the one source for both walkers: the Go reference
// walker reads them directly and the loader copies them into the BPF
// program's per-process configuration, so the kernel never retypes them.
//
// A frame record, on both supported architectures, looks like this
// (stack grows down, addresses increase upwards):
//
//	| ...                 |
//	| return address      | <- fp + ReturnAddrOffset  (pc of the caller)
//	| caller's fp         | <- fp + NextOlderFPOffset (fp points here)
//	| callee locals ...   |
package arch

import "fmt"

// Arch describes one instruction set's frame layout and alignment rules,
// as Wasmtime's own unwinder assumes them (crates/unwinder/src/arch/).
type Arch struct {
	Name string
	// NextOlderFPOffset is where the caller's FP is saved, relative to FP.
	NextOlderFPOffset uint64
	// ReturnAddrOffset is where the return address is saved, relative to FP.
	ReturnAddrOffset uint64
	// FPAlign: every frame pointer of Cranelift code is a multiple of it.
	FPAlign uint64
	// SeedEntrySPGap: in the seed generation (Wasmtime 3 to ~25) a Wasm
	// region ends at the frame whose FP equals entry SP minus this gap; that
	// frame belongs to the host-to-Wasm trampoline.
	SeedEntrySPGap uint64
	// SeedEntrySPAlign and SeedEntrySPRem: the seed asserts
	// entry_sp % SeedEntrySPAlign == SeedEntrySPRem.
	SeedEntrySPAlign, SeedEntrySPRem uint64
	// PCMask clears bits a return address may carry that are not part of
	// the address (pointer authentication on arm64).
	PCMask uint64
}

var (
	// AMD64: the System V ABI. A call pushes the return address, the
	// prologue pushes rbp, so entry SP (before the call into the first
	// Wasm frame) is 8 above the trampoline's FP and is 8 mod 16.
	AMD64 = Arch{
		Name:              "x86_64",
		NextOlderFPOffset: 0,
		ReturnAddrOffset:  8,
		FPAlign:           16,
		SeedEntrySPGap:    8,
		SeedEntrySPAlign:  16,
		SeedEntrySPRem:    8,
		PCMask:            ^uint64(0),
	}
	// ARM64: AAPCS64 frame records (x29, x30) are stored as a pair, so the
	// record is 16 bytes and SP stays 16-aligned; return addresses may
	// carry pointer-authentication bits above the 48-bit virtual address.
	ARM64 = Arch{
		Name:              "aarch64",
		NextOlderFPOffset: 0,
		ReturnAddrOffset:  8,
		FPAlign:           16,
		SeedEntrySPGap:    16,
		SeedEntrySPAlign:  16,
		SeedEntrySPRem:    0,
		PCMask:            (1 << 48) - 1,
	}
)

// ByName returns the Arch for a GOARCH or ELF machine name.
func ByName(name string) (Arch, error) {
	switch name {
	case "amd64", "x86_64", "EM_X86_64":
		return AMD64, nil
	case "arm64", "aarch64", "EM_AARCH64":
		return ARM64, nil
	}
	return Arch{}, fmt.Errorf("unsupported architecture %q (supported: x86_64, aarch64)", name)
}

// FPAligned reports whether fp satisfies the frame-pointer alignment.
func (a Arch) FPAligned(fp uint64) bool { return fp%a.FPAlign == 0 }

// SeedEntrySPAligned reports whether an entry SP satisfies the seed's check.
func (a Arch) SeedEntrySPAligned(sp uint64) bool {
	return sp%a.SeedEntrySPAlign == a.SeedEntrySPRem
}
