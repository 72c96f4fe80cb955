package export

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pprofile"
	"go.opentelemetry.io/collector/pdata/pprofile/pprofileotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/wasmtrace/wasmtrace/profile"
)

func testWindow() Window {
	p := profile.New()
	p.Hz = 100
	p.Duration = 2 * time.Second
	chain := []profile.Frame{profile.WasmFrame("run", "m"), profile.WasmFrame("chain_a", "m"), profile.HostFrame()}
	p.AddN(profile.Sample{Frames: chain, PID: 10, Process: "host-a", TID: 11, Thread: "worker"}, 5)
	p.AddN(profile.Sample{Frames: chain[:2], PID: 10, Process: "host-a", TID: 12, Thread: "other"}, 2)
	p.AddN(profile.Sample{Frames: []profile.Frame{profile.NoWasmFrame()}, PID: 20, Process: "host-b", TID: 20, Thread: "host-b"}, 1)
	w := WindowOf(p, time.Unix(1000, 0))
	w.Host = "h1"
	w.Resource = map[string]string{"deployment.environment.name": "test", AttrHostName: "overridden"}
	w.Processes = map[int]Process{10: {PID: 10, Executable: "host-a-exe", ContainerID: "abc", Wasmtime: "39.0.0"}}
	return w
}

// Through the wire format and back: stacks root first, counts, every
// attribute.
func TestProfilesRoundTrip(t *testing.T) {
	pd := Profiles(testWindow(), "v1")
	b, err := pprofileotlp.NewExportRequestFromProfiles(pd).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	req := pprofileotlp.NewExportRequest()
	if err := req.UnmarshalProto(b); err != nil {
		t.Fatal(err)
	}
	got := req.Profiles()
	if n := got.ResourceProfiles().Len(); n != 2 {
		t.Fatalf("%d resources, want one per process (2)", n)
	}
	dict := got.Dictionary()
	strs := dict.StringTable()
	if strs.At(0) != "" || dict.LocationTable().Len() == 0 || dict.StackTable().At(0).LocationIndices().Len() != 0 {
		t.Errorf("the dictionary's tables do not start with their zero entries")
	}
	type key struct {
		pid   int64
		stack string
		tid   int64
	}
	stacks := map[key]int64{}
	for _, rp := range got.ResourceProfiles().All() {
		attrs := rp.Resource().Attributes().AsRaw()
		pid := attrs[AttrPID].(int64)
		want := map[string]any{AttrPID: int64(10), AttrExecutable: "host-a-exe", AttrContainerID: "abc", AttrHostName: "h1",
			AttrRuntimeName: "wasmtime", AttrRuntimeVersion: "39.0.0", AttrModules: []any{"m"}, "deployment.environment.name": "test"}
		if pid == 20 {
			want = map[string]any{AttrPID: int64(20), AttrExecutable: "host-b", AttrHostName: "h1", AttrRuntimeName: "wasmtime",
				AttrModules: []any{}, "deployment.environment.name": "test"}
		}
		for k, v := range want {
			if g := attrs[k]; !equal(g, v) {
				t.Errorf("pid %d: %s = %#v, want %#v", pid, k, g, v)
			}
		}
		if len(attrs) != len(want) {
			t.Errorf("pid %d: attributes %v, want %v", pid, attrs, want)
		}
		sp := rp.ScopeProfiles().At(0)
		if sp.Scope().Name() != ScopeName || sp.Scope().Version() != "v1" {
			t.Errorf("scope %s %s", sp.Scope().Name(), sp.Scope().Version())
		}
		pr := sp.Profiles().At(0)
		if pr.Period() != 1e7 || pr.DurationNano() != 2e9 || pr.Time().AsTime().Unix() != 1000 {
			t.Errorf("period %d, duration %d, time %v", pr.Period(), pr.DurationNano(), pr.Time())
		}
		if s := strs.At(int(pr.PeriodType().TypeStrindex())) + "/" + strs.At(int(pr.PeriodType().UnitStrindex())); s != "cpu/nanoseconds" {
			t.Errorf("period type %s", s)
		}
		for _, s := range pr.Samples().All() {
			var names []string
			for _, li := range dict.StackTable().At(int(s.StackIndex())).LocationIndices().All() {
				loc := dict.LocationTable().At(int(li))
				fn := dict.FunctionTable().At(int(loc.Lines().At(0).FunctionIndex()))
				names = append(names, strs.At(int(fn.NameStrindex())))
				a, _ := pprofile.FromAttributeIndices(dict.AttributeTable(), loc, dict)
				ft, isWasm := a.Get(AttrFrameType)
				if wantWasm := !strings.HasPrefix(names[len(names)-1], "["); isWasm != wantWasm || (isWasm && ft.Str() != "wasm") {
					t.Errorf("frame %s: profile.frame.type %v", names[len(names)-1], a.AsRaw())
				}
			}
			slices.Reverse(names)
			a, _ := pprofile.FromAttributeIndices(dict.AttributeTable(), s, dict)
			tid, _ := a.Get(AttrThreadID)
			if _, ok := a.Get(AttrThreadName); !ok {
				t.Errorf("sample without thread.name")
			}
			stacks[key{pid, strings.Join(names, ";"), tid.Int()}] += s.Values().At(0)
		}
	}
	want := map[key]int64{
		{10, "run;chain_a;[host]", 11}: 5,
		{10, "run;chain_a", 12}:        2,
		{20, "[no Wasm]", 20}:          1,
	}
	if len(stacks) != len(want) {
		t.Errorf("stacks %v, want %v", stacks, want)
	}
	for k, n := range want {
		if stacks[k] != n {
			t.Errorf("%v: %d samples, want %d (all: %v)", k, stacks[k], n, stacks)
		}
	}
}

