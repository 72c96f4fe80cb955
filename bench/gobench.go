package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// goBenchPackages hold the Go benchmarks of the userspace hot paths.
var goBenchPackages = []string{"./bench/", "./record/", "./profile/"}

type goBenchLine struct {
	pkg, name, iters string
	metrics          []string // "123 ns/op", "0 B/op", ...
}

// runGoBench runs the Go benchmarks (the live ones on o.target) and returns
// their result lines.
func runGoBench(o *options) ([]goBenchLine, error) {
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", "1"}, goBenchPackages...)
	cmd := exec.Command(o.goTool, args...)
	cmd.Dir = o.repo
	cmd.Env = append(os.Environ(), "WASMTRACE_BENCH_TARGET="+o.target)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", o.goTool, strings.Join(args, " "), err, out)
	}
	var lines []goBenchLine
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/wasmtrace/wasmtrace/")
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		l := goBenchLine{pkg: pkg, name: f[0], iters: f[1]}
		for i := 2; i+1 < len(f); i += 2 {
			l.metrics = append(l.metrics, f[i]+" "+f[i+1])
		}
		lines = append(lines, l)
	}
	return lines, nil
}
