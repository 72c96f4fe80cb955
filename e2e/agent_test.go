package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The agent traces two Wasmtime processes of different versions, one
// started after it (in a container's cgroup), and the real OpenTelemetry
// Collector receives at least three windows over OTLP/gRPC and over
// OTLP/HTTP, with the exact Wasm stacks and the attributes of each.
func TestAgentExports(t *testing.T) {
	requireRoot(t)
	for _, proto := range []string{"grpc", "http/protobuf"} {
		t.Run(strings.ReplaceAll(proto, "/", "-"), func(t *testing.T) {
			col := startCollector(t)
			endpoint := "http://" + col.http
			if proto == "grpc" {
				endpoint = "http://" + col.grpc
			}
			early := startTarget(t, agentTarget(t, "v39"), "-scenario", "chain")
			metrics := freePort(t)
			ag := startAgent(t, "--protocol", proto, "--endpoint", endpoint, "--interval", "1s",
				"-F", "499", "--metrics", metrics, "--host-name", "agent-e2e-host", "-v")
			// Late: after the agent's first window.
			waitFor(t, 20*time.Second, "the first window", func() bool { return scrape(t, metrics)["wasmtrace_windows_total"] >= 1 })
			containerID := strings.Repeat("c0ffee", 10) + "abcd"
			late := startInContainer(t, containerID, agentTarget(t, "v37"), "-scenario", "nested")

			// Three windows in which the late process is seen.
			waitFor(t, 30*time.Second, "three windows with the late process", func() bool {
				n := 0
				for _, e := range decode(t, col.received("")) {
					if pid, _ := e.attrs["process.pid"].(int64); pid == int64(late.Process.Pid) {
						n++
					}
				}
				return n >= 3
			})
			took := ag.stop(t, 10*time.Second)
			t.Logf("agent exited %.1fs after SIGTERM", took.Seconds())

			reqs := col.received("")
			if len(reqs) < 3 {
				t.Fatalf("the collector received %d requests, want >= 3", len(reqs))
			}
			host := "agent-e2e-host"
			for _, tc := range []struct {
				name      string
				pid       int
				exe       string
				version   string
				container string
				want      string
			}{
				{"v39 before the agent", early.Process.Pid, agentPrefix + "target-v39", "39.", "", "run;chain_a;chain_b;chain_c"},
				{"v37 after the agent, in a container", late.Process.Pid, agentPrefix + "target-v37", "37.", containerID, "outer;outer_mid;[host];inner;inner_leaf"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					stacks := map[string]int{}
					windows := 0
					for _, e := range decode(t, reqs) {
						if pid, _ := e.attrs["process.pid"].(int64); pid != int64(tc.pid) {
							continue
						}
						windows++
						for k, v := range map[string]any{
							"process.executable.name": tc.exe,
							"host.name":               host,
							"process.runtime.name":    "wasmtime",
							"container.id":            tc.container,
						} {
							got, ok := e.attrs[k]
							if v == "" {
								if ok {
									t.Errorf("%s = %v, want none (not in a container)", k, got)
								}
								continue
							}
							if got != v {
								t.Errorf("resource attribute %s = %v, want %v (all: %v)", k, got, v, e.attrs)
							}
						}
						if v, _ := e.attrs["process.runtime.version"].(string); !strings.HasPrefix(v, tc.version) {
							t.Errorf("process.runtime.version = %q, want %s*", v, tc.version)
						}
						// A window of a process just started may hold only
						// [no Wasm] samples (it was still compiling): no
						// module ran in it.
						inWasm := false
						for s := range e.stacks {
							inWasm = inWasm || s != "[no Wasm]"
						}
						mods, _ := e.attrs["wasm.module.names"].([]any)
						if inWasm && (len(mods) != 1 || mods[0] != "wasmtrace_target") || !inWasm && len(mods) != 0 {
							t.Errorf("wasm.module.names = %v with stacks %v, want [wasmtrace_target] if any ran Wasm", e.attrs["wasm.module.names"], e.stacks)
						}
						for tid, name := range e.threads {
							if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", tc.pid, tid)); err != nil {
								t.Errorf("thread.id %d is not a thread of pid %d", tid, tc.pid)
							}
							if name == "" {
								t.Errorf("thread %d has an empty thread.name", tid)
							}
						}
						for s, n := range e.stacks {
							stacks[s] += n
						}
					}
					if windows < 3 {
						t.Errorf("pid %d is in %d windows, want >= 3", tc.pid, windows)
					}
					checkStacks(t, stacks, tc.want, 100)
				})
			}
		})
	}
}

