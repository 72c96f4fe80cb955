package main

import (
	"testing"
	"time"

	"github.com/wasmtrace/wasmtrace/loader"
)

// Quantiles of the program's timing histogram are the middles of their
// buckets, and values past the last bucket stay in it.
func TestHistQuantile(t *testing.T) {
	w := loader.TimingBucket
	h := make([]uint64, 8)
	h[1], h[3], h[7] = 50, 40, 10 // 100 values
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, w + w/2}, {0.51, 3*w + w/2}, {0.9, 3*w + w/2}, {0.91, 7*w + w/2}, {1, 7*w + w/2}} {
		if got := histQuantile(h, 100, c.q); got != c.want {
			t.Errorf("q %v: %v, want %v", c.q, got, c.want)
		}
	}
	if got := histQuantile(h, 0, 0.5); got != 0 {
		t.Errorf("empty histogram: %v", got)
	}
}