func equal(a, b any) bool {
	as, ok1 := a.([]any)
	bs, ok2 := b.([]any)
	if ok1 || ok2 {
		return ok1 && ok2 && slices.Equal(as, bs)
	}
	return a == b
}

func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want Config
		err  string
	}{
		{"defaults", nil, Config{Protocol: ProtocolHTTPProtobuf, Endpoint: "http://localhost:4318/v1development/profiles"}, ""},
		{"grpc default", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, Config{Protocol: "grpc", Endpoint: "http://localhost:4317"}, ""},
		{"base URL gets the path", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"},
			Config{Protocol: ProtocolHTTPProtobuf, Endpoint: "http://c:4318/v1development/profiles"}, ""},
		{"profiles endpoint as is, profiles protocol wins", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
			"OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT": "http://p:1/x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL": "http/json"}, Config{Protocol: ProtocolHTTPJSON, Endpoint: "http://p:1/x"}, ""},
		{"headers merge, profiles win", map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "a=1,B=x%20y",
			"OTEL_EXPORTER_OTLP_PROFILES_HEADERS": "a=2"}, Config{Protocol: ProtocolHTTPProtobuf,
			Endpoint: "http://localhost:4318/v1development/profiles", Headers: map[string]string{"a": "2", "b": "x y"}}, ""},
		{"timeout and insecure", map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "1500", "OTEL_EXPORTER_OTLP_PROFILES_INSECURE": "true"},
			Config{Protocol: ProtocolHTTPProtobuf, Endpoint: "http://localhost:4318/v1development/profiles", Timeout: 1500 * time.Millisecond, Insecure: true}, ""},
		{"bad protocol", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "udp"}, Config{}, "unknown OTLP protocol"},
		{"bad header", map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, Config{}, "not key=value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ConfigFromEnv(func(k string) string { return tc.env[k] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want.Timeout == 0 {
				tc.want.Timeout = 10 * time.Second
			}
			if tc.want.Headers == nil {
				tc.want.Headers = map[string]string{}
			}
			if c.Protocol != tc.want.Protocol || c.Endpoint != tc.want.Endpoint || c.Timeout != tc.want.Timeout ||
				c.Insecure != tc.want.Insecure || len(c.Headers) != len(tc.want.Headers) {
				t.Fatalf("got %+v, want %+v", c, tc.want)
			}
			for k, v := range tc.want.Headers {
				if c.Headers[k] != v {
					t.Errorf("header %s = %q, want %q", k, c.Headers[k], v)
				}
			}
		})
	}
}

