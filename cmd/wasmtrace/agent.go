package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/wasmtrace/wasmtrace/agent"
	"github.com/wasmtrace/wasmtrace/export"
)

const agentHelp = `Usage: wasmtrace agent [--interval DURATION] [--endpoint URL] [--protocol PROTOCOL]
                       [--header KEY=VALUE]... [-o DIR] [--metrics ADDR] [flags]

Profiles every process on the host that runs Wasmtime, continuously (those
started later and those in containers too), and every --interval exports
the window's profiles as OpenTelemetry profiles (OTLP) to a collector. One
resource per process: process.pid, process.executable.name, container.id
(in a container), host.name, process.runtime.name "wasmtime",
process.runtime.version (Wasmtime's version) and wasm.module.names; each
sample carries thread.id and thread.name.

The endpoint comes from the OpenTelemetry environment variables, which the
flags override:
  OTEL_EXPORTER_OTLP_ENDPOINT            base URL (HTTP: /v1development/profiles is appended)
  OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT   the profiles URL, used as is
  OTEL_EXPORTER_OTLP[_PROFILES]_PROTOCOL grpc, http/protobuf (default) or http/json
  OTEL_EXPORTER_OTLP[_PROFILES]_HEADERS  key=value,key2=value2 (values URL-encoded)
  OTEL_EXPORTER_OTLP[_PROFILES]_TIMEOUT  per request, in milliseconds (default 10000)
  OTEL_EXPORTER_OTLP[_PROFILES]_INSECURE true: no TLS for a gRPC endpoint without scheme
  OTEL_RESOURCE_ATTRIBUTES               key=value,... added to every resource
With neither an endpoint nor -o, the default is a collector on localhost
(http://localhost:4318). --no-export sends nothing (with -o DIR only).

Sampling never waits for the collector: windows wait in a bounded queue
(--queue), retried with backoff; when it is full the oldest is dropped and
counted (wasmtrace_windows_dropped_total). SIGTERM or Ctrl-C exports the
current window and what is queued within --flush-timeout, then exits.

Examples:
  sudo wasmtrace agent --endpoint http://collector:4318
  sudo wasmtrace agent --protocol grpc --endpoint http://collector:4317 --metrics :9464
  sudo wasmtrace agent --no-export -o /var/lib/wasmtrace --interval 1m

Flags:
`

func cmdAgent(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	hz := fs.Int("F", 99, "sampling frequency in `HZ` per CPU")
	interval := 10 * time.Second
	fs.Var(durationFlag{&interval}, "interval", "export a window every `DURATION` (default 10s)")
	endpoint := fs.String("endpoint", "", "OTLP `URL` (gRPC: host:port too); default from OTEL_EXPORTER_OTLP_*")
	protocol := fs.String("protocol", "", "OTLP `PROTOCOL`: grpc, http/protobuf, http/json; default from OTEL_EXPORTER_OTLP_*")
	var headers headerFlag
	fs.Var(&headers, "header", "add `KEY=VALUE` to every export request (repeatable)")
	insecure := fs.Bool("insecure", false, "no TLS for a gRPC endpoint given without a scheme")
	timeout := fs.Duration("timeout", 0, "`DURATION` of one export request (default 10s or OTEL_EXPORTER_OTLP_TIMEOUT)")
	noExport := fs.Bool("no-export", false, "export nothing (write -o DIR only)")
	queue := fs.Int("queue", 0, "`N` windows kept for export before the oldest is dropped (default: 60s of windows, at least 2)")
	outDir := fs.String("o", "", "also write each window as pprof into `DIR`")
	metrics := fs.String("metrics", "", "serve Prometheus metrics at `ADDR`/metrics (e.g. :9464)")
	maxBackoff := fs.Duration("max-backoff", 10*time.Second, "longest wait between two tries of a window (from 1s, doubling)")
	flushTimeout := fs.Duration("flush-timeout", 5*time.Second, "on SIGTERM, give the last export at most `DURATION`")
	host := fs.String("host-name", "", "host.name of the profiles (default: this host's name)")
	match := fs.String("match", "", "trace only processes whose executable's file name matches `REGEX` (default: every Wasmtime process)")
	verbose := fs.Bool("v", false, "log every window and export (debug level)")
	logJSON := fs.Bool("log-json", false, "log in JSON instead of text")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), agentHelp)
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *hz < 1 || *hz > 10000 {
		fmt.Fprintf(stderr, "wasmtrace agent: -F %d is out of range 1..10000\n", *hz)
		return errUsage
	}
	if interval < 100*time.Millisecond {
		fmt.Fprintf(stderr, "wasmtrace agent: --interval %s is shorter than 100ms\n", interval)
		return errUsage
	}
	if *queue == 0 {
		*queue = max(2, int(time.Minute/interval))
	}
	if *queue < 1 {
		fmt.Fprintf(stderr, "wasmtrace agent: --queue %d must be at least 1\n", *queue)
		return errUsage
	}

	opt := agent.Options{Hz: *hz, Interval: interval, Queue: *queue, OutDir: *outDir, MetricsAddr: *metrics,
		FlushTimeout: *flushTimeout, MaxBackoff: *maxBackoff, Version: version, Log: agentLogger(stderr, *verbose, *logJSON)}
	if *match != "" {
		re, err := regexp.Compile(*match)
		if err != nil {
			fmt.Fprintf(stderr, "wasmtrace agent: --match %q is not a regular expression: %v\n", *match, err)
			return errUsage
		}
		opt.Match = re
	}
	if !*noExport {
		cfg, err := export.ConfigFromEnv(os.Getenv)
		if err != nil {
			return err
		}
		if *protocol != "" {
			cfg.Protocol = *protocol
			if *endpoint == "" && os.Getenv("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" {
				cfg.Endpoint = "" // the new protocol's default
				cfg.SetDefaultEndpoint()
			}
		}
		if *endpoint != "" {
			cfg.SetEndpoint(*endpoint)
		}
		for k, v := range headers {
			cfg.Headers[k] = v
		}
		if *insecure {
			cfg.Insecure = true
		}
		if *timeout > 0 {
			cfg.Timeout = *timeout
		}
		s, err := export.NewSender(cfg)
		if err != nil {
			return err
		}
		defer s.Close()
		opt.Sender = s
	} else if *outDir == "" {
		fmt.Fprintln(stderr, "wasmtrace agent: --no-export without -o DIR would keep nothing")
		return errUsage
	}
	res, err := export.ParseHeaders(os.Getenv("OTEL_RESOURCE_ATTRIBUTES"))
	if err != nil {
		return fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	opt.Resource = res
	opt.Host = *host
	if opt.Host == "" {
		if h, err := os.Hostname(); err == nil {
			opt.Host = h
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return agent.Run(ctx, opt)
}

// headerFlag collects --header KEY=VALUE.
type headerFlag map[string]string

func (h *headerFlag) String() string { return "" }

func (h *headerFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("not KEY=VALUE")
	}
	if *h == nil {
		*h = headerFlag{}
	}
	(*h)[strings.ToLower(strings.TrimSpace(k))] = v
	return nil
}

// agentLogger logs at info level (debug with -v), with timestamps: an
// agent's log is read later, in a journal or a pod's log.
func agentLogger(w io.Writer, verbose, json bool) *slog.Logger {
	o := &slog.HandlerOptions{Level: slog.LevelInfo}
	if verbose {
		o.Level = slog.LevelDebug
	}
	if json {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}
