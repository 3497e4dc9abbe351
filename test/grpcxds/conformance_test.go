package grpcxds_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	grpcxdspkg "google.golang.org/grpc/xds"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/weftmesh/weft/controller/envoy"
	"github.com/weftmesh/weft/controller/waypointcfg"
	"github.com/weftmesh/weft/controller/xds"
	"github.com/weftmesh/weft/internal/golden"
	"github.com/weftmesh/weft/internal/hbone"
	"github.com/weftmesh/weft/waypoint/proxy"
	"github.com/weftmesh/weft/waypoint/route"
	"github.com/weftmesh/weft/waypoint/upstream"
)

// The waypoint mesh/waypoint fronts books (end-user: jason → v2, else v1) and ratings (80/20
// between v1 and v2), both backed by the pods books-v1 (127.0.0.2) and books-v2 (127.0.0.3).
// Waypoint-wide: only /grpc.testing.TestService/* is allowed; a request with x-block: yes
// and EmptyCall are denied. ratings alone also denies x-ratings-block: yes.
const objectsYAML = `apiVersion: v1
kind: Namespace
metadata: {name: mesh, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Service
metadata: {name: books, namespace: mesh}
spec: {clusterIP: 10.96.0.20, clusterIPs: [10.96.0.20], ports: [{name: grpc, port: 80, targetPort: %[1]d}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: mesh}
spec: {clusterIP: 10.96.0.30, clusterIPs: [10.96.0.30], ports: [{name: grpc, port: 80, targetPort: %[1]d}]}
---
apiVersion: v1
kind: Pod
metadata: {name: books-v1, namespace: mesh, labels: {app: books, version: v1}}
spec: {nodeName: node-a, serviceAccountName: books, containers: [{name: app, image: books}]}
status: {podIP: 127.0.0.2, podIPs: [{ip: 127.0.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: books-v2, namespace: mesh, labels: {app: books, version: v2}}
spec: {nodeName: node-a, serviceAccountName: books, containers: [{name: app, image: books}]}
status: {podIP: 127.0.0.3, podIPs: [{ip: 127.0.0.3}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: books-1, namespace: mesh, labels: {kubernetes.io/service-name: books}}
addressType: IPv4
ports: [{name: grpc, port: %[1]d}]
endpoints:
- {addresses: [127.0.0.2], conditions: {ready: true}, targetRef: {kind: Pod, name: books-v1, namespace: mesh}}
- {addresses: [127.0.0.3], conditions: {ready: true}, targetRef: {kind: Pod, name: books-v2, namespace: mesh}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ratings-1, namespace: mesh, labels: {kubernetes.io/service-name: ratings}}
addressType: IPv4
ports: [{name: grpc, port: %[1]d}]
endpoints:
- {addresses: [127.0.0.2], conditions: {ready: true}, targetRef: {kind: Pod, name: books-v1, namespace: mesh}}
- {addresses: [127.0.0.3], conditions: {ready: true}, targetRef: {kind: Pod, name: books-v2, namespace: mesh}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: books, namespace: mesh}
spec:
  host: books
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: mesh}
spec:
  host: ratings
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: books, namespace: mesh}
spec:
  hosts: [books]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: books, subset: v2}}]
  - route: [{destination: {host: books, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: mesh}
spec:
  hosts: [ratings]
  http:
  - route:
    - {destination: {host: ratings, subset: v1}, weight: 80}
    - {destination: {host: ratings, subset: v2}, weight: 20}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: test-service-only, namespace: mesh, generation: 1}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  action: ALLOW
  rules:
  - to: [{operation: {paths: ["/grpc.testing.TestService/*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: blocked, namespace: mesh, generation: 1}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  action: DENY
  rules:
  - when: [{key: "request.headers[x-block]", values: ["yes"]}]
  - to: [{operation: {paths: ["/grpc.testing.TestService/EmptyCall"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-blocked, namespace: mesh, generation: 1}
spec:
  targetRefs: [{kind: Service, group: "", name: ratings}]
  action: DENY
  rules:
  - when: [{key: "request.headers[x-ratings-block]", values: ["yes"]}]
`

var (
	waypoint = xds.WaypointKey{Namespace: "mesh", Name: "waypoint"}
	vips     = map[string]netip.AddrPort{"books": netip.MustParseAddrPort("10.96.0.20:80"), "ratings": netip.MustParseAddrPort("10.96.0.30:80")}
	clientID = spiffeid.RequireFromString("spiffe://cluster.local/ns/mesh/sa/client")
)

