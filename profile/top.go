package profile

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"slices"
)

// TopFunctions is how many functions the text format lists.
const TopFunctions = 25

// Func is one function's share of the samples.
type Func struct {
	Name  string // as DisplayName shows it
	Self  int    // samples with this function as the leaf
	Total int    // samples with this function anywhere on the stack
}

// Funcs aggregates by displayed name (a function of the same name in two
// modules is one row, as in folded output), ordered by self then total
// samples, then name.
func (p *Profile) Funcs() []Func {
	by := map[string]*Func{}
	get := func(n string) *Func {
		f := by[n]
		if f == nil {
			f = &Func{Name: n}
			by[n] = f
		}
		return f
	}
	for _, s := range p.Stacks() {
		if len(s.Frames) == 0 {
			continue
		}
		seen := map[string]bool{}
		for _, fr := range s.Frames {
			n := DisplayName(fr.Name)
			if !seen[n] { // recursion counts once towards total
				seen[n] = true
				get(n).Total += s.Count
			}
		}
		get(DisplayName(s.Frames[len(s.Frames)-1].Name)).Self += s.Count
	}
	out := make([]Func, 0, len(by))
	for _, f := range by {
		out = append(out, *f)
	}
	slices.SortFunc(out, func(a, b Func) int {
		return cmp.Or(cmp.Compare(b.Self, a.Self), cmp.Compare(b.Total, a.Total), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// WriteTop writes a summary line and the top n functions by self time.
func (p *Profile) WriteTop(w io.Writer, n int) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%s: %d samples in %.1fs at %d Hz, %d with Wasm on the stack, %d lost\n",
		p.subject(), p.total, p.Duration.Seconds(), p.Hz, p.WithWasm(), p.Lost)
	if t := p.foldedText(); t != "" {
		fmt.Fprintln(bw, t)
	}
	if p.total == 0 {
		fmt.Fprintln(bw, "no samples: the process used no CPU while wasmtrace ran")
		return bw.Flush()
	}
	fmt.Fprintf(bw, "\n%7s %7s %7s %7s  %s\n", "SELF%", "TOTAL%", "SELF", "TOTAL", "FUNCTION")
	for i, f := range p.Funcs() {
		if i == n {
			break
		}
		fmt.Fprintf(bw, "%6.1f%% %6.1f%% %7d %7d  %s\n",
			pct(f.Self, p.total), pct(f.Total, p.total), f.Self, f.Total, f.Name)
	}
	return bw.Flush()
}

func pct(a, b int) float64 { return 100 * float64(a) / float64(b) }
