package xds

import (
	"strings"
	"testing"

	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
	"github.com/weftmesh/weft/nodeagent/state"
)

// held converts addrs into resources in force, at version "v1".
func held(t *testing.T, addrs ...*workloadv1.Address) map[string]resource {
	t.Helper()
	m := make(map[string]resource, len(addrs))
	for _, a := range addrs {
		r, err := ConvertResource(a)
		if err != nil {
			t.Fatal(err)
		}
		m[a.GetName()] = resource{version: "v1", Resource: r}
	}
	return m
}

func TestBuildSnapshot(t *testing.T) {
	web3 := workloadAddr("Kubernetes//Pod/shop/web-3", "10.0.0.1")
	web3.GetWorkload().Namespace = ""
	svc2 := serviceAddr()
	svc2.Name = "shop/web2.shop.svc.cluster.local"
	svc2.GetService().Hostname = "web2.shop.svc.cluster.local"

	tests := []struct {
		name  string
		addrs []*workloadv1.Address
		want  []string // the problems; none means valid
	}{
		{
			name:  "valid",
			addrs: []*workloadv1.Address{workloadAddr(webUID, "10.0.0.1"), serviceAddr(webUID)},
		},
		{
			name:  "problems across resources",
			addrs: []*workloadv1.Address{workloadAddr(webUID, "10.0.0.1"), web3, serviceAddr(webUID, "nobody"), svc2},
			want: []string{
				`workload "Kubernetes//Pod/shop/web-3": namespace: missing; set the workload's namespace`,
				`workload "Kubernetes//Pod/shop/web-3": addresses[0]: 10.0.0.1 is already an address of workload "Kubernetes//Pod/shop/web-1"; give every workload its own addresses`,
				`service "shop/web.shop.svc.cluster.local": endpoints[1].workloadUid: no workload has uid "nobody"; add that workload or remove the endpoint`,
				`service "shop/web2.shop.svc.cluster.local": vips[0]: 10.96.0.10:80 is already served by service "shop/web.shop.svc.cluster.local"; give each service its own VIP`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, err := buildSnapshot("7", held(t, tt.addrs...))
			if len(tt.want) == 0 {
				if err != nil || snap.Version() != "7" || len(snap.Workloads())+len(snap.Services()) != len(tt.addrs) {
					t.Fatalf("buildSnapshot() = %v, %v", snap, err)
				}
				return
			}
			if err == nil {
				t.Fatal("buildSnapshot() = nil error")
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestResourceProblemOutsideTheLists(t *testing.T) {
	got := resourceProblem(&state.FieldError{Field: "other", Detail: "odd"}, nil)
	if got.Kind != KindResource || got.Field != "other" || got.Detail != "odd" {
		t.Errorf("resourceProblem() = %+v", got)
	}
}