// translate builds the waypoint's configuration with the backends on port.
func translate(t *testing.T, port int) *waypointcfg.Config {
	t.Helper()
	file := filepath.Join(t.TempDir(), "objects.yaml")
	if err := os.WriteFile(file, fmt.Appendf(nil, objectsYAML, port), 0o600); err != nil {
		t.Fatal(err)
	}
	in := waypointcfg.Input{Name: waypoint.Name, Envoy: envoy.Input{Namespace: waypoint.Namespace}}
	for _, obj := range golden.Objects(t, file) {
		switch o := obj.(type) {
		case *corev1.Namespace:
			in.Envoy.NamespaceLabels = o.Labels
		case *corev1.Pod:
			in.Envoy.Pods = append(in.Envoy.Pods, o)
		case *corev1.Service:
			in.Envoy.Services = append(in.Envoy.Services, o)
			in.Services = append(in.Services, o.Namespace+"/"+o.Name)
		case *discoveryv1.EndpointSlice:
			in.Envoy.EndpointSlices = append(in.Envoy.EndpointSlices, o)
		case *networkingv1.VirtualService:
			in.Envoy.VirtualServices = append(in.Envoy.VirtualServices, o)
		case *networkingv1.DestinationRule:
			in.Envoy.DestinationRules = append(in.Envoy.DestinationRules, o)
		case *securityv1.AuthorizationPolicy:
			in.Policies = append(in.Policies, o)
		default:
			t.Fatalf("unexpected %T", obj)
		}
	}
	cfg := waypointcfg.Build(in, waypointcfg.Options{})
	if len(cfg.Problems) > 0 || cfg.Listener == nil {
		t.Fatalf("translation problems: %v", cfg.Problems)
	}
	return cfg
}

// backendListeners listens on 127.0.0.2 and 127.0.0.3 with one port.
func backendListeners(t *testing.T) (v1, v2 net.Listener, port int) {
	t.Helper()
	for range 20 {
		l1, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Fatalf("listen on 127.0.0.2 (loopback addresses other than 127.0.0.1 are needed): %v", err)
		}
		port = l1.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.3:%d", port))
		if err == nil {
			return l1, l2, port
		}
		l1.Close()
	}
	t.Fatal("no port free on both 127.0.0.2 and 127.0.0.3")
	return nil, nil, 0
}

// testService answers UnaryCall with its version as the hostname.
type testService struct {
	testpb.UnimplementedTestServiceServer
	version string
}

func (s *testService) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Hostname: s.version}, nil
}

func (s *testService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

// controller serves the waypoint's configuration over the controller's ADS on loopback to
// callers authenticated as pod mesh/client-0 and returns its address.
func controller(t *testing.T, ctx context.Context, cfg *waypointcfg.Config) (string, *xds.Server) {
	t.Helper()
	srv, err := xds.New(ctx, xds.Options{
		Authenticate: func(context.Context) (xds.Peer, error) {
			return xds.Peer{Namespace: "mesh", ServiceAccount: "client", Pod: "client-0"}, nil
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.PushWaypoints(ctx, map[xds.WaypointKey]*xds.WaypointConfig{waypoint: {
		Listener: cfg.Listener, Routes: cfg.Routes, Clusters: cfg.Clusters, Endpoints: cfg.Endpoints,
	}})
	g := grpc.NewServer()
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String(), srv
}

// weft is Weft's waypoint handler on the same configuration; its upstream dials each
// endpoint's HTTP stand-in (h2c servers answering with X-Backend: <version>), since the
// gRPC backends enforce RBAC themselves.
type weft struct {
	h *proxy.Handler
}

type mapDialer map[netip.AddrPort]string

func (m mapDialer) Dial(ctx context.Context, ep *upstream.Endpoint) (net.Conn, error) {
	addr, ok := m[ep.Addr]
	if !ok {
		return nil, fmt.Errorf("no stand-in for endpoint %s", ep.Addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

func newWeft(t *testing.T, cfg *waypointcfg.Config, port int) *weft {
	t.Helper()
	dial := mapDialer{}
	for ip, version := range map[string]string{"127.0.0.2": "v1", "127.0.0.3": "v2"} {
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", version)
		}))
		s.Config.Protocols = new(http.Protocols)
		s.Config.Protocols.SetHTTP1(true)
		s.Config.Protocols.SetUnencryptedHTTP2(true)
		s.Start()
		t.Cleanup(s.Close)
		dial[netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))] = s.Listener.Addr().String()
	}
	mgr := upstream.NewManager(dial, upstream.Options{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = mgr.Close() })
	if err := mgr.Update(cfg.Clusters, cfg.Endpoints); err != nil {
		t.Fatal(err)
	}
	pc, err := proxy.Compile([]*listenerv3.Listener{cfg.Listener}, cfg.Routes)
	if err != nil {
		t.Fatal(err)
	}
	h := proxy.NewHandler(proxy.HandlerOptions{Clusters: mgr, Logger: slog.New(slog.DiscardHandler)})
	h.SetConfig(pc)
	return &weft{h: h}
}

// do sends a gRPC-shaped request for path to service through the waypoint handler, as if it
// came from the tunnel to the service's VIP, and returns the status and the backend version.
func (w *weft) do(service, path string, md map[string]string) (int, string) {
	r := httptest.NewRequest(http.MethodPost, "http://"+service+".mesh.svc.cluster.local:80"+path, strings.NewReader(""))
	r.Header.Set("Content-Type", "application/grpc")
	r.Header.Set("Te", "trailers")
	for k, v := range md {
		r.Header.Set(k, v)
	}
	src := netip.MustParseAddrPort("127.0.0.1:40000")
	in := &hbone.Inbound{PeerID: clientID, Authority: vips[service], ForwardedFor: src, RemoteAddr: src}
	rec := httptest.NewRecorder()
	w.h.ServeHTTP(rec, r.WithContext(proxy.WithTunnel(r.Context(), in)))
	return rec.Code, rec.Result().Header.Get("X-Backend")
}

// call makes one gRPC call of path with md and returns its code and the answering version.
func call(ctx context.Context, conn *grpc.ClientConn, path string, md map[string]string) (codes.Code, string, error) {
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(ctx, metadata.New(md)), 10*time.Second)
	defer cancel()
	var err error
	version := ""
	switch path {
	case "/grpc.testing.TestService/UnaryCall":
		var resp *testpb.SimpleResponse
		resp, err = testpb.NewTestServiceClient(conn).UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.WaitForReady(true))
		version = resp.GetHostname()
	case "/grpc.testing.TestService/EmptyCall":
		_, err = testpb.NewTestServiceClient(conn).EmptyCall(ctx, &testpb.Empty{}, grpc.WaitForReady(true))
	case "/grpc.health.v1.Health/Check":
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	default:
		return 0, "", fmt.Errorf("no call for %s", path)
	}
	code := status.Code(err)
	if code != codes.OK && code != codes.PermissionDenied {
		return code, version, err
	}
	return code, version, nil
}

