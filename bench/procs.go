package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/wasmtrace/wasmtrace/loader"
)

// progress is one "progress" line of a test target (see
// testdata/targets/v39/main.go): calls completed, and the wall and CPU time
// of the Wasm thread since the first call began.
type progress struct {
	calls     int64
	wall, cpu time.Duration
}

func (a progress) sub(b progress) progress {
	return progress{a.calls - b.calls, a.wall - b.wall, a.cpu - b.cpu}
}

var progressRE = regexp.MustCompile(`^progress calls=(\d+) wall_ns=(\d+) cpu_ns=(\d+)$`)

// target is a running test target.
type target struct {
	cmd  *exec.Cmd
	pid  int
	name string

	mu   sync.Mutex
	last progress
	seen int // progress lines read
}

// startTarget runs bin with args and waits for its "ready" line.
func startTarget(name, bin string, args ...string) (*target, error) {
	return startTargetWithin(60*time.Second, name, bin, args...)
}

// startTargetWithin is startTarget waiting up to timeout.
func startTargetWithin(timeout time.Duration, name, bin string, args ...string) (*target, error) {
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	t := &target{cmd: cmd, pid: cmd.Process.Pid, name: name}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := false
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" && !once {
				once = true
				close(ready)
				continue
			}
			if m := progressRE.FindStringSubmatch(line); m != nil {
				c, _ := strconv.ParseInt(m[1], 10, 64)
				w, _ := strconv.ParseInt(m[2], 10, 64)
				u, _ := strconv.ParseInt(m[3], 10, 64)
				t.mu.Lock()
				t.last = progress{c, time.Duration(w), time.Duration(u)}
				t.seen++
				t.mu.Unlock()
			}
		}
	}()
	select {
	case <-ready:
		return t, nil
	case <-time.After(timeout):
		t.stop()
		return nil, fmt.Errorf("%s %v did not print ready within %v", bin, args, timeout)
	}
}

// latest is the last progress line read; it waits for the first one.
func (t *target) latest() progress {
	for i := 0; i < 500; i++ {
		t.mu.Lock()
		p, n := t.last, t.seen
		t.mu.Unlock()
		if n > 0 {
			return p
		}
		time.Sleep(10 * time.Millisecond)
	}
	return progress{}
}

func (t *target) pause()  { _ = syscall.Kill(t.pid, syscall.SIGSTOP) }
func (t *target) resume() { _ = syscall.Kill(t.pid, syscall.SIGCONT) }

func (t *target) stop() {
	_ = t.cmd.Process.Kill()
	_ = t.cmd.Wait()
}

// tracer is a running wasmtrace or perf record.
type tracer struct {
	kind string // "wasmtrace" or "perf"
	hz   int
	cmd  *exec.Cmd
	out  string // the profile it writes
	errb bytes.Buffer
	t0   time.Time
}

func (tr *tracer) pid() int { return tr.cmd.Process.Pid }

// startWasmtrace runs `wasmtrace -p PID -F HZ`, writing folded stacks to
// out, until stopped with SIGINT.
func startWasmtrace(bin string, pid, hz int, out string) (*tracer, error) {
	tr := &tracer{kind: "wasmtrace", hz: hz, out: out}
	tr.cmd = exec.Command(bin, "-p", strconv.Itoa(pid), "-F", strconv.Itoa(hz), "-d", "1h",
		"--format", "folded", "-o", out)
	tr.cmd.Stderr = &tr.errb
	tr.t0 = time.Now()
	if err := tr.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start wasmtrace: %w", err)
	}
	return tr, nil
}

// startPerf runs `perf record -e cpu-clock -g -F HZ -p PID -o out`: the same
// event wasmtrace samples, with frame-pointer call graphs.
func startPerf(pid, hz int, out string) (*tracer, error) {
	tr := &tracer{kind: "perf", hz: hz, out: out}
	tr.cmd = exec.Command("perf", "record", "-q", "-e", "cpu-clock", "-g", "-F", strconv.Itoa(hz),
		"-p", strconv.Itoa(pid), "-o", out)
	tr.cmd.Stdout = &tr.errb
	tr.cmd.Stderr = &tr.errb
	tr.t0 = time.Now()
	if err := tr.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start perf: %w", err)
	}
	return tr, nil
}

