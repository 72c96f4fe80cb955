package agent

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/pprofile"

	"github.com/wasmtrace/wasmtrace/export"
	"github.com/wasmtrace/wasmtrace/profile"
)

func win(n int) export.Window {
	p := profile.New()
	p.Hz = 99
	p.AddN(profile.Sample{Frames: []profile.Frame{profile.WasmFrame("f", "")}, PID: 1, TID: 1}, n)
	return export.WindowOf(p, time.Unix(int64(n), 0))
}

func TestQueueDropsOldestButNotTheOneBeingSent(t *testing.T) {
	drops := 0
	q := newQueue(3, func() { drops++ }, func(int) {})
	for i := 1; i <= 3; i++ {
		q.push(win(i))
	}
	head, _ := q.head() // window 1 is being sent
	q.push(win(4))      // drops 2, not 1
	q.push(win(5))      // drops 3
	if drops != 2 || q.len() != 3 {
		t.Fatalf("%d drops, %d queued; want 2, 3", drops, q.len())
	}
	if !q.has(head) {
		t.Fatalf("the window being sent was dropped")
	}
	q.remove(head)
	q.push(win(6))
	var starts []int64
	for q.len() > 0 {
		it, _ := q.head()
		starts = append(starts, it.w.Start.Unix())
		q.remove(it)
	}
	if len(starts) != 3 || starts[0] != 4 || starts[1] != 5 || starts[2] != 6 {
		t.Errorf("left %v, want [4 5 6]", starts)
	}
	q.close()
	if it, done := q.head(); it != nil || !done {
		t.Errorf("closed empty queue: %v, %v", it, done)
	}
}

type fakeSender struct {
	mu    sync.Mutex
	errs  []error // returned in turn, then nil
	calls int
}

func (f *fakeSender) Send(ctx context.Context, p pprofile.Profiles) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return err
	}
	return nil
}
func (f *fakeSender) Close() error   { return nil }
func (f *fakeSender) String() string { return "fake" }

func newTestAgent(s export.Sender, queue int) *agent {
	opt := Options{Sender: s, Queue: queue, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}
	opt.defaults()
	a := &agent{opt: opt, m: opt.Metrics}
	a.q = newQueue(queue, func() { a.m.Dropped.WithLabelValues(DropQueueFull).Inc() }, func(n int) { a.m.QueueDepth.Set(float64(n)) })
	return a
}

func TestSendRetriesThenGivesUpOnRefusal(t *testing.T) {
	retry := &export.Error{Retryable: true, Err: errors.New("unavailable")}
	refuse := &export.Error{Err: errors.New("bad request")}
	f := &fakeSender{errs: []error{retry, retry, nil, refuse}}
	a := newTestAgent(f, 4)
	a.q.push(win(1))
	a.q.push(win(2))
	a.q.close()
	a.sendLoop(context.Background())
	if f.calls != 4 {
		t.Errorf("%d sends, want 4 (2 retries, 1 success, 1 refusal)", f.calls)
	}
	if ok, fail := testutil.ToFloat64(a.m.Exports.WithLabelValues("success")), testutil.ToFloat64(a.m.Exports.WithLabelValues("failure")); ok != 1 || fail != 3 {
		t.Errorf("exports: %v ok, %v failed; want 1, 3", ok, fail)
	}
	if d := testutil.ToFloat64(a.m.Dropped.WithLabelValues(DropRejected)); d != 1 {
		t.Errorf("%v rejected windows, want 1", d)
	}
	if a.q.len() != 0 || testutil.ToFloat64(a.m.QueueDepth) != 0 {
		t.Errorf("queue not empty")
	}
}

// A flush that runs out of time stops retrying: the sender returns when
// its context ends.
func TestSendStopsAtFlushDeadline(t *testing.T) {
	retry := &export.Error{Retryable: true, Err: errors.New("unavailable")}
	f := &fakeSender{}
	for range 1000 {
		f.errs = append(f.errs, retry)
	}
	a := newTestAgent(f, 2)
	a.q.push(win(1))
	a.q.close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { a.sendLoop(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the sender did not stop when its context ended")
	}
	if a.q.len() != 1 {
		t.Errorf("%d windows queued, want the 1 not sent", a.q.len())
	}
}
