package agent

import (
	"slices"
	"sync"

	"github.com/wasmtrace/wasmtrace/export"
)

// queue holds the windows not yet exported, oldest first, at most max of
// them: pushing onto a full queue drops the oldest (the collector has been
// away longest for it, and the newest is what people look at). The window
// being sent stays in the queue until it is sent or given up, so the bound
// covers it too and memory holds at most max windows; it is dropped only
// when it is the only one (max 1), so that a window counted as dropped
// never arrives after all.
type queue struct {
	mu      sync.Mutex
	items   []*item
	sending *item // returned by head, not yet removed
	max     int
	closed  bool
	wake    chan struct{} // signalled on push and close
	// onDrop is called, under mu, for each window dropped to make room.
	onDrop func()
	depth  func(int)
}

type item struct {
	w export.Window
}

func newQueue(max int, onDrop func(), depth func(int)) *queue {
	return &queue{max: max, wake: make(chan struct{}, 1), onDrop: onDrop, depth: depth}
}

// push adds w, dropping the oldest window if the queue is full. It never
// blocks: it runs on the recording goroutine.
func (q *queue) push(w export.Window) {
	q.mu.Lock()
	if len(q.items) >= q.max {
		i := 0
		if q.items[0] == q.sending && len(q.items) > 1 {
			i = 1
		}
		q.items = slices.Delete(q.items, i, i+1) // zeroes the freed slot
		q.onDrop()
	}
	q.items = append(q.items, &item{w: w})
	q.depth(len(q.items))
	q.mu.Unlock()
	q.signal()
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// close says no window will be pushed any more.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// head returns the oldest window, and whether the queue is closed and
// empty (then it is nil).
func (q *queue) head() (*item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) > 0 {
		q.sending = q.items[0]
		return q.items[0], false
	}
	return nil, q.closed
}

// remove takes it out of the queue, if it is still there.
func (q *queue) remove(it *item) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, x := range q.items {
		if x == it {
			q.items = slices.Delete(q.items, i, i+1) // zeroes the freed slot
			break
		}
	}
	if q.sending == it {
		q.sending = nil
	}
	q.depth(len(q.items))
}

// has reports whether it is still queued (not dropped to make room).
func (q *queue) has(it *item) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, x := range q.items {
		if x == it {
			return true
		}
	}
	return false
}

// len is the number of queued windows.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