// waitSampling waits until the tracer samples: for wasmtrace, until its BPF
// program is loaded and (unless the target is idle) has seen a sample of
// the target; for perf, until its output file has been written to.
func (tr *tracer) waitSampling(idle bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if tr.cmd.ProcessState != nil {
			break
		}
		switch tr.kind {
		case "wasmtrace":
			s, ok, err := readBPF(tr.pid())
			if err != nil {
				return err
			}
			if ok && (idle || s.samples > 0) {
				return nil
			}
		case "perf":
			if fi, err := os.Stat(tr.out); err == nil && fi.Size() > 0 {
				return nil
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("%s did not start sampling within %v: %s", tr.kind, timeout, strings.TrimSpace(tr.errb.String()))
}

// stopped is what a tracer left when it ended.
type stopped struct {
	stderr string
	usage  *syscall.Rusage
	wall   time.Duration
}

// stop ends the tracer with SIGINT (both write their profile then).
func (tr *tracer) stop() (stopped, error) {
	_ = tr.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- tr.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
		// perf record ends by re-raising the SIGINT it handled.
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGINT {
				err = nil
			}
		}
	case <-time.After(60 * time.Second):
		_ = tr.cmd.Process.Kill()
		err = <-done
		err = fmt.Errorf("%s did not stop on SIGINT: %v", tr.kind, err)
	}
	st := stopped{stderr: tr.errb.String(), wall: time.Since(tr.t0)}
	if tr.cmd.ProcessState != nil {
		st.usage, _ = tr.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	}
	return st, err
}

// summaryRE matches wasmtrace's last stderr line.
var summaryRE = regexp.MustCompile(`wasmtrace: (\d+) samples, (\d+) with Wasm on the stack, (\d+) unwind failures, (\d+) lost`)

type summary struct{ samples, withWasm, failures, lost int64 }

func parseSummary(stderr string) (summary, error) {
	m := summaryRE.FindStringSubmatch(stderr)
	if m == nil {
		return summary{}, fmt.Errorf("no summary in wasmtrace's stderr: %q", strings.TrimSpace(stderr))
	}
	var s summary
	for i, p := range []*int64{&s.samples, &s.withWasm, &s.failures, &s.lost} {
		*p, _ = strconv.ParseInt(m[i+1], 10, 64)
	}
	return s, nil
}

// cpuTimes is a process's CPU time, two ways.
type cpuTimes struct {
	stat    time.Duration // utime+stime of /proc/PID/stat (clock ticks)
	precise time.Duration // CLOCK_PROCESS_CPUTIME of pid (scheduler ns)
}

func (a cpuTimes) sub(b cpuTimes) cpuTimes { return cpuTimes{a.stat - b.stat, a.precise - b.precise} }

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on Linux).
const clockTicks = 100

