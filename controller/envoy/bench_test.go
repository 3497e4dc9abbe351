package envoy_test

import (
	"fmt"
	"testing"

	"github.com/weftmesh/weft/controller/envoy"
	"github.com/weftmesh/weft/controller/envoy/envoytest"
)

// BenchmarkBuild translates one waypoint's namespace (Build): n Services with their routing
// rules into the Listener, RouteConfigurations, Clusters and ClusterLoadAssignments.
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{10, 50, 200} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			in := envoytest.Input(n)
			cfg := envoy.Build(in, envoy.Options{})
			// A route configuration per HTTP port (9080 and the ServiceEntries' 80 and 8080), a
			// cluster and a load assignment per Service port and subset, a cluster per
			// ServiceEntry, every resource valid and nothing reported: not an error path.
			eds := 4*(n-n/5) + n/5 + n/10
			if cfg.Listener == nil || len(cfg.Routes) != 3 || len(cfg.Clusters) != eds+2 || len(cfg.Endpoints) != eds || len(cfg.Problems) != 0 {
				b.Fatalf("listener %v, %d routes, %d clusters, %d endpoints (want %d), problems %v",
					cfg.Listener != nil, len(cfg.Routes), len(cfg.Clusters), len(cfg.Endpoints), eds, cfg.Problems)
			}
			if err := cfg.Listener.ValidateAll(); err != nil {
				b.Fatal(err)
			}
			for _, r := range cfg.Routes {
				if err := r.ValidateAll(); err != nil {
					b.Fatal(err)
				}
			}
			if vhs := len(cfg.Routes[len(cfg.Routes)-1].VirtualHosts); vhs != n {
				b.Fatalf("route %s has %d virtual hosts, want %d", cfg.Routes[len(cfg.Routes)-1].Name, vhs, n)
			}
			b.ReportAllocs()
			for b.Loop() {
				envoy.Build(in, envoy.Options{})
			}
		})
	}
}
