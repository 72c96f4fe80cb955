package proc

import (
	"os"
	"reflect"
	"testing"
)

func TestMapsReader(t *testing.T) {
	r := &MapsReader{PID: os.Getpid()}
	a, err := r.Read()
	if err != nil || len(a) == 0 {
		t.Fatalf("Read = %d mappings, %v", len(a), err)
	}
	// This process's own mappings change now and then (the Go runtime
	// maps memory): a few tries for two reads of the same text.
	for try := 0; ; try++ {
		b, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if &b[0] == &a[0] {
			break // unchanged text: not parsed again
		}
		if try == 20 {
			t.Fatalf("every read parsed anew")
		}
		a = b
	}
	want, err := ReadMaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := r.Read()
	if len(got) != len(want) && !reflect.DeepEqual(got[:1], want[:1]) {
		t.Errorf("MapsReader and ReadMaps disagree: %d and %d mappings", len(got), len(want))
	}
	if _, err := (&MapsReader{PID: 1 << 30}).Read(); err == nil {
		t.Errorf("Read of no process succeeded")
	}
}