// readCPU reads pid's CPU time from /proc/PID/stat and from its process CPU
// clock (clock_gettime on the clock id the kernel derives from a pid).
func readCPU(pid int) (cpuTimes, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTimes{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return cpuTimes{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return cpuTimes{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	st, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	c := cpuTimes{stat: time.Duration(ut+st) * time.Second / clockTicks}
	// MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) of include/linux/posix-timers.h.
	clock := int32(^uint32(pid)<<3 | 2)
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err == nil {
		c.precise = time.Duration(ts.Nano())
	}
	return c, nil
}

// bpfStats are the kernel's statistics of wasmtrace's program and its
// counters, read from another process's file descriptors.
type bpfStats struct {
	runTime time.Duration // run_time_ns: time in the program, all runs
	runCnt  uint64        // run_cnt: runs, all CPUs, all processes
	samples uint64        // WT_COUNTER_SAMPLES: runs for the target
	lost    uint64        // WT_COUNTER_LOST
	// timing is the program's histogram of its own time on target
	// samples (struct wt_timing), which readBPF turns on.
	timing []uint64
}

func (a bpfStats) sub(b bpfStats) bpfStats {
	d := bpfStats{a.runTime - b.runTime, a.runCnt - b.runCnt, a.samples - b.samples, a.lost - b.lost, nil}
	if len(a.timing) == len(b.timing) {
		d.timing = make([]uint64, len(a.timing))
		for i := range a.timing {
			d.timing[i] = a.timing[i] - b.timing[i]
		}
	}
	return d
}

// bpfMaps caches the maps of wasmtrace's found by id: opening a map by id
// is a syscall, and polling does it once. A nil map is one not wanted.
var (
	bpfMapsMu sync.Mutex
	bpfMaps   = map[uint32]namedMap{}
)

type namedMap struct {
	m    *ebpf.Map
	name string
}

// wantedMaps are the maps of wasmtrace's the benchmark reads.
var wantedMaps = []string{"counters", "timing"}

// readBPF finds wasmtrace's program and counters map among pid's file
// descriptors (what bpftool prog show reads: /proc/PID/fdinfo) and returns
// their statistics. ok is false until both exist.
func readBPF(pid int) (s bpfStats, ok bool, err error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return s, false, nil
		}
		return s, false, err
	}
	haveProg, haveMap := false, false
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		switch link {
		case "anon_inode:bpf-prog":
			info := fdinfo(pid, e.Name())
			if info["prog_type"] != "7" { // BPF_PROG_TYPE_PERF_EVENT
				continue
			}
			rt, _ := strconv.ParseUint(info["run_time_ns"], 10, 64)
			rc, _ := strconv.ParseUint(info["run_cnt"], 10, 64)
			s.runTime += time.Duration(rt)
			s.runCnt += rc
			haveProg = true
		case "anon_inode:bpf-map":
			info := fdinfo(pid, e.Name())
			id64, err := strconv.ParseUint(info["map_id"], 10, 32)
			if err != nil {
				continue
			}
			switch info["map_type"] {
			case "2": // BPF_MAP_TYPE_ARRAY
				if m := bpfMap(uint32(id64), "timing"); m != nil {
					s.timing = readTiming(m)
				}
				continue
			case "6": // BPF_MAP_TYPE_PERCPU_ARRAY
			default:
				continue
			}
			m := bpfMap(uint32(id64), "counters")
			if m == nil {
				continue
			}
			var per []uint64
			if m.Lookup(uint32(0), &per) == nil {
				for _, v := range per {
					s.samples += v
				}
			}
			if m.Lookup(uint32(1), &per) == nil {
				for _, v := range per {
					s.lost += v
				}
			}
			haveMap = true
		}
	}
	return s, haveProg && haveMap, nil
}

// bpfMap returns the map with this id if it is named name.
func bpfMap(id uint32, name string) *ebpf.Map {
	bpfMapsMu.Lock()
	defer bpfMapsMu.Unlock()
	nm, seen := bpfMaps[id]
	if !seen {
		if m, err := ebpf.NewMapFromID(ebpf.MapID(id)); err == nil {
			if info, err := m.Info(); err == nil && slices.Contains(wantedMaps, info.Name) {
				nm = namedMap{m, info.Name}
			} else {
				m.Close()
			}
		}
		bpfMaps[id] = nm
	}
	if nm.m == nil || nm.name != name {
		return nil
	}
	return nm.m
}

// readTiming turns the program's timing on (it stays on while wasmtrace
// runs) and returns its histogram so far.
func readTiming(m *ebpf.Map) []uint64 {
	var t loader.Timing
	if err := m.Lookup(uint32(0), &t); err != nil {
		return nil
	}
	if t.On == 0 {
		t.On = 1
		if err := m.Update(uint32(0), &t, ebpf.UpdateExist); err != nil {
			return nil
		}
	}
	return t.Buckets[:]
}

func closeCounterMaps() {
	bpfMapsMu.Lock()
	defer bpfMapsMu.Unlock()
	for id, nm := range bpfMaps {
		if nm.m != nil {
			nm.m.Close()
		}
		delete(bpfMaps, id)
	}
}

// fdinfo parses /proc/PID/fdinfo/FD ("key:\tvalue" lines).
func fdinfo(pid int, fd string) map[string]string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd))
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// foldedDepth reads a folded profile and returns the number of samples
// whose stack is exactly depth frames named name, and all samples.
func foldedDepth(path, name string, depth int) (exact, total int64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	want := strings.TrimSuffix(strings.Repeat(name+";", depth), ";")
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		n, err := strconv.ParseInt(line[i+1:], 10, 64)
		if err != nil {
			continue
		}
		total += n
		if line[:i] == want {
			exact += n
		}
	}
	return exact, total, nil
}
