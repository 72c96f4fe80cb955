package profile

import (
	"cmp"
	"fmt"
	"slices"
)

// Folding: the optional bound of a very long recording (MaxStacks).
//
// When one more distinct stack would make more than MaxStacks, the
// rarest stacks are folded into their callers: a stack caller;f is
// counted as caller;[folded] instead, and a stack caller;[folded] that is
// itself among the rarest as caller's caller;[folded], so that what is
// folded is still charged to the code that called it, and the call tree
// above keeps its totals. Folding goes down to three quarters of
// MaxStacks at once, so that it is rare (amortized over a quarter of
// MaxStacks new stacks), and the trie then drops the nodes no counted
// stack needs. Nothing is dropped silently: Folded says how many stacks
// and samples were folded, the text, pprof and svg formats say it in
// their header, and the folded frames are in every format.

type foldStats struct {
	// stacks counts the stacks folded into a [folded] frame: a stack
	// seen again after it was folded, and folded again, counts again.
	stacks  int
	samples int64 // the samples they held when folded
}

// Folded returns how many distinct stacks were folded into their callers'
// [folded] frames to keep within MaxStacks, and how many samples those
// stacks held.
func (p *Profile) Folded() (stacks int, samples int64) { return p.folded.stacks, p.folded.samples }

// foldedText says what was folded, "" when nothing was.
func (p *Profile) foldedText() string {
	if p.folded.stacks == 0 {
		return ""
	}
	return fmt.Sprintf("%d rarest stacks (%d samples) folded into their callers as %s, to keep within %d distinct stacks",
		p.folded.stacks, p.folded.samples, FoldedMarker, p.MaxStacks)
}

// fold folds the rarest stacks until at most three quarters of MaxStacks
// are left, then compacts the trie.
//
// A stack folded into a [folded] frame that holds nothing yet leaves as
// many stacks as before, so a pass over the stacks, rarest first, folds
// one into its caller's [folded] only when that already holds a count or
// another of the stacks goes there too. When a pass can fold nothing so,
// the next folds into the caller's caller (level 2), and so on: at the
// depth of the deepest stack everything goes into one [folded] at the
// root, so folding always ends.
func (p *Profile) fold() {
	target := max(1, p.MaxStacks-p.MaxStacks/4)
	foldID := p.Frame(FoldedFrame())
	byStack := map[StackID][]ThreadID{}
	maxDepth := 0
	for ck := range p.counts {
		byStack[ck.stack] = append(byStack[ck.stack], ck.thread)
		maxDepth = max(maxDepth, int(p.nodes[ck.stack].depth))
	}
	move := func(s, dest StackID) {
		nd := p.nodes[s]
		if nd.frame != foldID {
			p.folded.stacks++
			p.folded.samples += nd.count
		}
		for _, t := range byStack[s] {
			k, dk := countKey{s, t}, countKey{dest, t}
			if _, ok := p.counts[dk]; !ok {
				byStack[dest] = append(byStack[dest], t)
			}
			p.counts[dk] += p.counts[k]
			delete(p.counts, k)
		}
		delete(byStack, s)
		if p.nodes[dest].count > 0 {
			p.distinct--
		}
		p.nodes[dest].count += nd.count
		p.nodes[s].count = 0
	}
	for level := 1; p.distinct > target && level <= maxDepth+1; {
		var cand []StackID
		for id := 1; id < len(p.nodes); id++ {
			if p.nodes[id].count > 0 {
				cand = append(cand, StackID(id))
			}
		}
		// Rarest first; of equally rare ones the deepest, whose callers
		// are most specific; then in the order they were first seen.
		slices.SortFunc(cand, func(a, b StackID) int {
			na, nb := &p.nodes[a], &p.nodes[b]
			return cmp.Or(cmp.Compare(na.count, nb.count), cmp.Compare(nb.depth, na.depth), cmp.Compare(a, b))
		})
		pending := map[StackID]StackID{} // [folded] node → the one stack waiting to go there
		moved := false
		for _, s := range cand {
			if p.distinct <= target {
				break
			}
			if p.nodes[s].count == 0 {
				continue // a [folded] node emptied into another in this pass
			}
			dest, ok := p.foldDest(s, foldID, level)
			if !ok || dest == s {
				continue
			}
			switch w, waiting := pending[dest]; {
			case p.nodes[dest].count > 0:
				move(s, dest)
			case waiting:
				delete(pending, dest)
				move(w, dest)
				move(s, dest)
			default:
				pending[dest] = s
				continue
			}
			moved = true
		}
		if !moved {
			level++
		}
	}
	p.compact()
}

// foldDest is where stack s folds at level: the [folded] frame under
// the ancestor level frames above the code s is charged to (s itself, or
// for a [folded] frame, its caller). ok is false for the [folded] frame at
// the root, which folds nowhere.
func (p *Profile) foldDest(s StackID, foldID FrameID, level int) (StackID, bool) {
	base := s
	if p.nodes[s].frame == foldID {
		base = p.nodes[s].parent
		if base == 0 {
			return 0, false
		}
	}
	up := base
	for i := 0; i < level && up != 0; i++ {
		up = p.nodes[up].parent
	}
	return p.Push(up, foldID), true
}

// compact drops the trie nodes that neither hold a count nor lead to one,
// renumbering the others (in the same order, so callers still come before
// their callees).
func (p *Profile) compact() {
	keep := make([]bool, len(p.nodes))
	keep[0] = true
	for id := len(p.nodes) - 1; id > 0; id-- {
		if keep[id] || p.nodes[id].count > 0 {
			keep[id] = true
			keep[p.nodes[id].parent] = true
		}
	}
	renum := make([]StackID, len(p.nodes))
	nodes := make([]node, 0, len(p.nodes)/2)
	children := make(map[edge]StackID, len(p.nodes)/2)
	for id, n := range p.nodes {
		if !keep[id] {
			continue
		}
		renum[id] = StackID(len(nodes))
		if id != 0 {
			n.parent = renum[n.parent]
			children[edge{n.parent, n.frame}] = renum[id]
		}
		nodes = append(nodes, n)
	}
	counts := make(map[countKey]int64, len(p.counts))
	for k, n := range p.counts {
		counts[countKey{renum[k.stack], k.thread}] = n
	}
	p.nodes, p.children, p.counts = nodes, children, counts
	p.epoch++
}
