package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pprofile"

	"github.com/wasmtrace/wasmtrace/internal/testtarget"
)

// collector is the OpenTelemetry Collector of testdata/otelcol, receiving
// OTLP over gRPC and HTTP on loopback and writing each request it gets as
// one JSON line (the contrib file exporter).
type collector struct {
	t          *testing.T
	bin, dir   string
	grpc, http string // host:port
	cmd        *exec.Cmd
	out        string // the file the running collector writes
	runs       int
}

// otelcolBin builds the collector once (testdata/otelcol/build.sh caches
// it under testdata/otelcol/bin, which is ignored).
func otelcolBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(repoRoot, "testdata/otelcol/bin/otelcol")
	if _, err := os.Stat(bin); err != nil && testing.Short() && !testtarget.InCI() {
		t.Skipf("%s not built (make targets); skipped in -short mode", bin)
	}
	if out, err := exec.Command(filepath.Join(repoRoot, "testdata/otelcol/build.sh")).CombinedOutput(); err != nil {
		t.Fatalf("build the test collector: %v\n%s", err, out)
	}
	return bin
}

// freePort is a loopback port nobody listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{t: t, bin: otelcolBin(t), dir: t.TempDir(), grpc: freePort(t), http: freePort(t)}
	c.start()
	t.Cleanup(c.stop)
	return c
}

