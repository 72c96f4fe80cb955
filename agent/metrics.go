package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the agent's Prometheus metrics. Counters count since the
// agent started.
type Metrics struct {
	Registry       *prometheus.Registry
	Samples        prometheus.Counter
	Lost           prometheus.Counter
	UnwindFailures *prometheus.CounterVec // by reason
	Processes      prometheus.Gauge
	Windows        prometheus.Counter
	Exports        *prometheus.CounterVec // requests, by result: success, failure
	Dropped        *prometheus.CounterVec // windows never exported, by reason
	QueueDepth     prometheus.Gauge
	QueueCapacity  prometheus.Gauge
}

// Reasons a window is dropped (label reason of wasmtrace_windows_dropped_total).
const (
	DropQueueFull = "queue_full" // the oldest, to make room for a new window
	DropRejected  = "rejected"   // the collector refused it (not retryable)
	DropShutdown  = "shutdown"   // still queued when the flush time ran out
)

// NewMetrics registers the agent's metrics, with Go's and the process's
// (CPU, resident memory), in a registry of their own.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Samples: prometheus.NewCounter(prometheus.CounterOpts{Name: "wasmtrace_samples_total",
			Help: "Samples taken of traced processes' threads."}),
		Lost: prometheus.NewCounter(prometheus.CounterOpts{Name: "wasmtrace_lost_samples_total",
			Help: "Samples the kernel could not deliver (ring buffer full)."}),
		UnwindFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmtrace_unwind_failures_total",
			Help: "Samples whose stack walk stopped at a failed check, by reason."}, []string{"reason"}),
		Processes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "wasmtrace_processes_traced",
			Help: "Wasmtime processes being traced."}),
		Windows: prometheus.NewCounter(prometheus.CounterOpts{Name: "wasmtrace_windows_total",
			Help: "Profile windows taken (one every --interval)."}),
		Exports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmtrace_export_requests_total",
			Help: "OTLP export requests, by result (success, failure)."}, []string{"result"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmtrace_windows_dropped_total",
			Help: "Windows never exported, by reason (queue_full, rejected, shutdown)."}, []string{"reason"}),
		QueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "wasmtrace_export_queue_windows",
			Help: "Windows waiting to be exported, including the one being sent."}),
		QueueCapacity: prometheus.NewGauge(prometheus.GaugeOpts{Name: "wasmtrace_export_queue_capacity_windows",
			Help: "Windows the export queue holds before dropping the oldest."}),
	}
	// Present from the start, so that a dashboard sees 0 rather than
	// nothing.
	for _, r := range []string{"success", "failure"} {
		m.Exports.WithLabelValues(r)
	}
	for _, r := range []string{DropQueueFull, DropRejected, DropShutdown} {
		m.Dropped.WithLabelValues(r)
	}
	r.MustRegister(m.Samples, m.Lost, m.UnwindFailures, m.Processes, m.Windows, m.Exports, m.Dropped,
		m.QueueDepth, m.QueueCapacity,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
