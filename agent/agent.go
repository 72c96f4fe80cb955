// Package agent profiles every Wasmtime process on the host continuously
// and exports the profiles, window by window, to an OpenTelemetry
// endpoint (wasmtrace agent).
//
// The flow of a window:
//
//	recording goroutine (record.RunAll, -a discovery)
//	  every Interval: Tick hands over the window's profile  ──┐
//	                                                           │ never blocks
//	  window(): metrics, process attributes, queue.push  <────┘
//	                 │                        │
//	                 ▼                        ▼ (-o DIR)
//	  bounded queue of windows          pprof writer goroutine
//	  (drop oldest when full)
//	                 │
//	                 ▼
//	  sender goroutine: convert (export.Profiles), send, retry with
//	  backoff while the window is still queued
//
// Sampling never waits for the network: the recording goroutine only
// appends to the queue, which drops (and counts) the oldest window when
// full. On shutdown the last, partial window is queued too and the sender
// gets FlushTimeout to empty the queue.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wasmtrace/wasmtrace/export"
	"github.com/wasmtrace/wasmtrace/proc"
	"github.com/wasmtrace/wasmtrace/profile"
	"github.com/wasmtrace/wasmtrace/record"
)

// Options of the agent. Zero values take the defaults in brackets.
type Options struct {
	Hz       int           // sampling frequency per CPU [99]
	Interval time.Duration // window length [10s]
	// Queue is how many windows wait for export before the oldest is
	// dropped [6: a minute at the default interval].
	Queue int
	// Sender exports windows; nil exports nothing (-o DIR only).
	Sender export.Sender
	// OutDir, if set, also gets each window as a pprof file.
	OutDir string
	// MetricsAddr, if set, is where Prometheus metrics are served
	// (/metrics).
	MetricsAddr string
	// FlushTimeout bounds the export of what is queued at shutdown [5s].
	FlushTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries of a
	// window [1s, 10s]; the wait doubles from one to the other.
	MinBackoff, MaxBackoff time.Duration
	Host                   string            // host.name
	Resource               map[string]string // added to every resource
	Version                string            // wasmtrace's, the scope version
	Log                    *slog.Logger
	// Metrics, if set, are updated instead of a new set (tests read
	// them).
	Metrics *Metrics
	// Refresh is how often /proc is scanned for new processes [200ms].
	Refresh time.Duration
	// Match, if set, limits the agent to processes whose executable's
	// file name it matches.
	Match *regexp.Regexp
}

func (o *Options) defaults() {
	if o.Hz == 0 {
		o.Hz = 99
	}
	if o.Interval == 0 {
		o.Interval = 10 * time.Second
	}
	if o.Queue == 0 {
		o.Queue = 6
	}
	if o.FlushTimeout == 0 {
		o.FlushTimeout = 5 * time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = min(time.Second, o.MaxBackoff)
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
}

// agent is one run of Run.
type agent struct {
	opt   Options
	m     *Metrics
	q     *queue
	procs map[int]export.Process // traced processes; recording goroutine only
	// Cumulative counters of the recording, to turn into deltas.
	lost  uint64
	stops map[string]int
	files chan *profile.Profile // to the pprof writer; nil without OutDir
	seq   int
}

// Run profiles every Wasmtime process until ctx is done, then flushes.
// It returns an error only when it cannot start (the kernel walker does
// not load, the metrics address is taken, OutDir cannot be made) or the
// recording fails.
func Run(ctx context.Context, opt Options) error {
	opt.defaults()
	a := &agent{opt: opt, m: opt.Metrics, procs: map[int]export.Process{}, stops: map[string]int{}}
	a.m.QueueCapacity.Set(float64(opt.Queue))
	a.q = newQueue(opt.Queue, func() { a.m.Dropped.WithLabelValues(DropQueueFull).Inc() },
		func(n int) { a.m.QueueDepth.Set(float64(n)) })
	var wg sync.WaitGroup
	if opt.MetricsAddr != "" {
		stop, err := a.serveMetrics()
		if err != nil {
			return err
		}
		defer stop()
	}
	if opt.OutDir != "" {
		if err := os.MkdirAll(opt.OutDir, 0o755); err != nil {
			return fmt.Errorf("create output directory: %w", err)
		}
		a.files = make(chan *profile.Profile, opt.Queue)
		wg.Go(a.writeFiles)
	}
	sendCtx, cancelSend := context.WithCancel(context.Background())
	defer cancelSend()
	sent := make(chan struct{})
	go func() { defer close(sent); a.sendLoop(sendCtx) }()

	opt.Log.Info("agent started", "hz", opt.Hz, "interval", opt.Interval, "queue", opt.Queue, "exporter", senderName(opt.Sender))
	ropt := record.Options{Hz: opt.Hz, Log: opt.Log, Tick: a.window, TickEvery: opt.Interval, Windows: true,
		OnTrace: a.onTrace, Refresh: opt.Refresh}
	if opt.Match != nil {
		ropt.Only = func(pid int) bool {
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			return err == nil && opt.Match.MatchString(filepath.Base(strings.TrimSuffix(exe, " (deleted)")))
		}
	}
	p, st, err := record.RunAll(ctx, ropt)
	if p != nil {
		// The partial window since the last tick: what SIGTERM flushes.
		a.window(p, st)
	}
	a.q.close()
	if a.files != nil {
		close(a.files)
	}
	// The flush: the sender empties the queue or runs out of time.
	flush := time.NewTimer(opt.FlushTimeout)
	select {
	case <-sent:
		flush.Stop()
	case <-flush.C:
		cancelSend()
		<-sent
	}
	if n := a.q.len(); n > 0 {
		a.m.Dropped.WithLabelValues(DropShutdown).Add(float64(n))
		opt.Log.Warn("windows not exported at shutdown", "windows", n, "flush_timeout", opt.FlushTimeout)
	}
	wg.Wait()
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	opt.Log.Info("agent stopped")
	return nil
}

func senderName(s export.Sender) string {
	if s == nil {
		return "none"
	}
	return s.String()
}

// onTrace notes what the resource attributes need of a newly traced
// process. It runs on the recording goroutine.
func (a *agent) onTrace(t *record.Target) {
	p := export.Process{PID: t.PID, Wasmtime: t.Layout.Version}
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(t.PID) + "/exe"); err == nil {
		p.Executable = filepath.Base(exe)
	}
	if id, err := export.ContainerID(t.PID); err != nil {
		a.opt.Log.Debug("no container id", "pid", t.PID, "err", err)
	} else {
		p.ContainerID = id
	}
	a.procs[t.PID] = p
	a.opt.Log.Info("tracing process", "pid", t.PID, "exe", p.Executable, "wasmtime", p.Wasmtime, "container", p.ContainerID)
}