// The collector is stopped for 30 s and started again: the agent's memory
// stays bounded, the windows queued meanwhile arrive up to the queue's
// bound, every other window is counted as dropped, and no sample is lost.
func TestAgentCollectorOutage(t *testing.T) {
	requireRoot(t)
	const queue = 5
	col := startCollector(t)
	startTarget(t, agentTarget(t, "v39"), "-scenario", "chain")
	metrics := freePort(t)
	ag := startAgent(t, "--endpoint", "http://"+col.http, "--interval", "1s", "--queue", fmt.Sprint(queue),
		"--max-backoff", "1s", "--metrics", metrics)
	waitFor(t, 30*time.Second, "three windows", func() bool { return len(col.received("")) >= 3 })

	col.stop()
	before := ag.rss(t)
	var peak, firstHalf int64
	for i := range 30 {
		time.Sleep(time.Second)
		peak = max(peak, ag.rss(t))
		if i == 14 {
			firstHalf = peak
		}
		if d := scrape(t, metrics)["wasmtrace_export_queue_windows"]; d > queue {
			t.Fatalf("%v windows queued, more than the bound %d", d, queue)
		}
	}
	restart := time.Now()
	col.start()
	after := col.out
	// Until the queue is empty and a window taken after the restart came.
	waitFor(t, 20*time.Second, "the queue to drain", func() bool {
		if scrape(t, metrics)["wasmtrace_export_queue_windows"] != 0 {
			return false
		}
		for _, e := range decode(t, col.received(after)) {
			if e.start.After(restart) {
				return true
			}
		}
		return false
	})
	// Windows, not resources: a window has one per process.
	queuedAt := map[time.Time]bool{}
	for _, e := range decode(t, col.received(after)) {
		if e.start.Before(restart.Add(-time.Second)) {
			queuedAt[e.start] = true
		}
	}
	queued := len(queuedAt)
	m := scrape(t, metrics)
	ag.stop(t, 10*time.Second)
	t.Logf("RSS %.1f MiB before the outage, peak %.1f MiB during it; %d windows queued in the outage arrived; metrics: windows %v, exported %v, dropped %v, lost %v",
		float64(before)/(1<<20), float64(peak)/(1<<20), queued, m["wasmtrace_windows_total"],
		m[`wasmtrace_export_requests_total{result="success"}`], m[`wasmtrace_windows_dropped_total{reason="queue_full"}`], m["wasmtrace_lost_samples_total"])
	if queued < queue-1 || queued > queue {
		t.Errorf("%d windows from the outage arrived, want the queue's %d (or one less, the one taken as the collector came back)", queued, queue)
	}
	dropped := m[`wasmtrace_windows_dropped_total{reason="queue_full"}`]
	if dropped < 20 {
		t.Errorf("%v windows counted as dropped in a 30 s outage at 1 s windows with a queue of %d, want >= 20", dropped, queue)
	}
	// Every window is exported or counted as dropped, none twice.
	if w, ok := m["wasmtrace_windows_total"], m[`wasmtrace_export_requests_total{result="success"}`]; w != ok+dropped {
		t.Errorf("%v windows taken, but %v exported + %v dropped", w, ok, dropped)
	}
	// Bounded: Go's heap may double once (GOGC), but the second half of
	// the outage, with the queue full, adds nothing much to the first
	// (one run on a loaded machine: +9 MiB, a collection's worth of
	// garbage, while the queue held its 5 windows).
	if peak > before+32<<20 || peak > firstHalf+16<<20 {
		t.Errorf("RSS grew from %d to %d bytes during the outage (%d after its first half)", before, peak, firstHalf)
	}
	if lost := m["wasmtrace_lost_samples_total"]; lost != 0 {
		t.Errorf("%v samples lost", lost)
	}
}

