// Package loader loads wasmtrace's kernel walker, attaches it to per-CPU
// sampling events, tells it which processes to walk and how, and reads the
// samples it sends back.
package loader

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Limits of one sample, from bpf/wasmtrace.h.
const (
	MaxFrames      = len(wasmtraceWtSample{}.Pcs)
	MaxActivations = len(wasmtraceWtSample{}.ActStart)
	// MaxRanges is the most compiled-code ranges one process may have:
	// half the kernel's slots, so that its next set can be written while
	// the kernel searches the current one.
	MaxRanges = int(wasmtraceWtLimitWT_LIMIT_RANGE_SLOTS) / 2
)

// ErrPermission means the kernel refused to load or attach BPF: wasmtrace
// needs root, or CAP_BPF and CAP_PERFMON.
var ErrPermission = errors.New("permission denied: run as root, or grant CAP_BPF and CAP_PERFMON")

// Tracer is the loaded kernel walker and its sampling events.
type Tracer struct {
	objs   wasmtraceObjects
	links  []link.Link
	events []int
	rd     *ringbuf.Reader
	rec    ringbuf.Record      // ReadInto's buffer
	comms  map[[16]int8]string // thread names seen, interned

	// The compiled-code ranges of the latest configurations, by
	// generation, so that a logged sample can be replayed with the ranges
	// its walk used.
	mu     sync.Mutex
	gen    uint32
	ranges map[uint32][][2]uint64
	// Where each process's ranges are in the kernel's code_ranges.
	slots *arena
	runs  map[uint32]*processRuns
	// covered is each kept configuration's ProcessConfig.CoveredNs, and
	// recent mirrors the kernel's recent_code from the code notes read,
	// so that a logged sample is replayed with the ranges its walk saw.
	covered map[uint32]uint64
	recent  map[uint32]*recentCode

	// codeErr is why code notes are off (CodeEvents), nil when on.
	codeErr error
}

// keptConfigs is how many past configurations' ranges are remembered:
// samples walked with an older one are still in the ring buffer for at
// most a few refreshes.
const keptConfigs = 16

// Open loads the kernel walker and starts sampling every CPU at hz samples
// per second. Only processes added with SetProcess are walked.
func Open(hz int) (*Tracer, error) {
	if hz <= 0 || hz > 10000 {
		return nil, fmt.Errorf("sampling frequency %d Hz is out of range 1..10000", hz)
	}
	t, err := load(progSample, progCode, progUnmap)
	if err != nil {
		return nil, err
	}
	t.attachCode()
	if err := t.attach(hz); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// The kernel walker's programs (SEC names in bpf/wasmtrace.c).
const (
	progSample  = "wasmtrace_sample"
	progTrap    = "wasmtrace_trap"
	progSyscall = "wasmtrace_syscall"
	progOffCPU  = "wasmtrace_offcpu"
	progUprobe  = "wasmtrace_uprobe"
	progCode    = "wasmtrace_code"
	progUnmap   = "wasmtrace_unmap"
)

// byName is where each program goes once loaded.
func (p *wasmtracePrograms) byName() map[string]**ebpf.Program {
	return map[string]**ebpf.Program{
		progSample: &p.WasmtraceSample, progTrap: &p.WasmtraceTrap, progSyscall: &p.WasmtraceSyscall,
		progOffCPU: &p.WasmtraceOffcpu, progUprobe: &p.WasmtraceUprobe,
		progCode: &p.WasmtraceCode, progUnmap: &p.WasmtraceUnmap,
	}
}

// load loads the maps and the named programs and opens the ring buffer;
// nothing is attached yet. Only the programs a command attaches are
// loaded: the verifier takes tens of milliseconds over each, and that
// delays the first sample.
func load(progs ...string) (*Tracer, error) {
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil && !errors.Is(err, unix.EPERM) {
		return nil, fmt.Errorf("raise memlock limit: %w", err)
	}
	spec, err := loadWasmtrace()
	if err != nil {
		return nil, fmt.Errorf("read BPF object: %w", err)
	}
	for name := range spec.Programs {
		if !slices.Contains(progs, name) {
			delete(spec.Programs, name)
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("load BPF program: %w", ErrPermission)
		}
		return nil, fmt.Errorf("load BPF program: %w", err)
	}
	defer coll.Close() // what was not assigned below
	t := &Tracer{}
	if err := coll.Assign(&t.objs.wasmtraceMaps); err != nil {
		return nil, fmt.Errorf("load BPF program: %w", err)
	}
	for name, dst := range t.objs.wasmtracePrograms.byName() {
		*dst = coll.DetachProgram(name) // nil when not loaded
	}
	rd, err := ringbuf.NewReader(t.objs.Samples)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open sample ring buffer: %w", err)
	}
	t.rd = rd
	return t, nil
}

