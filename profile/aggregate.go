package profile

import (
	"cmp"
	"slices"
	"strings"
)

// The aggregate: what a profile keeps of its samples.
//
// A recording of an hour sees millions of samples but far fewer distinct
// stacks, and those share most of their frames: a real guest's stacks are
// tens of frames deep, from a few roots. So a profile keeps
//
//   - a frame table: each distinct Frame once, named by a FrameID;
//   - a stack trie: each distinct stack is a node, named by a StackID,
//     found from its caller's node and its leaf frame; a stack costs one
//     node more than its longest prefix seen before (node 0 is the empty
//     stack);
//   - a thread table: each distinct (pid, process, tid, thread name) once;
//   - a count per (stack, thread).
//
// Memory then grows with the distinct frames, stacks and (stack, thread)
// pairs, a few dozen bytes each, and not at all with repeated samples.
// Every writer reads these tables (Samples and Stacks materialize frames
// only while writing). A recorder that knows a sample's stack already
// (record caches them by the sample's PCs) adds it by StackID, with no
// frame compared at all.

// FrameID names a distinct frame of a profile (Profile.Frame).
type FrameID uint32

// StackID names a distinct stack of a profile: a node of its stack trie
// (Profile.Push). 0 is the empty stack. StackIDs stay valid until the
// profile folds stacks (MaxStacks), which renumbers them and changes
// Epoch.
type StackID uint32

// ThreadID names a distinct (pid, process, tid, thread name) of a profile
// (Profile.Thread).
type ThreadID uint32

type node struct {
	parent StackID
	frame  FrameID // the leaf frame; unused for node 0
	root   FrameID // the root frame; unused for node 0
	depth  uint32
	// count is the samples of this exact stack, all threads together.
	count int64
}

type edge struct {
	parent StackID
	frame  FrameID
}

type threadInfo struct {
	PID     int
	Process string
	TID     int
	Thread  string
	// procName and threadName are the names of the roots Stacks puts
	// above the thread's stacks (ProcessFrame, ThreadFrame).
	procName, threadName string
}

type threadKey struct {
	pid, tid        int
	process, thread string
}

type countKey struct {
	stack  StackID
	thread ThreadID
}

type agg struct {
	frames   []Frame
	frameIDs map[Frame]FrameID

	nodes    []node
	children map[edge]StackID
	distinct int // nodes with a count

	threads   []threadInfo
	threadIDs map[threadKey]ThreadID

	counts   map[countKey]int64
	total    int
	withWasm int64

	epoch  uint64 // changes when StackIDs are renumbered
	folded foldStats
}

func (a *agg) init() {
	a.frameIDs = map[Frame]FrameID{}
	a.nodes = []node{{}}
	a.children = map[edge]StackID{}
	a.threadIDs = map[threadKey]ThreadID{}
	a.counts = map[countKey]int64{}
}

// Frame returns the id of f, adding it to the frame table if new.
func (p *Profile) Frame(f Frame) FrameID {
	if id, ok := p.frameIDs[f]; ok {
		return id
	}
	id := FrameID(len(p.frames))
	p.frames = append(p.frames, f)
	p.frameIDs[f] = id
	return id
}

// FrameOf returns the frame named id.
func (p *Profile) FrameOf(id FrameID) Frame { return p.frames[id] }

// Push returns the stack of caller with f called from its leaf (root
// first: Push(Push(0, a), b) is a;b), adding it to the trie if new.
func (p *Profile) Push(caller StackID, f FrameID) StackID {
	e := edge{caller, f}
	if id, ok := p.children[e]; ok {
		return id
	}
	id := StackID(len(p.nodes))
	n := node{parent: caller, frame: f, root: f, depth: 1}
	if caller != 0 {
		c := &p.nodes[caller]
		n.root, n.depth = c.root, c.depth+1
	}
	p.nodes = append(p.nodes, n)
	p.children[e] = id
	return id
}

// Thread returns the id of a thread, adding it to the thread table if
// new.
func (p *Profile) Thread(pid int, process string, tid int, thread string) ThreadID {
	k := threadKey{pid, tid, process, thread}
	if id, ok := p.threadIDs[k]; ok {
		return id
	}
	id := ThreadID(len(p.threads))
	p.threads = append(p.threads, threadInfo{
		PID: pid, Process: process, TID: tid, Thread: thread,
		procName:   ProcessFrame(pid, process).Name,
		threadName: ThreadFrame(tid, thread).Name,
	})
	p.threadIDs[k] = id
	return id
}

// AddStack counts n samples of stack on thread.
func (p *Profile) AddStack(stack StackID, thread ThreadID, n int) {
	p.counts[countKey{stack, thread}] += int64(n)
	nd := &p.nodes[stack]
	if nd.count == 0 {
		p.distinct++
	}
	nd.count += int64(n)
	p.total += n
	if stack != 0 {
		if k := p.frames[nd.root].Kind; k != KindNoWasm && k != KindUnwindFailed {
			p.withWasm += int64(n)
		}
	}
	if p.MaxStacks > 0 && p.distinct > p.MaxStacks {
		p.fold()
	}
}

// Epoch changes whenever the profile renumbers its stacks (folding, see
// MaxStacks): a StackID kept from before names another stack, or none.
func (p *Profile) Epoch() uint64 { return p.epoch }

// DistinctStacks is the number of distinct stacks counted (all threads
// together).
func (p *Profile) DistinctStacks() int { return p.distinct }

// StackFrames returns the frames of stack, root first.
func (p *Profile) StackFrames(stack StackID) []Frame {
	if stack == 0 {
		return nil
	}
	return p.appendFrames(nil, stack)
}

// appendFrames appends the frames of stack, root first, to dst.
func (p *Profile) appendFrames(dst []Frame, stack StackID) []Frame {
	d := int(p.nodes[stack].depth)
	start := len(dst)
	dst = slices.Grow(dst, d)[:start+d]
	for i, s := start+d-1, stack; s != 0; i, s = i-1, p.nodes[s].parent {
		dst[i] = p.frames[p.nodes[s].frame]
	}
	return dst
}

// counted is a distinct sample with the stack it was counted under.
type counted struct {
	Count
	stack StackID
}

// samples is Samples with each sample's StackID. The frames of all
// samples share one backing array.
func (p *Profile) samples() []counted {
	out := make([]counted, 0, len(p.counts))
	size := 0
	for ck := range p.counts {
		size += int(p.nodes[ck.stack].depth)
	}
	buf := make([]Frame, 0, size)
	for ck, n := range p.counts {
		th := &p.threads[ck.thread]
		start := len(buf)
		buf = p.appendFrames(buf, ck.stack)
		frames := buf[start:len(buf):len(buf)]
		if len(frames) == 0 {
			frames = nil
		}
		out = append(out, counted{Count{Sample{Frames: frames, PID: th.PID, Process: th.Process, TID: th.TID, Thread: th.Thread}, int(n)}, ck.stack})
	}
	slices.SortFunc(out, func(a, b counted) int {
		return cmp.Or(cmp.Compare(a.PID, b.PID), strings.Compare(a.Process, b.Process), cmp.Compare(a.TID, b.TID),
			strings.Compare(a.Thread, b.Thread), slices.CompareFunc(a.Frames, b.Frames, compareFrames))
	})
	return out
}
