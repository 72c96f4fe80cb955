package profile

import (
	"bufio"
	"io"
	"slices"
	"strconv"
	"strings"
)

// WriteFolded writes Brendan Gregg's folded format: one line per distinct
// stack, frames root first joined by ';', a space, the count. Names are
// shown by DisplayName, so they hold no ';' and no newline; stacks that
// then read the same (the same function name in two modules) share a line.
// Lines are sorted, as flamegraph.pl and inferno expect.
func (p *Profile) WriteFolded(w io.Writer) error {
	counts := map[string]int{}
	for _, s := range p.Stacks() {
		names := make([]string, len(s.Frames))
		for i, f := range s.Frames {
			names[i] = DisplayName(f.Name)
		}
		counts[strings.Join(names, ";")] += s.Count
	}
	lines := make([]string, 0, len(counts))
	for stack, n := range counts {
		lines = append(lines, stack+" "+strconv.Itoa(n))
	}
	slices.Sort(lines)
	bw := bufio.NewWriter(w)
	for _, l := range lines {
		bw.WriteString(l)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
