package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxMapsBytes bounds the text of a maps file MapsReader reads: about
// maxMapsLines lines of a hundred bytes and more.
const maxMapsBytes = 256 << 20

// MapsReader rereads /proc/PID/maps and parses it again only when its text
// changed: a process with thousands of modules has tens of thousands of
// lines, whose parse costs more than the read.
type MapsReader struct {
	PID  int
	buf  []byte
	last []byte
	maps []Mapping
}

// Read returns the process's mappings. When the text is the same as at the
// previous Read, so is the slice returned: callers must not modify it.
func (r *MapsReader) Read() ([]Mapping, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", r.PID))
	if err != nil {
		return nil, fmt.Errorf("read memory map of pid %d: %w", r.PID, err)
	}
	defer f.Close()
	b := r.buf[:0]
	for {
		if len(b) == cap(b) {
			if cap(b) >= maxMapsBytes {
				return nil, fmt.Errorf("read memory map of pid %d: more than %d bytes", r.PID, maxMapsBytes)
			}
			b = append(b, 0)[:len(b)]
		}
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read memory map of pid %d: %w", r.PID, err)
		}
		if n == 0 {
			break
		}
	}
	r.buf = b
	if r.maps != nil && bytes.Equal(b, r.last) {
		return r.maps, nil
	}
	maps, err := ParseMaps(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("read memory map of pid %d: %w", r.PID, err)
	}
	if maps == nil {
		maps = []Mapping{}
	}
	r.last = append(r.last[:0], b...)
	r.maps = maps
	return maps, nil
}
