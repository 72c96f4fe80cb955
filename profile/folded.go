package profile

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
)

// escapeFrame keeps a name to one frame of one line: ';' separates frames
// and a newline separates stacks in the folded format, so both are
// replaced (as inferno and FlameGraph's stackcollapse scripts do).
var escapeFrame = strings.NewReplacer(";", ":", "\n", " ", "\r", " ")

// WriteFolded writes Brendan Gregg's folded format: one line per distinct
// stack, frames root first joined by ';', a space, the count. Lines are
// sorted by stack, as flamegraph.pl and inferno expect.
func (p *Profile) WriteFolded(w io.Writer) error {
	lines := make([]string, 0, len(p.counts))
	for _, e := range p.counts {
		names := make([]string, len(e.frames))
		for i, f := range e.frames {
			names[i] = escapeFrame.Replace(f)
		}
		lines = append(lines, fmt.Sprintf("%s %d", strings.Join(names, ";"), e.count))
	}
	sort.Strings(lines)
	bw := bufio.NewWriter(w)
	for _, l := range lines {
		bw.WriteString(l)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
