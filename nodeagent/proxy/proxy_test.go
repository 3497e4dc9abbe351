package proxy

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/weftmesh/weft/internal/hbone"
	"github.com/weftmesh/weft/nodeagent/admin"
	"github.com/weftmesh/weft/nodeagent/config"
)

const meshYAML = `
workloads:
  - {uid: gw, name: gw-1, namespace: mesh, serviceAccount: gw, node: node-2, addresses: [198.18.2.2], tunnelProtocol: HBONE}
  - {uid: books, name: books-1, namespace: mesh, serviceAccount: books, node: node-1, addresses: [198.18.1.3], tunnelProtocol: HBONE}
  - {uid: plain, name: plain, namespace: outside, node: node-1, addresses: [198.18.1.9]}
services:
  - name: books
    namespace: mesh
    hostname: books.mesh.svc.cluster.local
    vips: [198.19.0.40]
    ports: [{name: http, port: 80, targetPort: 8080}]
    endpoints: [{workloadUid: books}]
`

func TestResolve(t *testing.T) {
	snap, err := config.Decode([]byte(meshYAML), "v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		orig     string
		wantUID  string
		wantPort uint16
		wantSvc  bool
	}{
		{"service VIP picks an endpoint and its target port", "198.19.0.40:80", "books", 8080, true},
		{"pod IP is that workload", "198.18.1.3:8080", "books", 8080, false},
		{"workload outside the mesh", "198.18.1.9:8080", "plain", 8080, false},
		{"unknown address", "203.0.113.7:443", "", 443, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, port, svc := resolve(snap, netip.MustParseAddrPort(tc.orig))
			uid := ""
			if w != nil {
				uid = w.UID
			}
			if uid != tc.wantUID || port != tc.wantPort || (svc != nil) != tc.wantSvc {
				t.Errorf("resolve(%s) = %q:%d service=%v, want %q:%d service=%v", tc.orig, uid, port, svc != nil, tc.wantUID, tc.wantPort, tc.wantSvc)
			}
		})
	}
}

func TestResponseFlag(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want admin.ResponseFlag
	}{
		{&hbone.StatusError{Code: 401}, admin.FlagDenied},
		{&hbone.StatusError{Code: 503}, admin.FlagConnectFailure},
		{errors.New("dial tcp: connection refused"), admin.FlagConnectFailure},
	} {
		if got := responseFlag(tc.err); got != tc.want {
			t.Errorf("responseFlag(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestLabels(t *testing.T) {
	snap, err := config.Decode([]byte(meshYAML), "v1")
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := snap.WorkloadByUID("gw")
	books, _ := snap.WorkloadByUID("books")
	l := labels(Conn{Reporter: admin.ReporterSource, Source: gw, SourceID: gw.Identity(), Destination: books, Security: admin.SecurityMutualTLS})
	if l.SourcePrincipal != "spiffe://cluster.local/ns/mesh/sa/gw" || l.DestinationPrincipal != "spiffe://cluster.local/ns/mesh/sa/books" {
		t.Errorf("principals = %q → %q", l.SourcePrincipal, l.DestinationPrincipal)
	}
	anon := labels(Conn{Reporter: admin.ReporterDestination, Destination: books, Security: admin.SecurityNone})
	if anon.SourcePrincipal != "" {
		t.Errorf("an unauthenticated source must have no principal, got %q", anon.SourcePrincipal)
	}
}

const waypointYAML = `
workloads:
  - {uid: wp, name: waypoint-1, namespace: shop, serviceAccount: waypoint, node: node-2, addresses: [198.18.2.7], tunnelProtocol: HBONE, nativeTunnel: true}
  - uid: books
    name: books-1
    namespace: shop
    node: node-1
    addresses: [198.18.1.3]
    tunnelProtocol: HBONE
    waypoint: {namespace: shop, hostname: waypoint.shop.svc.cluster.local}
  - {uid: plain, name: plain-1, namespace: shop, node: node-1, addresses: [198.18.1.4], tunnelProtocol: HBONE}
services:
  - name: waypoint
    namespace: shop
    hostname: waypoint.shop.svc.cluster.local
    vips: [198.19.0.50]
    ports: [{name: mesh, port: 15008}]
    endpoints: [{workloadUid: wp}]
  - name: books
    namespace: shop
    hostname: books.shop.svc.cluster.local
    vips: [198.19.0.40]
    ports: [{port: 80, targetPort: 8080}]
    endpoints: [{workloadUid: books}]
    waypoint: {namespace: shop, hostname: waypoint.shop.svc.cluster.local, address: 198.19.0.50}
  - name: ratings
    namespace: shop
    hostname: ratings.shop.svc.cluster.local
    vips: [198.19.0.41]
    ports: [{port: 80}]
    endpoints: [{workloadUid: plain}]
    waypoint: {namespace: shop, hostname: missing.shop.svc.cluster.local, fallbackDirect: true}
  - name: reviews
    namespace: shop
    hostname: reviews.shop.svc.cluster.local
    vips: [198.19.0.42]
    ports: [{port: 80}]
    endpoints: [{workloadUid: plain}]
    waypoint: {namespace: shop, hostname: missing.shop.svc.cluster.local}
`

// Service VIPs use the service's waypoint, pod addresses the workload's; a waypoint without a
// ready pod is unavailable (the caller refuses, unless fallback is opted into).
func TestWaypointOf(t *testing.T) {
	snap, err := config.Decode([]byte(waypointYAML), "v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		orig         string
		wantWaypoint string // "" for none
		wantPod      string // "" when unavailable
		wantFallback bool
	}{
		{"198.19.0.40:80", "shop/waypoint.shop.svc.cluster.local", "wp", false},
		{"198.18.1.3:8080", "shop/waypoint.shop.svc.cluster.local", "wp", false},
		{"198.18.1.4:8080", "", "", false},
		{"198.19.0.41:80", "shop/missing.shop.svc.cluster.local", "", true},
		{"198.19.0.42:80", "shop/missing.shop.svc.cluster.local", "", false},
		{"203.0.113.1:80", "", "", false},
	} {
		g, _ := waypointOf(snap, netip.MustParseAddrPort(tc.orig))
		if g == nil {
			if tc.wantWaypoint != "" {
				t.Errorf("%s: no waypoint, want %s", tc.orig, tc.wantWaypoint)
			}
			continue
		}
		pod := ""
		if w, ok := snap.Waypoint(g, nil); ok {
			pod = w.UID
		}
		if g.Name() != tc.wantWaypoint || pod != tc.wantPod || g.FallbackDirect != tc.wantFallback {
			t.Errorf("%s: waypoint %s pod %q fallback %v, want %s pod %q fallback %v", tc.orig, g.Name(), pod, g.FallbackDirect, tc.wantWaypoint, tc.wantPod, tc.wantFallback)
		}
	}
	if w, _ := snap.WorkloadByUID("wp"); !w.Enrolled() || w.Captured() {
		t.Errorf("waypoint pod: enrolled %v captured %v, want reached over HBONE but not captured", w.Enrolled(), w.Captured())
	}
}