// attach opens a cpu-clock sampling event on each online CPU, counting all
// tasks; the program itself filters to the traced processes, which is how
// threads that start later are covered without per-thread events.
func (t *Tracer) attach(hz int) error {
	cpus, err := onlineCPUs()
	if err != nil {
		return err
	}
	for _, cpu := range cpus {
		attr := unix.PerfEventAttr{
			Type:   unix.PERF_TYPE_SOFTWARE,
			Config: unix.PERF_COUNT_SW_CPU_CLOCK,
			Size:   uint32(unsafeSizeofPerfAttr),
			Sample: uint64(hz),
			Bits:   unix.PerfBitFreq,
		}
		fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
				return fmt.Errorf("open cpu-clock event on cpu %d: %w", cpu, ErrPermission)
			}
			return fmt.Errorf("open cpu-clock event on cpu %d: %w", cpu, err)
		}
		t.events = append(t.events, fd)
		l, err := link.AttachRawLink(link.RawLinkOptions{
			Target:  fd,
			Program: t.objs.WasmtraceSample,
			Attach:  ebpf.AttachPerfEvent,
		})
		if err != nil {
			return fmt.Errorf("attach BPF program to cpu-clock event on cpu %d: %w", cpu, err)
		}
		t.links = append(t.links, l)
	}
	return nil
}