// window takes over one window's profile, on the recording goroutine: it
// must not block.
func (a *agent) window(p *profile.Profile, st *record.Stats) {
	now := time.Now()
	a.m.Windows.Inc()
	a.m.Samples.Add(float64(p.Total()))
	if st.Lost > a.lost {
		a.m.Lost.Add(float64(st.Lost - a.lost))
		a.lost = st.Lost
	}
	for why, n := range st.Stops {
		if d := n - a.stops[why]; d > 0 {
			a.m.UnwindFailures.WithLabelValues(why).Add(float64(d))
		}
		a.stops[why] = n
	}
	w := export.WindowOf(p, now.Add(-p.Duration))
	w.Host, w.Resource = a.opt.Host, a.opt.Resource
	w.Processes = make(map[int]export.Process, len(a.procs))
	for pid, info := range a.procs {
		w.Processes[pid] = info
		if !proc.Exists(pid) {
			delete(a.procs, pid) // its last samples are in this window
		}
	}
	a.m.Processes.Set(float64(len(a.procs)))
	a.opt.Log.Debug("window", "samples", p.Total(), "processes", len(a.procs), "queued", a.q.len())
	if a.opt.Sender != nil && len(w.Samples) > 0 {
		a.q.push(w)
	}
	if a.files != nil {
		select {
		case a.files <- p:
		default:
			a.opt.Log.Warn("pprof writer is behind; window not written", "dir", a.opt.OutDir)
		}
	}
}

// sendLoop exports queued windows, oldest first, until the queue is
// closed and empty or ctx is done (the flush time ran out).
func (a *agent) sendLoop(ctx context.Context) {
	for {
		it, done := a.q.head()
		if done {
			return
		}
		if it == nil {
			select {
			case <-a.q.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		a.send(ctx, it)
		if ctx.Err() != nil {
			return
		}
	}
}

// send exports one window, retrying with exponential backoff (and
// jitter, so that a fleet of agents does not retry in step) while the
// error is retryable and the window is still queued.
func (a *agent) send(ctx context.Context, it *item) {
	pd := export.Profiles(it.w, a.opt.Version)
	backoff := a.opt.MinBackoff
	for attempt := 1; ; attempt++ {
		err := a.opt.Sender.Send(ctx, pd)
		if err == nil {
			a.m.Exports.WithLabelValues("success").Inc()
			a.q.remove(it)
			a.opt.Log.Debug("window exported", "start", it.w.Start, "samples", len(it.w.Samples), "attempt", attempt)
			return
		}
		a.m.Exports.WithLabelValues("failure").Inc()
		retry, after := export.IsRetryable(err)
		if !retry {
			a.m.Dropped.WithLabelValues(DropRejected).Inc()
			a.q.remove(it)
			a.opt.Log.Error("window dropped: the collector refused it", "err", err)
			return
		}
		wait := max(after, backoff/2+rand.N(backoff/2+1))
		a.opt.Log.Warn("export failed; retrying", "err", err, "attempt", attempt, "in", wait.Round(time.Millisecond))
		backoff = min(2*backoff, a.opt.MaxBackoff)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		if !a.q.has(it) {
			return // dropped as the oldest meanwhile (counted then)
		}
	}
}

// writeFiles writes each window as pprof into OutDir.
func (a *agent) writeFiles() {
	for p := range a.files {
		a.seq++
		name := filepath.Join(a.opt.OutDir, fmt.Sprintf("wasmtrace-%s-%06d.pb.gz",
			time.Now().UTC().Format("20060102T150405Z"), a.seq))
		if err := writePprof(name, p); err != nil {
			a.opt.Log.Error("write window", "err", err)
		}
	}
}

func writePprof(name string, p *profile.Profile) error {
	tmp := name + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	werr := p.WritePprof(f)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, werr)
	}
	// Renamed when complete, so a reader never sees half a file.
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// serveMetrics serves /metrics on MetricsAddr until the returned stop.
func (a *agent) serveMetrics() (func(), error) {
	ln, err := net.Listen("tcp", a.opt.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("metrics address: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.m.Registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.opt.Log.Error("metrics server", "err", err)
		}
	}()
	a.opt.Log.Info("serving metrics", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}
