package record

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/wasmtrace/wasmtrace/proc"
	"github.com/wasmtrace/wasmtrace/symbolize"
)

// Mappings Refresh skipped are warnings for Prepare; a failure to read the
// mappings is not.
func TestOnlySkipped(t *testing.T) {
	img := &symbolize.ImageError{Text: proc.Mapping{Start: 0x1000, End: 0x2000, Perms: "r-xp"}, Err: symbolize.ErrNoImage}
	perf := errors.New("perf map: line 3: malformed")
	maps := fmt.Errorf("read memory map of pid 1: %w", os.ErrNotExist)
	for _, c := range []struct {
		err  error
		want bool
	}{
		{errors.Join(img), true},
		{errors.Join(img, img, perf), true},
		{errors.Join(perf), true},
		{maps, false},
	} {
		if got := onlySkipped(c.err); got != c.want {
			t.Errorf("onlySkipped(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if n := len(splitErrors(errors.Join(img, perf))); n != 2 {
		t.Errorf("splitErrors gave %d errors, want 2", n)
	}
}