// start runs the collector, writing to a new file (out-N.json), and waits
// until both receivers accept connections.
func (c *collector) start() {
	c.t.Helper()
	c.runs++
	c.out = filepath.Join(c.dir, fmt.Sprintf("out-%d.json", c.runs))
	cfg := filepath.Join(c.dir, fmt.Sprintf("config-%d.yaml", c.runs))
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
exporters:
  file:
    path: %s
    flush_interval: 50ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    profiles:
      receivers: [otlp]
      exporters: [file]
`, c.grpc, c.http, c.out)), 0o644)
	if err != nil {
		c.t.Fatalf("write collector config: %v", err)
	}
	log, err := os.Create(filepath.Join(c.dir, fmt.Sprintf("collector-%d.log", c.runs)))
	if err != nil {
		c.t.Fatal(err)
	}
	defer log.Close()
	c.cmd = exec.Command(c.bin, "--config", cfg, "--feature-gates=service.profilesSupport")
	c.cmd.Stdout, c.cmd.Stderr = log, log
	if err := c.cmd.Start(); err != nil {
		c.t.Fatalf("start the collector: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range []string{c.grpc, c.http} {
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			if time.Now().After(deadline) {
				logText, _ := os.ReadFile(log.Name())
				c.t.Fatalf("the collector does not listen on %s: %v\n%s", addr, err, logText)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// stop ends the collector (SIGTERM: it flushes its file first).
func (c *collector) stop() {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
	c.cmd = nil
}

// received is every request the collector wrote to file (all runs if
// file is "", else that file), decoded.
func (c *collector) received(file string) []pprofile.Profiles {
	c.t.Helper()
	files := []string{file}
	if file == "" {
		files = nil
		for i := 1; i <= c.runs; i++ {
			files = append(files, filepath.Join(c.dir, fmt.Sprintf("out-%d.json", i)))
		}
	}
	var out []pprofile.Profiles
	for _, f := range files {
		data, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			c.t.Fatalf("read what the collector wrote: %v", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			p, err := (&pprofile.JSONUnmarshaler{}).UnmarshalProfiles(sc.Bytes())
			if err != nil {
				// The file exporter may be in the middle of a line.
				break
			}
			out = append(out, p)
		}
	}
	return out
}

// exported is one ResourceProfiles as received: its resource attributes,
// its stacks in folded form (root first, ";"-joined) with counts, and the
// threads its samples were attributed to.
type exported struct {
	attrs   map[string]any
	start   time.Time
	stacks  map[string]int
	threads map[int64]string // thread.id -> thread.name
}

func decode(t *testing.T, reqs []pprofile.Profiles) []exported {
	t.Helper()
	var out []exported
	for _, req := range reqs {
		dict := req.Dictionary()
		strs := dict.StringTable()
		for _, rp := range req.ResourceProfiles().All() {
			e := exported{attrs: rp.Resource().Attributes().AsRaw(), stacks: map[string]int{}, threads: map[int64]string{}}
			for _, sp := range rp.ScopeProfiles().All() {
				if sp.Scope().Name() != "wasmtrace" {
					t.Errorf("scope %q, want wasmtrace", sp.Scope().Name())
				}
				for _, pr := range sp.Profiles().All() {
					e.start = pr.Time().AsTime()
					if got := strs.At(int(pr.SampleType().TypeStrindex())) + "/" + strs.At(int(pr.SampleType().UnitStrindex())); got != "samples/count" {
						t.Errorf("sample type %s, want samples/count", got)
					}
					for _, s := range pr.Samples().All() {
						st := dict.StackTable().At(int(s.StackIndex()))
						var frames []string
						for _, li := range st.LocationIndices().All() {
							loc := dict.LocationTable().At(int(li))
							fn := dict.FunctionTable().At(int(loc.Lines().At(0).FunctionIndex()))
							frames = append(frames, strs.At(int(fn.NameStrindex())))
						}
						slices.Reverse(frames) // OTLP lists the leaf first
						var n int64
						for _, v := range s.Values().All() {
							n += v
						}
						e.stacks[strings.Join(frames, ";")] += int(n)
						attrs, err := pprofile.FromAttributeIndices(dict.AttributeTable(), s, dict)
						if err != nil {
							t.Fatalf("sample attributes: %v", err)
						}
						tid, ok1 := attrs.Get("thread.id")
						name, ok2 := attrs.Get("thread.name")
						if !ok1 || !ok2 || tid.Type() != pcommon.ValueTypeInt {
							t.Errorf("sample without thread.id (int) and thread.name: %v", attrs.AsRaw())
							continue
						}
						e.threads[tid.Int()] = name.Str()
					}
				}
			}
			out = append(out, e)
		}
	}
	return out
}

// agentProc is a running wasmtrace agent.
type agentProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
}

// agentPrefix names the agent tests' targets (agentTarget), and the agent
// traces only those (--match): other packages' tests run Wasmtime
// processes at the same time (go test runs packages in parallel), which
// would add to the agent's windows and memory.
const agentPrefix = "e2e-agent-"

// agentTarget is a copy of the test target of version, named
// agentPrefix+"target-"+version.
func agentTarget(t *testing.T, version string) string {
	t.Helper()
	src := targetBin(t, version, false)
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), agentPrefix+"target-"+version)
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

func startAgent(t *testing.T, args ...string) *agentProc {
	t.Helper()
	args = append([]string{"agent", "--match", "^" + agentPrefix}, args...)
	a := &agentProc{cmd: exec.Command(wasmtraceBin, args...), stderr: &syncBuffer{}, done: make(chan struct{})}
	a.cmd.Stderr = a.stderr
	// No OTEL_* of the machine running the tests.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			a.cmd.Env = append(a.cmd.Env, kv)
		}
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start wasmtrace agent: %v", err)
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.done
		if t.Failed() {
			t.Logf("agent log:\n%s", a.stderr.String())
		}
	})
	return a
}

// stop sends SIGTERM and returns how long the agent took to exit.
func (a *agentProc) stop(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(within):
		t.Fatalf("the agent did not exit within %s of SIGTERM", within)
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("the agent exited %d:\n%s", code, a.stderr.String())
	}
	return time.Since(t0)
}

// rss is the agent's resident memory in bytes.
func (a *agentProc) rss(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("agent memory: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", a.cmd.Process.Pid)
	return 0
}

// scrape reads the agent's Prometheus metrics: "name{labels}" -> value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	var resp *http.Response
	var err error
	for range 50 {
		if resp, err = http.Get("http://" + addr + "/metrics"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startInContainer starts a test target in a new cgroup named as Docker
// names a container's (docker-ID.scope) in the pids hierarchy, which is
// what container.id is read from: the target is in it from its first
// instruction, before the agent can discover it. The cgroup is removed
// when the test ends (after its processes are killed).
func startInContainer(t *testing.T, id, bin string, args ...string) *exec.Cmd {
	t.Helper()
	root := "/sys/fs/cgroup/pids"
	if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
		root = "/sys/fs/cgroup/unified"
	}
	dir := filepath.Join(root, "docker-"+id+".scope")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("make a container's cgroup: %v", err)
	}
	var pid int
	t.Cleanup(func() {
		// Its process may still run (cleanups run last first): move it
		// out, or rmdir fails.
		if pid != 0 {
			os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
		}
		for range 50 {
			if os.Remove(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove %s", dir)
	})
	// The shell enters the cgroup, then becomes the target (same pid).
	script := `echo $$ > "$0" && exec "$@"`
	cmd := startTarget(t, "/bin/sh", append([]string{"-c", script, filepath.Join(dir, "cgroup.procs"), bin}, args...)...)
	pid = cmd.Process.Pid
	return cmd
}