// A collector that answers every request with an error, or never answers,
// does not stall sampling: the kernel loses no sample at 99 Hz, windows
// keep being taken, and SIGTERM still ends the agent within its flush
// timeout.
func TestAgentCollectorFaults(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name  string
		serve func(t *testing.T) (protocol, endpoint string)
	}{
		{"HTTP 503 to every request", func(t *testing.T) (string, string) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				http.Error(w, "overloaded", http.StatusServiceUnavailable)
			}))
			t.Cleanup(srv.Close)
			return "http/protobuf", srv.URL
		}},
		{"gRPC server that never answers", func(t *testing.T) (string, string) {
			return "grpc", "http://" + silentServer(t)
		}},
		{"HTTP server that never answers", func(t *testing.T) (string, string) {
			return "http/protobuf", "http://" + silentServer(t)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := startTarget(t, agentTarget(t, "v39"), "-scenario", "chain")
			proto, endpoint := tc.serve(t)
			metrics := freePort(t)
			ag := startAgent(t, "--protocol", proto, "--endpoint", endpoint, "--interval", "1s", "--queue", "3",
				"--timeout", "2s", "--max-backoff", "1s", "--flush-timeout", "2s", "--metrics", metrics)
			waitFor(t, 20*time.Second, "the first window", func() bool { return scrape(t, metrics)["wasmtrace_windows_total"] >= 1 })
			m0 := scrape(t, metrics)
			c0 := cpuSeconds(t, target.Process.Pid)
			t0 := time.Now()
			time.Sleep(8 * time.Second)
			m := scrape(t, metrics)
			cpu := cpuSeconds(t, target.Process.Pid) - c0
			secs := time.Since(t0).Seconds()
			took := ag.stop(t, 6*time.Second)
			rate := (m["wasmtrace_samples_total"] - m0["wasmtrace_samples_total"]) / secs
			t.Logf("%.0f samples/s, %v windows, %v failed requests, %v dropped, %v lost; exit %.1fs after SIGTERM",
				rate, m["wasmtrace_windows_total"], m[`wasmtrace_export_requests_total{result="failure"}`],
				m[`wasmtrace_windows_dropped_total{reason="queue_full"}`], m["wasmtrace_lost_samples_total"], took.Seconds())
			if lost := m["wasmtrace_lost_samples_total"]; lost != 0 {
				t.Errorf("%v samples lost", lost)
			}
			// 99 samples per second of CPU the target used (on a
			// loaded machine it gets less than its cores).
			if got, want := rate*secs, 0.85*99*cpu; got < want {
				t.Errorf("%.0f samples for %.1f s of the target's CPU at 99 Hz, want >= %.0f", got, cpu, want)
			}
			if w := m["wasmtrace_windows_total"] - m0["wasmtrace_windows_total"]; w < 6 {
				t.Errorf("%v windows in %.0f s of 1 s windows", w, secs)
			}
			if m[`wasmtrace_export_requests_total{result="success"}`] != 0 || m[`wasmtrace_export_requests_total{result="failure"}`] < 2 {
				t.Errorf("exports: %v succeeded, %v failed; want none and several", m[`wasmtrace_export_requests_total{result="success"}`],
					m[`wasmtrace_export_requests_total{result="failure"}`])
			}
			if m[`wasmtrace_windows_dropped_total{reason="queue_full"}`] < 3 {
				t.Errorf("%v windows dropped with a queue of 3 over 8 s", m[`wasmtrace_windows_dropped_total{reason="queue_full"}`])
			}
			if d := m["wasmtrace_export_queue_windows"]; d > 3 {
				t.Errorf("%v windows queued, more than the bound 3", d)
			}
		})
	}
}

// silentServer accepts TCP connections and never writes a byte.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// cpuSeconds is pid's user+system CPU time.
func cpuSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("CPU time of %d: %v", pid, err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}
