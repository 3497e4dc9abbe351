package xds

import (
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/api"
	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
)

func TestPrepare(t *testing.T) {
	res := func(version string, a *workloadv1.Address) *discoveryv3.Resource {
		body, err := anypb.New(a)
		if err != nil {
			t.Fatal(err)
		}
		return &discoveryv3.Resource{Name: a.GetName(), Version: version, Resource: body}
	}
	base := held(t, workloadAddr(webUID, "10.0.0.1"), serviceAddr(webUID))
	tests := []struct {
		name    string
		resp    *discoveryv3.DeltaDiscoveryResponse
		force   bool
		err     string
		snap    bool // a snapshot to deliver
		touched int
		next    int // resources once applied
	}{
		{
			name: "another type",
			resp: &discoveryv3.DeltaDiscoveryResponse{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"},
			err:  `unexpected type "type.googleapis.com/envoy.config.cluster.v3.Cluster"; the agent subscribes to ` + api.AddressType + ` only`,
		},
		{
			name:    "same versions change nothing",
			resp:    &discoveryv3.DeltaDiscoveryResponse{TypeUrl: api.AddressType, Resources: []*discoveryv3.Resource{res("v1", workloadAddr(webUID, "10.0.0.1"))}, RemovedResources: []string{"unknown"}},
			touched: 2,
			next:    2,
		},
		{
			name:  "forced",
			resp:  &discoveryv3.DeltaDiscoveryResponse{TypeUrl: api.AddressType},
			force: true,
			snap:  true,
			next:  2,
		},
		{
			name:    "new version",
			resp:    &discoveryv3.DeltaDiscoveryResponse{TypeUrl: api.AddressType, Resources: []*discoveryv3.Resource{res("v2", workloadAddr(webUID, "10.0.0.2"))}},
			snap:    true,
			touched: 1,
			next:    2,
		},
		{
			name: "removal by resource name",
			resp: &discoveryv3.DeltaDiscoveryResponse{TypeUrl: api.AddressType,
				RemovedResourceNames: []*discoveryv3.ResourceName{{Name: webSvc}}},
			snap:    true,
			touched: 1,
			next:    1,
		},
		{
			name: "removal that breaks a service",
			resp: &discoveryv3.DeltaDiscoveryResponse{TypeUrl: api.AddressType, RemovedResources: []string{webUID}},
			err:  `service "shop/web.shop.svc.cluster.local": endpoints[0].workloadUid: no workload has uid "Kubernetes//Pod/shop/web-1"; add that workload or remove the endpoint`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := prepare(tt.resp, base, "7", tt.force)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Errorf("prepare() error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (d.snap != nil) != tt.snap || len(d.touched) != tt.touched || len(d.next) != tt.next {
				t.Errorf("prepare() = snapshot %v, touched %v, %d resources", d.snap != nil, d.touched, len(d.next))
			}
			if len(base) != 2 {
				t.Fatal("prepare modified the resources in force")
			}
		})
	}
}
