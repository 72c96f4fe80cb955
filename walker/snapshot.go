package walker

import (
	"fmt"

	"github.com/wasmtrace/wasmtrace/proc"
)

// Snapshot is a sparse image of an address space: the bytes known at some
// addresses, every other address unreadable. The walker's tests build
// synthetic stacks in one, and verification rebuilds one from the words the
// kernel walker logged. The zero value is an empty snapshot.
type Snapshot struct {
	chunks map[uint64]*chunk
}

const chunkBits = 6 // 64-byte chunks

type chunk struct {
	data  [1 << chunkBits]byte
	valid uint64 // bit i: data[i] is known
}

// Set records b at addr, replacing what was known there. Bytes that would
// lie beyond the top of the address space are dropped.
func (s *Snapshot) Set(addr uint64, b []byte) {
	if s.chunks == nil {
		s.chunks = make(map[uint64]*chunk)
	}
	for i, v := range b {
		a := addr + uint64(i)
		if a < addr {
			return // wrapped around
		}
		c := s.chunks[a>>chunkBits]
		if c == nil {
			c = new(chunk)
			s.chunks[a>>chunkBits] = c
		}
		off := a & (1<<chunkBits - 1)
		c.data[off] = v
		c.valid |= 1 << off
	}
}

// SetWord records the little-endian 64-bit word v at addr.
func (s *Snapshot) SetWord(addr, v uint64) {
	var b [8]byte
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	s.Set(addr, b[:])
}

// Forget makes n bytes at addr unreadable again.
func (s *Snapshot) Forget(addr, n uint64) {
	for i := uint64(0); i < n; i++ {
		a := addr + i
		if a < addr {
			return
		}
		if c := s.chunks[a>>chunkBits]; c != nil {
			c.valid &^= 1 << (a & (1<<chunkBits - 1))
		}
	}
}

// ReadAt implements proc.Memory: it fails, wrapping proc.ErrUnreadable,
// unless every byte of the range is known.
func (s *Snapshot) ReadAt(p []byte, addr uint64) (int, error) {
	for i := range p {
		a := addr + uint64(i)
		if a < addr {
			return i, fmt.Errorf("read %d bytes at %#x: past the end of the address space: %w", len(p), addr, proc.ErrUnreadable)
		}
		c := s.chunks[a>>chunkBits]
		off := a & (1<<chunkBits - 1)
		if c == nil || c.valid&(1<<off) == 0 {
			return i, fmt.Errorf("read %d bytes at %#x: %#x not in the snapshot: %w", len(p), addr, a, proc.ErrUnreadable)
		}
		p[i] = c.data[off]
	}
	return len(p), nil
}
