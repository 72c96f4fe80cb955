package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Part a: wasmtrace agent's own CPU and memory per traced process, at
// 99 Hz with 10 s windows exported over OTLP/HTTP to a sink in this
// process that accepts everything (the cost of encoding and sending is
// in; a collector's is not). -agent-soak DURATION also runs the agent that
// long on two processes and reports its RSS against time and lost samples
// (30m for the soak; off by default).
var (
	agentWindow = flag.Duration("agent-window", 60*time.Second, "how long part a measures each number of traced processes")
	agentSoak   = flag.Duration("agent-soak", 0, "also soak the agent this `DURATION` (30m: flat RSS after 5m, 0 lost), part a")
)

type agentRun struct {
	procs    int
	cpu      float64 // fraction of one core
	rss      int64   // bytes at the end
	samples  float64
	lost     float64
	exported float64
}

type agentResult struct {
	runs []agentRun
	soak *agentSoakResult
}

type agentSoakResult struct {
	dur      time.Duration
	rss5     int64 // at 5 minutes
	rssMax   int64 // after 5 minutes
	rssEnd   int64
	lost     float64
	samples  float64
	exported float64
	dropped  float64
}

var agentRes *agentResult

func measureAgent(o *options) (*agentResult, error) {
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer sink.Close()
	go http.Serve(sink, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	res := &agentResult{}
	win := *agentWindow
	if o.quick {
		win = 15 * time.Second
	}
	for _, n := range []int{1, 4} {
		run, err := agentOnce(o, sink.Addr().String(), n, win)
		if err != nil {
			return nil, err
		}
		res.runs = append(res.runs, run)
	}
	if *agentSoak > 0 {
		s, err := soakAgent(o, sink.Addr().String(), *agentSoak)
		if err != nil {
			return nil, err
		}
		res.soak = s
	}
	return res, nil
}

type runningAgent struct {
	cmd     *exec.Cmd
	metrics string
	targets []*target
}

func startAgentWith(o *options, sink string, procs int) (*runningAgent, error) {
	a := &runningAgent{}
	for i := range procs {
		t, err := startTarget(fmt.Sprintf("agent-target-%d", i), o.target, "-scenario", "chain")
		if err != nil {
			a.stop()
			return nil, err
		}
		a.targets = append(a.targets, t)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.stop()
		return nil, err
	}
	a.metrics = ln.Addr().String()
	ln.Close()
	a.cmd = exec.Command(o.wasmtrace, "agent", "--endpoint", "http://"+sink, "--interval", "10s", "--metrics", a.metrics)
	a.cmd.Stderr = io.Discard
	if err := a.cmd.Start(); err != nil {
		a.stop()
		return nil, err
	}
	// Until every target is traced.
	deadline := time.Now().Add(30 * time.Second)
	for scrapeAgent(a.metrics)["wasmtrace_processes_traced"] < float64(procs) {
		if time.Now().After(deadline) {
			a.stop()
			return nil, fmt.Errorf("the agent does not trace the %d targets within 30 s", procs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return a, nil
}

func (a *runningAgent) stop() {
	if a.cmd != nil && a.cmd.Process != nil {
		a.cmd.Process.Signal(syscall.SIGTERM)
		a.cmd.Wait()
	}
	for _, t := range a.targets {
		t.stop()
	}
}

func agentOnce(o *options, sink string, procs int, win time.Duration) (agentRun, error) {
	a, err := startAgentWith(o, sink, procs)
	if err != nil {
		return agentRun{}, err
	}
	defer a.stop()
	time.Sleep(5 * time.Second) // past start-up
	c0, err := readCPU(a.cmd.Process.Pid)
	if err != nil {
		return agentRun{}, err
	}
	t0 := time.Now()
	time.Sleep(win)
	c1, err := readCPU(a.cmd.Process.Pid)
	if err != nil {
		return agentRun{}, err
	}
	m := scrapeAgent(a.metrics)
	cpu := c1.sub(c0).precise
	if cpu == 0 {
		cpu = c1.sub(c0).stat
	}
	return agentRun{procs: procs, cpu: cpu.Seconds() / time.Since(t0).Seconds(), rss: rssOf(a.cmd.Process.Pid),
		samples: m["wasmtrace_samples_total"], lost: m["wasmtrace_lost_samples_total"],
		exported: m[`wasmtrace_export_requests_total{result="success"}`]}, nil
}

func soakAgent(o *options, sink string, dur time.Duration) (*agentSoakResult, error) {
	a, err := startAgentWith(o, sink, 2)
	if err != nil {
		return nil, err
	}
	defer a.stop()
	s := &agentSoakResult{dur: dur}
	start := time.Now()
	for time.Since(start) < dur {
		time.Sleep(10 * time.Second)
		r := rssOf(a.cmd.Process.Pid)
		el := time.Since(start)
		if s.rss5 == 0 && el >= 5*time.Minute {
			s.rss5 = r
		} else if s.rss5 != 0 {
			s.rssMax = max(s.rssMax, r)
		}
		fmt.Fprintf(os.Stderr, "bench: agent soak %s: RSS %.1f MiB\n", el.Round(time.Second), float64(r)/(1<<20))
		s.rssEnd = r
	}
	m := scrapeAgent(a.metrics)
	s.lost, s.samples = m["wasmtrace_lost_samples_total"], m["wasmtrace_samples_total"]
	s.exported, s.dropped = m[`wasmtrace_export_requests_total{result="success"}`], m[`wasmtrace_windows_dropped_total{reason="queue_full"}`]
	return s, nil
}

func rssOf(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func scrapeAgent(addr string) map[string]float64 {
	m := map[string]float64{}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// agentMarkdown is part a's section of the report ("" when it did not run).
func agentMarkdown(r *agentResult) string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## wasmtrace agent (part a)\n\n")
	p("The agent at 99 Hz, 10 s windows exported over OTLP/HTTP to a local sink, tracing N busy Wasmtime 39 processes (scenario chain); CPU over %s after 5 s of start-up (the process's scheduler clock), RSS at the end.\n\n", *agentWindow)
	p("| traced processes | agent CPU | per process | RSS | samples | lost | windows exported |\n|---|---|---|---|---|---|---|\n")
	for _, run := range r.runs {
		p("| %d | %.2f%% of a core | %.2f%% | %.1f MiB | %.0f | %.0f | %.0f |\n", run.procs, 100*run.cpu, 100*run.cpu/float64(run.procs),
			float64(run.rss)/(1<<20), run.samples, run.lost, run.exported)
	}
	if s := r.soak; s != nil {
		p("\nSoak: %s on 2 processes: RSS %.1f MiB at 5 min, at most %.1f MiB after (%+.1f%%), %.1f MiB at the end; %.0f samples, %.0f lost, %.0f windows exported, %.0f dropped.\n",
			s.dur, float64(s.rss5)/(1<<20), float64(s.rssMax)/(1<<20), 100*(float64(s.rssMax)/float64(max(s.rss5, 1))-1),
			float64(s.rssEnd)/(1<<20), s.samples, s.lost, s.exported, s.dropped)
	}
	p("\n")
	return b.String()
}
