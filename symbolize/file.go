package symbolize

import (
	"debug/elf"
	"encoding/binary"

	"github.com/wasmtrace/wasmtrace/proc"
)

// Images mapped from files.
//
// Module::deserialize_file (wasmtime_module_deserialize_file, wasmtime-go's
// NewModuleDeserializeFile; components likewise) maps the whole .cwasm
// file, from file offset 0, privately: the image is the file, so the
// process shows one run of mappings of that file, the ELF header at
// offset 0 (r--), .text (r-x) at its sh_offset, the rest (r--):
//
//	7f..02000-7f..03000 r--p 00000000 fe:00 1234   /srv/app.cwasm
//	7f..03000-7f..04000 r-xp 00001000 fe:00 1234   /srv/app.cwasm
//	7f..04000-7f..06000 r--p 00002000 fe:00 1234   /srv/app.cwasm
//
// The image is read from the process's memory like an anonymous one, never
// from the file: the file may have been replaced, rewritten or truncated
// since it was mapped. Pages lost to truncation read as errors (the kernel
// refuses the read; the target itself would get SIGBUS touching them), so
// such an image fails to parse and is skipped with the reason.
//
// Every r-x mapping of a file is looked at, so the check that rules out
// shared libraries and executables must be cheap: the ELF header at the
// file's offset 0 (read with those of every other candidate in one
// vectored read, and not again while the mapping's line stays the same)
// must say ET_REL with Wasmtime's OS/ABI (ELFOSABI_WASMTIME, 200, in every
// version supported). Linked programs are ET_EXEC or ET_DYN.

// elfOSABIWasmtime is the EI_OSABI of Wasmtime's images.
const elfOSABIWasmtime = 200

// wasmtimeHeader reports an ELF64 header of a relocatable object with
// Wasmtime's OS/ABI. eh holds at least ehdrSize bytes.
func wasmtimeHeader(eh []byte) bool {
	if len(eh) < ehdrSize || string(eh[:4]) != elf.ELFMAG || elf.Class(eh[elf.EI_CLASS]) != elf.ELFCLASS64 ||
		eh[elf.EI_OSABI] != elfOSABIWasmtime {
		return false
	}
	var order binary.ByteOrder
	switch elf.Data(eh[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		order = binary.LittleEndian
	case elf.ELFDATA2MSB:
		order = binary.BigEndian
	default:
		return false
	}
	return elf.Type(order.Uint16(eh[0x10:])) == elf.ET_REL
}

// sameFile reports mappings of the same file.
func sameFile(a, b proc.Mapping) bool { return a.Inode == b.Inode && a.Path == b.Path }

// fileRun returns where the file of text mapping maps[ti] is mapped from
// its offset 0: base, the address of file offset 0, and high, the end of
// the run of contiguous readable mappings of the same file at offsets
// consistent with base, around the text. ok is false when the run does
// not reach down to offset 0, or the text lies more than maxImageSize into
// the file.
func fileRun(maps []proc.Mapping, ti int) (base, high uint64, ok bool) {
	text := maps[ti]
	if text.Offset > text.Start || text.Offset >= maxImageSize {
		return 0, 0, false
	}
	base = text.Start - text.Offset
	inRun := func(m proc.Mapping) bool {
		return sameFile(m, text) && m.Readable() && m.Offset <= m.Start && m.Start-m.Offset == base
	}
	low := text.Start
	for j := ti - 1; j >= 0 && low > base && maps[j].End == low && inRun(maps[j]); j-- {
		low = maps[j].Start
	}
	if low != base {
		return 0, 0, false
	}
	high = text.End
	for j := ti + 1; j < len(maps) && high-base < maxImageSize && maps[j].Start == high && inRun(maps[j]); j++ {
		high = maps[j].End
	}
	return base, high, true
}

// setFile records the file m is mapped from, in m and in the views of a
// component's core modules (copies of m made while parsing).
func (m *Module) setFile(path string) {
	m.File = path
	if m.Component == nil {
		return
	}
	for _, cm := range m.Component.Cores {
		if cm.view != nil {
			cm.view.File = path
		}
	}
}

// Origin says where the module's code came from: "mapped from PATH" for
// an image mapped from a file (Module::deserialize_file), "in memory" for
// one in anonymous memory. Compiled in process, deserialized from bytes
// (Module::deserialize) and loaded from Wasmtime's compilation cache (which
// deserializes the bytes it read) all leave byte-identical images in
// anonymous memory, so nothing in the process tells those apart.
func (m *Module) Origin() string {
	if m.File != "" {
		return "mapped from " + m.File
	}
	return "in memory"
}
