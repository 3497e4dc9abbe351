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