func TestGRPCAgreesWithWaypoint(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l1, l2, port := backendListeners(t)
	cfg := translate(t, port)
	addr, ctrl := controller(t, ctx, cfg)

	bootstrap := fmt.Sprintf(`{
	  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
	  "node": {"id": %q},
	  "server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%%s"
	}`, addr, xds.GRPCNodeID(waypoint, "client-0"))
	// grpc-go reads GRPC_XDS_BOOTSTRAP_CONFIG once, at init: the bootstrap is given in
	// process instead, to the servers and to the client's resolver.
	resolverBuilder, err := grpcxdspkg.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}

	// The backends: gRPC xDS servers, enforcing the RBAC filters of their server listener.
	var serving sync.WaitGroup
	for _, b := range []struct {
		version string
		lis     net.Listener
	}{{"v1", l1}, {"v2", l2}} {
		serving.Add(1)
		var once sync.Once
		srv, err := grpcxdspkg.NewGRPCServer(grpc.Creds(insecure.NewCredentials()), grpcxdspkg.BootstrapContentsForTesting([]byte(bootstrap)),
			grpcxdspkg.ServingModeCallback(func(_ net.Addr, args grpcxdspkg.ServingModeChangeArgs) {
				if args.Mode == connectivity.ServingModeServing {
					once.Do(serving.Done)
				} else if args.Err != nil {
					t.Logf("%s not serving: %v", b.version, args.Err)
				}
			}))
		if err != nil {
			t.Fatal(err)
		}
		testpb.RegisterTestServiceServer(srv, &testService{version: b.version})
		healthpb.RegisterHealthServer(srv, health.NewServer())
		go func() { _ = srv.Serve(b.lis) }()
		t.Cleanup(srv.Stop)
	}
	done := make(chan struct{})
	go func() { serving.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the gRPC xDS servers did not start serving; controller's view: %+v", ctrl.GRPCStatuses())
	}

	dialService := func(service string) *grpc.ClientConn {
		conn, err := grpc.NewClient("xds:///"+service+".mesh.svc.cluster.local:80", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(resolverBuilder))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	books, ratings := dialService("books"), dialService("ratings")
	w := newWeft(t, cfg, port)
	conns := map[string]*grpc.ClientConn{"books": books, "ratings": ratings}

	t.Run("header routing", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			md   map[string]string
			want string
		}{
			{"jason", map[string]string{"end-user": "jason"}, "v2"},
			{"someone else", map[string]string{"end-user": "alice"}, "v1"},
			{"no header", nil, "v1"},
		} {
			for range 10 {
				code, got, err := call(ctx, books, "/grpc.testing.TestService/UnaryCall", tc.md)
				if err != nil || code != codes.OK {
					t.Fatalf("%s: gRPC call: %v %v (controller's view: %+v)", tc.name, code, err, ctrl.GRPCStatuses())
				}
				st, weftGot := w.do("books", "/grpc.testing.TestService/UnaryCall", tc.md)
				if got != tc.want || weftGot != tc.want || st != http.StatusOK {
					t.Fatalf("%s: gRPC reached %q, the waypoint %q (status %d); want %q from both", tc.name, got, weftGot, st, tc.want)
				}
			}
		}
	})

	t.Run("weighted clusters", func(t *testing.T) {
		// The same clusters and weights at the waypoint's route table.
		var rc = cfg.Routes[0]
		table, err := route.Compile(rc)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodPost, "http://ratings.mesh.svc.cluster.local:80/grpc.testing.TestService/UnaryCall", nil)
		rt, _, ok := table.Match(r)
		if !ok || rt.Forward == nil {
			t.Fatalf("the waypoint's table has no forwarding route for ratings")
		}
		weights := map[string]uint32{}
		for _, c := range rt.Forward.Clusters {
			weights[c.Name] = c.Weight
		}
		wantWeights := map[string]uint32{"outbound|80|v1|ratings.mesh.svc.cluster.local": 80, "outbound|80|v2|ratings.mesh.svc.cluster.local": 20}
		if fmt.Sprint(weights) != fmt.Sprint(wantWeights) {
			t.Fatalf("waypoint weights %v, want %v", weights, wantWeights)
		}
		const n = 400
		grpcCount, weftCount := map[string]int{}, map[string]int{}
		for range n {
			code, got, err := call(ctx, ratings, "/grpc.testing.TestService/UnaryCall", nil)
			if err != nil || code != codes.OK {
				t.Fatalf("gRPC call: %v %v", code, err)
			}
			grpcCount[got]++
			_, v := w.do("ratings", "/grpc.testing.TestService/UnaryCall", nil)
			weftCount[v]++
		}
		// 80 % of 400 is 320, σ = 8: within ±32 (4σ) both agree with the weights.
		for who, c := range map[string]map[string]int{"gRPC": grpcCount, "waypoint": weftCount} {
			if c["v1"]+c["v2"] != n || c["v1"] < 288 || c["v1"] > 352 {
				t.Errorf("%s: %v over %d calls, want v1 ≈ 320 (±32), v2 the rest", who, c, n)
			}
		}
		t.Logf("80/20 over %d calls: gRPC %v, waypoint %v", n, grpcCount, weftCount)
	})

	t.Run("RBAC", func(t *testing.T) {
		for _, tc := range []struct {
			name, service, path string
			md                  map[string]string
			allowed             bool
		}{
			{"allowed call", "books", "/grpc.testing.TestService/UnaryCall", nil, true},
			{"denied header", "books", "/grpc.testing.TestService/UnaryCall", map[string]string{"x-block": "yes"}, false},
			{"other header value", "books", "/grpc.testing.TestService/UnaryCall", map[string]string{"x-block": "no"}, true},
			{"denied path", "books", "/grpc.testing.TestService/EmptyCall", nil, false},
			{"not allowed path", "books", "/grpc.health.v1.Health/Check", nil, false},
			{"service policy applies to its service", "ratings", "/grpc.testing.TestService/UnaryCall", map[string]string{"x-ratings-block": "yes"}, false},
			{"service policy not to others", "books", "/grpc.testing.TestService/UnaryCall", map[string]string{"x-ratings-block": "yes"}, true},
			{"waypoint-wide deny on the service too", "ratings", "/grpc.testing.TestService/UnaryCall", map[string]string{"x-block": "yes"}, false},
			{"allowed on the service", "ratings", "/grpc.testing.TestService/UnaryCall", nil, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				for range 4 { // both backends (v1, v2) answer some of them
					code, _, err := call(ctx, conns[tc.service], tc.path, tc.md)
					if err != nil {
						t.Fatal(err)
					}
					st, _ := w.do(tc.service, tc.path, tc.md)
					grpcAllowed, weftAllowed := code == codes.OK, st != http.StatusForbidden
					if grpcAllowed != tc.allowed || weftAllowed != tc.allowed {
						t.Fatalf("gRPC: %v, waypoint: status %d; want allowed=%v from both", code, st, tc.allowed)
					}
				}
			})
		}
	})

	// Every response the gRPC clients received was accepted.
	for _, st := range ctrl.GRPCStatuses() {
		if st.Nacked != "" {
			t.Errorf("%s rejected %s: %s", st.Node, st.NackType, st.NackError)
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal("context ended early")
	}
}