func TestContainerID(t *testing.T) {
	id := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct{ cgroup, want string }{
		{"0::/system.slice/docker-" + id + ".scope\n", id},
		{"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-" + id + ".scope\n", id},
		{"12:pids:/docker/" + id + "\n0::/\n", id},
		{"0::/machine.slice/libpod-" + id + ".scope/container\n", id},
		{"0::/user.slice/user-0.slice/session-1.scope\n", ""},
		{"0::/\n", ""},
	} {
		got, err := containerIDFromCgroup(strings.NewReader(tc.cgroup))
		if err != nil || got != tc.want {
			t.Errorf("%q: %q, %v; want %q", tc.cgroup, got, err, tc.want)
		}
	}
}

func TestHTTPSender(t *testing.T) {
	status := http.StatusOK
	var got pprofile.Profiles
	var hdr http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr = r.Header
		b, _ := io.ReadAll(r.Body)
		req := pprofileotlp.NewExportRequest()
		if err := req.UnmarshalProto(b); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		got = req.Profiles()
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(status)
	}))
	defer srv.Close()
	s, err := NewSender(Config{Protocol: ProtocolHTTPProtobuf, Endpoint: srv.URL + ProfilesPath, Headers: map[string]string{"authorization": "Bearer x"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), Profiles(testWindow(), "v1")); err != nil {
		t.Fatal(err)
	}
	if got.ResourceProfiles().Len() != 2 || hdr.Get("Authorization") != "Bearer x" || hdr.Get("Content-Type") != "application/x-protobuf" ||
		hdr.Get(pprofileotlp.DevelopmentVersionHeader) != pprofileotlp.DevelopmentVersion {
		t.Errorf("received %d resources, headers %v", got.ResourceProfiles().Len(), hdr)
	}
	for code, retry := range map[int]bool{503: true, 429: true, 400: false, 500: false} {
		status = code
		err := s.Send(context.Background(), Profiles(testWindow(), "v1"))
		r, after := IsRetryable(err)
		if err == nil || r != retry || (retry && after != 3*time.Second) {
			t.Errorf("HTTP %d: err %v, retryable %v after %s; want retryable %v", code, err, r, after, retry)
		}
	}
	srv.Close()
	if r, _ := IsRetryable(s.Send(context.Background(), Profiles(testWindow(), "v1"))); !r {
		t.Errorf("a refused connection is not retryable")
	}
}

type grpcServer struct {
	pprofileotlp.UnimplementedGRPCServer
	code codes.Code
	md   metadata.MD
	got  int
}

func (g *grpcServer) Export(ctx context.Context, req pprofileotlp.ExportRequest) (pprofileotlp.ExportResponse, error) {
	g.md, _ = metadata.FromIncomingContext(ctx)
	if g.code != codes.OK {
		return pprofileotlp.NewExportResponse(), status.Error(g.code, "no")
	}
	g.got = req.Profiles().ResourceProfiles().Len()
	return pprofileotlp.NewExportResponse(), nil
}

func TestGRPCSender(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	impl := &grpcServer{}
	pprofileotlp.RegisterGRPCServer(gs, impl)
	go gs.Serve(ln)
	defer gs.Stop()
	s, err := NewSender(Config{Protocol: ProtocolGRPC, Endpoint: "http://" + ln.Addr().String(), Headers: map[string]string{"x-key": "k"}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Send(context.Background(), Profiles(testWindow(), "v1")); err != nil {
		t.Fatal(err)
	}
	if impl.got != 2 || slices.Equal(impl.md.Get("x-key"), []string{"k"}) == false {
		t.Errorf("received %d resources, metadata %v", impl.got, impl.md)
	}
	for code, retry := range map[codes.Code]bool{codes.Unavailable: true, codes.ResourceExhausted: true, codes.InvalidArgument: false, codes.PermissionDenied: false} {
		impl.code = code
		r, _ := IsRetryable(s.Send(context.Background(), Profiles(testWindow(), "v1")))
		if r != retry {
			t.Errorf("%s: retryable %v, want %v", code, r, retry)
		}
	}
}
