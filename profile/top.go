package profile

import (
	"bufio"
	"fmt"
	"io"
	"sort"
)

// Func is one function's share of the samples.
type Func struct {
	Name  string
	Self  int // samples with this function as the leaf
	Total int // samples with this function anywhere on the stack
}

// Funcs aggregates by function name, ordered by self then total samples.
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
	for _, e := range p.counts {
		if len(e.frames) == 0 {
			continue
		}
		seen := map[string]bool{}
		for _, n := range e.frames {
			if !seen[n] { // recursion counts once towards total
				seen[n] = true
				get(n).Total += e.count
			}
		}
		get(e.frames[len(e.frames)-1]).Self += e.count
	}
	out := make([]Func, 0, len(by))
	for _, f := range by {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Self != b.Self {
			return a.Self > b.Self
		}
		if a.Total != b.Total {
			return a.Total > b.Total
		}
		return a.Name < b.Name
	})
	return out
}

// WriteTop writes a summary line and the top n functions by self time.
func (p *Profile) WriteTop(w io.Writer, n int) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "pid %d (%s): %d samples in %.1fs at %d Hz, %d with Wasm on the stack, %d lost\n",
		p.PID, p.Comm, p.total, p.Duration.Seconds(), p.Hz, p.WithWasm(), p.Lost)
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
