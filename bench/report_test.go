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

// The median of a frames histogram is the smallest count reaching half.
func TestHistMedian(t *testing.T) {
	for _, c := range []struct {
		h    []uint64
		want int
		n    uint64
	}{{[]uint64{0, 0, 0, 5, 1}, 3, 6}, {[]uint64{1, 1, 0, 2}, 1, 4}, {[]uint64{0, 0}, 0, 0}} {
		if got, n := histMedian(c.h); got != c.want || n != c.n {
			t.Errorf("%v: %d (%d), want %d (%d)", c.h, got, n, c.want, c.n)
		}
	}
}

// Part 6's early-exit cost of a tracer comes from the windows where both
// targets were stopped, and its net cost per sample subtracts it.
func TestModResultNet(t *testing.T) {
	r := &modResult{windows: []modWindow{
		// Both stopped: the 1-module tracer's exits cost 200 ns, the other's 400 ns.
		{exit: true, d: map[int]bpfStats{1: {runTime: 1000 * 200, runCnt: 1000}, manyModules: {runTime: 1000 * 400, runCnt: 1000}}},
		// Both running: 500 target samples each, of 3000 and 3300 ns.
		{d: map[int]bpfStats{
			1:           {runTime: 500*3000 + 500*200, runCnt: 1000, samples: 500},
			manyModules: {runTime: 500*3300 + 500*400, runCnt: 1000, samples: 500},
		}},
	}}
	if got := r.exitCost(1); got != 200 {
		t.Errorf("exit cost of 1: %v", got)
	}
	if got := r.exitCost(manyModules); got != 400 {
		t.Errorf("exit cost of %d: %v", manyModules, got)
	}
	m1, _, _, raw := r.net(1)
	if m1 != 3000 || raw != 3200 {
		t.Errorf("net of 1: %v (raw %v)", m1, raw)
	}
	paired, net, _ := r.ratios()
	for _, x := range []float64{paired, net} {
		if x < 1.0999 || x > 1.1001 {
			t.Errorf("ratio %v, want 1.1", x)
		}
	}
}
