package export

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Protocols of the OTLP exporter configuration (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
	ProtocolHTTPJSON     = "http/json"
)

// ProfilesPath is the path of the OTLP profiles signal over HTTP, appended
// to OTEL_EXPORTER_OTLP_ENDPOINT (the collector's otlpreceiver default).
const ProfilesPath = "/v1development/profiles"

// Config is where and how profiles are sent.
type Config struct {
	Protocol string
	// Endpoint is, for gRPC, host:port or a URL whose scheme says
	// whether to use TLS (http: none); for HTTP, the URL profiles are
	// posted to.
	Endpoint string
	// Insecure turns TLS off for a gRPC endpoint without a scheme.
	Insecure bool
	Headers  map[string]string
	Timeout  time.Duration // of each request
}

// ConfigFromEnv reads the OpenTelemetry exporter environment variables
// (https://opentelemetry.io/docs/specs/otel/protocol/exporter/): the
// profile-specific OTEL_EXPORTER_OTLP_PROFILES_* win over the general
// OTEL_EXPORTER_OTLP_*; a general HTTP endpoint is a base URL that the
// signal's path is appended to, a profile-specific one is used as is.
// The default protocol is http/protobuf, as the specification says.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	env := func(name string) string {
		if v := getenv("OTEL_EXPORTER_OTLP_PROFILES_" + name); v != "" {
			return v
		}
		return getenv("OTEL_EXPORTER_OTLP_" + name)
	}
	c := Config{Protocol: env("PROTOCOL"), Timeout: 10 * time.Second, Headers: map[string]string{}}
	if c.Protocol == "" {
		c.Protocol = ProtocolHTTPProtobuf
	}
	if err := checkProtocol(c.Protocol); err != nil {
		return c, err
	}
	if v := getenv("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT"); v != "" {
		c.Endpoint = v
	} else if v := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); v != "" {
		c.Endpoint = v
		if c.HTTP() {
			c.Endpoint = strings.TrimSuffix(v, "/") + ProfilesPath
		}
	}
	c.SetDefaultEndpoint()
	for _, name := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_PROFILES_HEADERS"} {
		h, err := ParseHeaders(getenv(name))
		if err != nil {
			return c, fmt.Errorf("%s: %w", name, err)
		}
		for k, v := range h {
			c.Headers[k] = v
		}
	}
	if v := env("TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return c, fmt.Errorf("OTEL_EXPORTER_OTLP_(PROFILES_)TIMEOUT %q is not a positive number of milliseconds", v)
		}
		c.Timeout = time.Duration(ms) * time.Millisecond
	}
	if v := env("INSECURE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("OTEL_EXPORTER_OTLP_(PROFILES_)INSECURE %q is not a boolean", v)
		}
		c.Insecure = b
	}
	return c, nil
}

// HTTP reports whether c sends over HTTP.
func (c *Config) HTTP() bool { return c.Protocol != ProtocolGRPC }

// SetDefaultEndpoint sets the protocol's default endpoint (a local
// collector) when none is set.
func (c *Config) SetDefaultEndpoint() {
	if c.Endpoint != "" {
		return
	}
	if c.HTTP() {
		c.Endpoint = "http://localhost:4318" + ProfilesPath
	} else {
		c.Endpoint = "http://localhost:4317"
	}
}

// SetEndpoint sets an endpoint given on the command line: like
// OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT, except that an HTTP URL with no
// path gets the profiles path (so --endpoint http://collector:4318 works).
func (c *Config) SetEndpoint(e string) {
	c.Endpoint = e
	if c.HTTP() {
		if u, err := url.Parse(e); err == nil && (u.Path == "" || u.Path == "/") {
			c.Endpoint = strings.TrimSuffix(e, "/") + ProfilesPath
		}
	}
}

func checkProtocol(p string) error {
	switch p {
	case ProtocolGRPC, ProtocolHTTPProtobuf, ProtocolHTTPJSON:
		return nil
	}
	return fmt.Errorf("unknown OTLP protocol %q (want grpc, http/protobuf or http/json)", p)
}

// ParseHeaders parses the OTEL_EXPORTER_OTLP_HEADERS format: key=value
// pairs separated by commas, values URL-encoded.
func ParseHeaders(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("header %q is not key=value", kv)
		}
		dv, err := url.QueryUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("header %q: %w", k, err)
		}
		out[strings.ToLower(k)] = dv
	}
	return out, nil
}

// Validate checks c after flags changed it.
func (c *Config) Validate() error {
	if err := checkProtocol(c.Protocol); err != nil {
		return err
	}
	if c.HTTP() {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("OTLP/HTTP endpoint %q is not an http:// or https:// URL", c.Endpoint)
		}
	}
	return nil
}
