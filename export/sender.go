package export

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pprofile"
	"go.opentelemetry.io/collector/pdata/pprofile/pprofileotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Sender sends profiles to an OTLP endpoint.
type Sender interface {
	// Send sends p in one request. Its error is an *Error, which says
	// whether trying again may help.
	Send(ctx context.Context, p pprofile.Profiles) error
	Close() error
	// String names the protocol and endpoint, for logs.
	String() string
}

// Error is a failed export.
type Error struct {
	// Retryable: the endpoint may accept the same request later (it was
	// unreachable, overloaded or timed out); otherwise it refused it.
	Retryable bool
	// RetryAfter is the delay the endpoint asked for, 0 if none.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// IsRetryable reports whether err is an export failure worth retrying.
func IsRetryable(err error) (bool, time.Duration) {
	var e *Error
	if errors.As(err, &e) {
		return e.Retryable, e.RetryAfter
	}
	return false, 0
}

// NewSender makes the sender c describes. It does not connect: the first
// Send does.
func NewSender(c Config) (Sender, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.HTTP() {
		return &httpSender{c: c, client: &http.Client{Timeout: c.Timeout}}, nil
	}
	target, creds := c.Endpoint, credentials.NewTLS(&tls.Config{})
	if u, err := url.Parse(c.Endpoint); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		target = u.Host
		if u.Scheme == "http" {
			creds = insecure.NewCredentials()
		}
	} else if c.Insecure {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("OTLP/gRPC client for %s: %w", c.Endpoint, err)
	}
	return &grpcSender{c: c, cc: cc, client: pprofileotlp.NewGRPCClient(cc)}, nil
}

type grpcSender struct {
	c      Config
	cc     *grpc.ClientConn
	client pprofileotlp.GRPCClient
}

func (s *grpcSender) String() string { return "OTLP/gRPC " + s.c.Endpoint }
func (s *grpcSender) Close() error   { return s.cc.Close() }

func (s *grpcSender) Send(ctx context.Context, p pprofile.Profiles) error {
	ctx, cancel := context.WithTimeout(ctx, s.c.Timeout)
	defer cancel()
	if len(s.c.Headers) > 0 {
		md := metadata.MD{}
		for k, v := range s.c.Headers {
			md.Set(k, v)
		}
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	resp, err := s.client.Export(ctx, pprofileotlp.NewExportRequestFromProfiles(p))
	if err != nil {
		st := status.Convert(err)
		return &Error{Retryable: retryableCode(st.Code()), Err: fmt.Errorf("export to %s: %w", s, err)}
	}
	if ps := resp.PartialSuccess(); ps.RejectedProfiles() > 0 {
		return &Error{Err: fmt.Errorf("export to %s: %d profiles rejected: %s", s, ps.RejectedProfiles(), ps.ErrorMessage())}
	}
	return nil
}

// retryableCode: the codes the OTLP specification lists as retryable.
func retryableCode(c codes.Code) bool {
	switch c {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange,
		codes.Unavailable, codes.DataLoss, codes.ResourceExhausted:
		return true
	}
	return false
}

type httpSender struct {
	c      Config
	client *http.Client
}

func (s *httpSender) String() string { return "OTLP/HTTP " + s.c.Endpoint }
func (s *httpSender) Close() error   { s.client.CloseIdleConnections(); return nil }

func (s *httpSender) Send(ctx context.Context, p pprofile.Profiles) error {
	req := pprofileotlp.NewExportRequestFromProfiles(p)
	var body []byte
	var err error
	ctype := "application/x-protobuf"
	if s.c.Protocol == ProtocolHTTPJSON {
		body, err = req.MarshalJSON()
		ctype = "application/json"
	} else {
		body, err = req.MarshalProto()
	}
	if err != nil {
		return &Error{Err: fmt.Errorf("encode profiles: %w", err)}
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, s.c.Endpoint, bytes.NewReader(body))
	if err != nil {
		return &Error{Err: fmt.Errorf("export to %s: %w", s, err)}
	}
	hr.Header.Set("Content-Type", ctype)
	hr.Header.Set(pprofileotlp.DevelopmentVersionHeader, pprofileotlp.DevelopmentVersion)
	for k, v := range s.c.Headers {
		hr.Header.Set(k, v)
	}
	resp, err := s.client.Do(hr)
	if err != nil {
		// Unreachable, reset or timed out: all may pass later.
		return &Error{Retryable: true, Err: fmt.Errorf("export to %s: %w", s, err)}
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	e := &Error{Err: fmt.Errorf("export to %s: HTTP %s: %s", s, resp.Status, strings.TrimSpace(string(msg)))}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		e.Retryable = true
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			e.RetryAfter = time.Duration(secs) * time.Second
		}
	}
	return e
}