// SetProcess starts (or updates) walking the process pid with the given
// layout and compiled-code ranges.
func (t *Tracer) SetProcess(pid int, cfg ProcessConfig) error {
	v, kr, err := cfg.encode()
	if err != nil {
		return fmt.Errorf("configure pid %d: %w", pid, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.slots == nil {
		t.slots = newArena(uint32(wasmtraceWtLimitWT_LIMIT_RANGE_SLOTS))
		t.runs = map[uint32]*processRuns{}
		t.ranges = map[uint32][][2]uint64{}
		t.covered = map[uint32]uint64{}
	}
	pr := t.runs[uint32(pid)]
	if pr == nil {
		pr = &processRuns{}
		t.runs[uint32(pid)] = pr
	}
	// The run the previous update retired is no longer read by any walk.
	t.slots.release(pr.retired)
	pr.retired = slotRun{}
	run, err := t.writeRanges(kr)
	if err != nil {
		return fmt.Errorf("configure pid %d: %w", pid, err)
	}
	t.gen++
	v.Gen, v.RangesOff, v.Pid, v.CoveredNs = t.gen, run.off, uint32(pid), cfg.CoveredNs
	if err := t.objs.Processes.Put(uint32(pid), v); err != nil {
		t.slots.release(run)
		return fmt.Errorf("configure pid %d: %w", pid, err)
	}
	pr.cur, pr.retired = run, pr.cur
	r := make([][2]uint64, len(kr))
	for i := range r {
		r[i] = [2]uint64{kr[i].Start, kr[i].End}
	}
	t.ranges[t.gen] = r
	t.covered[t.gen] = cfg.CoveredNs
	delete(t.ranges, t.gen-keptConfigs)
	delete(t.covered, t.gen-keptConfigs)
	return nil
}

// writeRanges writes ranges into a fresh run of code_ranges.
func (t *Tracer) writeRanges(ranges []wasmtraceWtRange) (slotRun, error) {
	if len(ranges) == 0 {
		return slotRun{}, nil
	}
	run, err := t.slots.alloc(uint32(len(ranges)))
	if err != nil {
		return run, err
	}
	keys := make([]uint32, len(ranges))
	for i := range keys {
		keys[i] = run.off + uint32(i)
	}
	if _, err := t.objs.CodeRanges.BatchUpdate(keys, ranges, nil); err != nil {
		t.slots.release(run)
		return slotRun{}, fmt.Errorf("write %d compiled-code ranges: %w", len(ranges), err)
	}
	return run, nil
}

// RemoveProcess stops walking pid.
func (t *Tracer) RemoveProcess(pid int) error {
	if err := t.objs.Processes.Delete(uint32(pid)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("forget pid %d: %w", pid, err)
	}
	if err := t.objs.RecentCode.Delete(uint32(pid)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("forget pid %d's recent code: %w", pid, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.recent, uint32(pid))
	if pr := t.runs[uint32(pid)]; pr != nil {
		// A walk that read the configuration just deleted may still
		// search its runs for a moment: they go back after a while.
		delete(t.runs, uint32(pid))
		time.AfterFunc(time.Second, func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			t.slots.release(pr.cur)
			t.slots.release(pr.retired)
		})
	}
	return nil
}

// ErrClosed is returned by Read once Close was called.
var ErrClosed = errors.New("tracer closed")

// Read blocks until the next sample arrives, the deadline passes
// (os.ErrDeadlineExceeded) or the tracer is closed (ErrClosed).
func (t *Tracer) Read(deadline time.Time) (Sample, error) {
	var s Sample
	err := t.ReadInto(&s, deadline)
	return s, err
}

// ReadInto is Read into s, reusing s's slices and the tracer's record
// buffer: what s held before is overwritten, so a caller that keeps a
// sample's PCs or ActStart past the next ReadInto copies them (a sample
// with a read log has slices of its own). Not for concurrent use.
func (t *Tracer) ReadInto(s *Sample, deadline time.Time) error {
	t.rd.SetDeadline(deadline)
	if err := t.rd.ReadInto(&t.rec); err != nil {
		if errors.Is(err, ringbuf.ErrClosed) {
			return ErrClosed
		}
		return err
	}
	if t.comms == nil {
		t.comms = map[[16]int8]string{}
	}
	if err := decodeInto(s, t.rec.RawSample, t.comms); err != nil {
		return err
	}
	switch {
	case s.Event.IsNote():
		t.mu.Lock()
		t.noteRecent(*s)
		t.mu.Unlock()
	case s.Log != nil:
		t.mu.Lock()
		s.Log.Ranges = t.recentRanges(s.PID, s.Log.Gen)
		t.mu.Unlock()
	}
	return nil
}

// Counters are the kernel side's totals since Open.
type Counters struct {
	Samples uint64 // perf events that hit a traced process
	Lost    uint64 // samples dropped because the ring buffer was full
	Events  uint64 // trace events of traced processes, before the rate limit
	Dropped uint64 // trace events over the rate limit, not sent
}

// Counters sums the per-CPU counters.
func (t *Tracer) Counters() (Counters, error) {
	var c Counters
	for idx, dst := range map[uint32]*uint64{
		uint32(wasmtraceWtCounterWT_COUNTER_SAMPLES): &c.Samples,
		uint32(wasmtraceWtCounterWT_COUNTER_LOST):    &c.Lost,
		uint32(wasmtraceWtCounterWT_COUNTER_EVENTS):  &c.Events,
		uint32(wasmtraceWtCounterWT_COUNTER_DROPPED): &c.Dropped,
	} {
		var per []uint64
		if err := t.objs.Counters.Lookup(idx, &per); err != nil {
			return c, fmt.Errorf("read counter %d: %w", idx, err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return c, nil
}

// Close detaches and unloads everything. Samples still in the ring buffer
// are discarded; call Read until it times out first to drain them.
func (t *Tracer) Close() error {
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	t.links = nil
	for _, fd := range t.events {
		errs = append(errs, unix.Close(fd))
	}
	t.events = nil
	if t.rd != nil {
		errs = append(errs, t.rd.Close())
		t.rd = nil
	}
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}

func onlineCPUs() ([]int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		// Fall back on what the Go runtime sees.
		cpus := make([]int, runtime.NumCPU())
		for i := range cpus {
			cpus[i] = i
		}
		return cpus, nil
	}
	return parseCPUList(string(b))
}

// Timing is the value of the kernel walker's "timing" map: a histogram of
// the perf program's own time on samples of traced processes, in buckets
// of TimingBucket, kept while On is non-zero. wasmtrace never turns it on;
// the benchmark (bench/) does, through the map of a running wasmtrace.
type Timing = wasmtraceWtTiming

// TimingBucket is the width of a Timing bucket; the last bucket holds
// everything longer.
const TimingBucket = time.Duration(wasmtraceWtLimitWT_LIMIT_TIMING_NS)
