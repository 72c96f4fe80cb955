package symbolize

import (
	"encoding/binary"
	"testing"
)

func TestTrapTable(t *testing.T) {
	b := binary.LittleEndian.AppendUint32(nil, 3)
	for _, off := range []uint32{0x10, 0x24, 0x100} {
		b = binary.LittleEndian.AppendUint32(b, off)
	}
	b = append(b, 9, 1, 7)
	tt, err := parseTraps(b, 0x1000)
	if err != nil {
		t.Fatal(err)
	}
	for pc, want := range map[uint64]string{0x1010: "unreachable", 0x1024: "out of bounds memory access", 0x1100: "integer divide by zero"} {
		if c, ok := tt.Lookup(pc); !ok || c.String() != want {
			t.Errorf("Lookup(%#x) = %v, %v; want %q", pc, c, ok, want)
		}
	}
	for _, pc := range []uint64{0, 0x1000, 0x1011, 0x1101, 1 << 40} {
		if c, ok := tt.Lookup(pc); ok {
			t.Errorf("Lookup(%#x) = %v, want none", pc, c)
		}
	}
	for _, bad := range [][]byte{{1}, {2, 0, 0, 0, 1, 0, 0, 0}, b[:len(b)-1]} {
		if _, err := parseTraps(bad, 0); err == nil {
			t.Errorf("parseTraps(%x) succeeded", bad)
		}
	}
	if tt, err := parseTraps(nil, 0); err != nil || tt == nil {
		t.Errorf("empty section: %v", err)
	}
	if TrapCode(200).String() != "trap code 200" {
		t.Error(TrapCode(200).String())
	}
}
