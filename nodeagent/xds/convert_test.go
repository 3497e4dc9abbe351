package xds

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/api"

	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
	"github.com/weftmesh/weft/nodeagent/state"
)

const (
	webUID = "Kubernetes//Pod/shop/web-1"
	webSvc = "shop/web.shop.svc.cluster.local"
)

func workloadAddr(uid string, addrs ...string) *workloadv1.Address {
	return &workloadv1.Address{Name: uid, Type: &workloadv1.Address_Workload{Workload: &workloadv1.Workload{
		Uid:            uid,
		Name:           uid[strings.LastIndex(uid, "/")+1:],
		Namespace:      "shop",
		ServiceAccount: "web",
		Node:           "node-a",
		Addresses:      addrs,
		TunnelProtocol: workloadv1.TunnelProtocol_HBONE,
	}}}
}

func serviceAddr(endpoints ...string) *workloadv1.Address {
	svc := &workloadv1.Service{
		Name:      "web",
		Namespace: "shop",
		Hostname:  "web.shop.svc.cluster.local",
		Vips:      []string{"10.96.0.10"},
		Ports:     []*workloadv1.Port{{Name: "http", Port: 80, TargetPort: 8080, AppProtocol: workloadv1.AppProtocol_HTTP11}},
	}
	for _, uid := range endpoints {
		svc.Endpoints = append(svc.Endpoints, &workloadv1.Endpoint{WorkloadUid: uid})
	}
	return &workloadv1.Address{Name: webSvc, Type: &workloadv1.Address_Service{Service: svc}}
}

func TestConvertWorkload(t *testing.T) {
	a := &workloadv1.Address{Name: webUID, Type: &workloadv1.Address_Workload{Workload: &workloadv1.Workload{
		Uid:                  webUID,
		Name:                 "web-1",
		Namespace:            "shop",
		ServiceAccount:       "web",
		TrustDomain:          "example.org",
		Node:                 "node-a",
		ClusterId:            "Kubernetes",
		Addresses:            []string{"10.244.1.5", "fd00::5", "::ffff:10.244.1.6"},
		TunnelProtocol:       workloadv1.TunnelProtocol_HBONE,
		Waypoint:             &workloadv1.GatewayAddress{Address: "10.244.1.20", HboneMtlsPort: 15009},
		Status:               workloadv1.WorkloadStatus_UNHEALTHY,
		WorkloadName:         "web",
		WorkloadType:         workloadv1.WorkloadType_JOB,
		CanonicalName:        "web",
		CanonicalRevision:    "v1",
		Labels:               map[string]string{"app": "web"},
		ExcludeInboundPorts:  []uint32{15020},
		ExcludeOutboundPorts: []uint32{5432, 6379},
		PeerAuthentication: &workloadv1.PeerAuthentication{
			Mode:      workloadv1.MTLSMode_STRICT,
			PortLevel: map[uint32]workloadv1.MTLSMode{9090: workloadv1.MTLSMode_PERMISSIVE},
		},
	}}}
	r, err := ConvertResource(a)
	w, svc := r.Workload, r.Service
	if err != nil || svc != nil {
		t.Fatalf("ConvertResource() = %v, %v, %v", w, svc, err)
	}
	want := &state.Workload{
		UID:                  webUID,
		Name:                 "web-1",
		Namespace:            "shop",
		ServiceAccount:       "web",
		TrustDomain:          "example.org",
		Node:                 "node-a",
		ClusterID:            "Kubernetes",
		Addresses:            []netip.Addr{netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("fd00::5"), netip.MustParseAddr("10.244.1.6")},
		TunnelProtocol:       state.TunnelHBONE,
		Waypoint:             &state.GatewayAddress{Address: netip.MustParseAddr("10.244.1.20"), HBONEMTLSPort: 15009},
		Status:               state.Unhealthy,
		WorkloadName:         "web",
		WorkloadType:         state.Job,
		CanonicalName:        "web",
		CanonicalRevision:    "v1",
		Labels:               map[string]string{"app": "web"},
		ExcludeInboundPorts:  []uint16{15020},
		ExcludeOutboundPorts: []uint16{5432, 6379},
		PeerAuthentication:   state.PeerAuthentication{Mode: state.ModeStrict, PortLevel: map[uint16]state.Mode{9090: state.ModePermissive}},
	}
	if !reflect.DeepEqual(w, want) {
		t.Errorf("ConvertResource() =\n%+v\nwant\n%+v", w, want)
	}
}

func TestConvertService(t *testing.T) {
	a := serviceAddr(webUID)
	s := a.GetService()
	s.Vips = append(s.Vips, "fd00:96::10")
	s.Ports = append(s.Ports, &workloadv1.Port{Name: "metrics", Port: 9090})
	s.Endpoints[0].Ports = map[uint32]uint32{80: 8081}
	s.Waypoint = &workloadv1.GatewayAddress{Address: "10.244.1.20"}
	r, err := ConvertResource(a)
	w, svc := r.Workload, r.Service
	if err != nil || w != nil {
		t.Fatalf("ConvertResource() = %v, %v, %v", w, svc, err)
	}
	want := &state.Service{
		Name:      "web",
		Namespace: "shop",
		Hostname:  "web.shop.svc.cluster.local",
		VIPs:      []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00:96::10")},
		Ports: []state.ServicePort{
			{Name: "http", Port: 80, TargetPort: 8080, AppProtocol: state.ProtocolHTTP11},
			{Name: "metrics", Port: 9090},
		},
		Endpoints: []state.Endpoint{{WorkloadUID: webUID, Ports: map[uint16]uint16{80: 8081}}},
		Waypoint:  &state.GatewayAddress{Address: netip.MustParseAddr("10.244.1.20")},
	}
	if !reflect.DeepEqual(svc, want) {
		t.Errorf("ConvertResource() =\n%+v\nwant\n%+v", svc, want)
	}
}

func TestConvertErrors(t *testing.T) {
	wl := func(a *workloadv1.Address) *workloadv1.Workload { return a.GetWorkload() }
	sv := func(a *workloadv1.Address) *workloadv1.Service { return a.GetService() }
	tests := []struct {
		name   string
		in     *workloadv1.Address
		mutate func(a *workloadv1.Address)
		want   []string // the problems, in order
	}{
		{
			name: "bad addresses",
			in:   workloadAddr(webUID, "10.0.0.1", "10.0.0.x", "fe80::1%eth0"),
			want: []string{
				`workload "Kubernetes//Pod/shop/web-1": addresses[1]: "10.0.0.x" is not an IP address; write an IPv4 or IPv6 address`,
				`workload "Kubernetes//Pod/shop/web-1": addresses[2]: "fe80::1%eth0" has a zone; write the address without "%eth0"`,
			},
		},
		{
			name: "enum values out of range",
			in:   workloadAddr(webUID, "10.0.0.1"),
			mutate: func(a *workloadv1.Address) {
				w := wl(a)
				w.TunnelProtocol = 2
				w.Status = -1
				w.WorkloadType = 4
				w.PeerAuthentication = &workloadv1.PeerAuthentication{Mode: 9, PortLevel: map[uint32]workloadv1.MTLSMode{80: 4}}
			},
			want: []string{
				`workload "Kubernetes//Pod/shop/web-1": tunnelProtocol: unknown value 2; use NONE or HBONE`,
				`workload "Kubernetes//Pod/shop/web-1": status: unknown value -1; use HEALTHY or UNHEALTHY`,
				`workload "Kubernetes//Pod/shop/web-1": workloadType: unknown value 4; use DEPLOYMENT, CRONJOB, POD or JOB`,
				`workload "Kubernetes//Pod/shop/web-1": peerAuthentication.mode: unknown value 9; use UNSET, DISABLE, PERMISSIVE or STRICT`,
				`workload "Kubernetes//Pod/shop/web-1": peerAuthentication.portLevel[80]: unknown value 4; use UNSET, DISABLE, PERMISSIVE or STRICT`,
			},
		},
		{
			name: "workload ports out of range",
			in:   workloadAddr(webUID, "10.0.0.1"),
			mutate: func(a *workloadv1.Address) {
				w := wl(a)
				w.ExcludeInboundPorts = []uint32{15020, 65536}
				w.ExcludeOutboundPorts = []uint32{0}
				w.Waypoint = &workloadv1.GatewayAddress{Address: "10.0.0.9", HboneMtlsPort: 70000}
				w.PeerAuthentication = &workloadv1.PeerAuthentication{PortLevel: map[uint32]workloadv1.MTLSMode{0: workloadv1.MTLSMode_STRICT}}
			},
			want: []string{
				`workload "Kubernetes//Pod/shop/web-1": waypoint.hboneMtlsPort: 70000 is out of range; write a port number from 1 to 65535`,
				`workload "Kubernetes//Pod/shop/web-1": excludeInboundPorts[1]: 65536 is out of range; write a port number from 1 to 65535`,
				`workload "Kubernetes//Pod/shop/web-1": excludeOutboundPorts[0]: 0 is out of range; write a port number from 1 to 65535`,
				`workload "Kubernetes//Pod/shop/web-1": peerAuthentication.portLevel[0]: 0 is out of range; write a port number from 1 to 65535`,
			},
		},
		{
			name:   "workload named after another uid",
			in:     workloadAddr(webUID, "10.0.0.1"),
			mutate: func(a *workloadv1.Address) { wl(a).Uid = "Kubernetes//Pod/shop/web-2" },
			want: []string{
				`workload "Kubernetes//Pod/shop/web-1": uid: "Kubernetes//Pod/shop/web-2" differs from the resource name; name a workload resource after its uid`,
			},
		},
		{
			name:   "waypoint without address",
			in:     workloadAddr(webUID, "10.0.0.1"),
			mutate: func(a *workloadv1.Address) { wl(a).Waypoint = &workloadv1.GatewayAddress{} },
			want: []string{
				`workload "Kubernetes//Pod/shop/web-1": waypoint.address: missing; write the waypoint's IP address or name its Service (namespace and hostname)`,
			},
		},
		{
			name: "service ports",
			in:   serviceAddr(webUID),
			mutate: func(a *workloadv1.Address) {
				s := sv(a)
				s.Ports = append(s.Ports, &workloadv1.Port{Port: 65536, TargetPort: 1 << 20, AppProtocol: 7}, &workloadv1.Port{})
				s.Endpoints[0].Ports = map[uint32]uint32{80: 0, 70000: 8080}
			},
			want: []string{
				`service "shop/web.shop.svc.cluster.local": ports[1].port: 65536 is out of range; write a port number from 1 to 65535`,
				`service "shop/web.shop.svc.cluster.local": ports[1].targetPort: 1048576 is out of range; write a port number from 1 to 65535`,
				`service "shop/web.shop.svc.cluster.local": ports[1].appProtocol: unknown value 7; use UNKNOWN, HTTP11, HTTP2 or GRPC`,
				`service "shop/web.shop.svc.cluster.local": ports[2].port: 0 is out of range; write a port number from 1 to 65535`,
				`service "shop/web.shop.svc.cluster.local": endpoints[0].ports[80]: 0 is out of range; write a port number from 1 to 65535`,
				`service "shop/web.shop.svc.cluster.local": endpoints[0].ports[70000]: 70000 is out of range; write a port number from 1 to 65535`,
			},
		},
		{
			name:   "service VIP",
			in:     serviceAddr(),
			mutate: func(a *workloadv1.Address) { sv(a).Vips = []string{"10.96.0.300"} },
			want: []string{
				`service "shop/web.shop.svc.cluster.local": vips[0]: "10.96.0.300" is not an IP address; write an IPv4 or IPv6 address`,
			},
		},
		{
			name:   "service named after another hostname",
			in:     serviceAddr(),
			mutate: func(a *workloadv1.Address) { sv(a).Namespace = "shop2" },
			want: []string{
				`service "shop/web.shop.svc.cluster.local": the resource name differs from "shop2/web.shop.svc.cluster.local"; name a service resource "<namespace>/<hostname>"`,
			},
		},
		{
			name: "empty oneof",
			in:   &workloadv1.Address{Name: "x"},
			want: []string{`resource "x": neither workload, service nor authorization is set; an Address describes one of them`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := proto.Clone(tt.in).(*workloadv1.Address)
			if tt.mutate != nil {
				tt.mutate(in)
			}
			r, err := ConvertResource(in)
			w, svc := r.Workload, r.Service
			if err == nil {
				t.Fatalf("ConvertResource() = %+v, %+v, nil; want an error", w, svc)
			}
			if w != nil || svc != nil {
				t.Errorf("Convert() returned a result with the error")
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
			var re *ResourceError
			if !errors.As(err, &re) || re.Name != in.GetName() {
				t.Errorf("errors.As(*ResourceError) = %+v", re)
			}
		})
	}
}

// TestConvertEnumNumbering checks that each protobuf enumeration has the numbering of its
// state counterpart, which Convert relies on when it casts.
func TestConvertEnumNumbering(t *testing.T) {
	tests := []struct {
		name   string
		protos map[int32]string
		state  func(int32) string
	}{
		{"TunnelProtocol", workloadv1.TunnelProtocol_name, func(v int32) string { return state.TunnelProtocol(v).String() }},
		{"WorkloadStatus", workloadv1.WorkloadStatus_name, func(v int32) string { return state.WorkloadStatus(v).String() }},
		{"WorkloadType", workloadv1.WorkloadType_name, func(v int32) string { return state.WorkloadType(v).String() }},
		{"MTLSMode", workloadv1.MTLSMode_name, func(v int32) string { return state.Mode(v).String() }},
		{"AppProtocol", workloadv1.AppProtocol_name, func(v int32) string { return state.AppProtocol(v).String() }},
		{"AuthorizationScope", workloadv1.AuthorizationScope_name, func(v int32) string { return state.AuthorizationScope(v).String() }},
		{"AuthorizationAction", workloadv1.AuthorizationAction_name, func(v int32) string { return state.AuthorizationAction(v).String() }},
	}
	for _, tt := range tests {
		for v, name := range tt.protos {
			if got := tt.state(v); got != name {
				t.Errorf("%s %d: state names it %s, the protobuf %s", tt.name, v, got, name)
			}
		}
	}
}

func TestDecodeResource(t *testing.T) {
	body := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		name string
		in   *discoveryv3.Resource
		want string // the error, "" for none
	}{
		{
			name: "workload",
			in:   &discoveryv3.Resource{Name: webUID, Version: "v1", Resource: body(workloadAddr(webUID, "10.0.0.1"))},
		},
		{
			name: "no name",
			in:   &discoveryv3.Resource{Version: "v1", Resource: body(workloadAddr(webUID, "10.0.0.1"))},
			want: `resource "": the xDS resource has no name; name it after the workload's uid, the service's "<namespace>/<hostname>" or "authorization/<namespace>/<name>"`,
		},
		{
			name: "no body",
			in:   &discoveryv3.Resource{Name: webUID, Version: "v1"},
			want: `resource "Kubernetes//Pod/shop/web-1": the xDS resource has no body; send the Address (the agent does not use TTL heartbeats)`,
		},
		{
			name: "another type",
			in:   &discoveryv3.Resource{Name: webUID, Resource: body(&workloadv1.Workload{Uid: webUID})},
			want: `resource "Kubernetes//Pod/shop/web-1": the body is a type.googleapis.com/weft.workload.v1.Workload; send a type.googleapis.com/weft.workload.v1.Address`,
		},
		{
			name: "garbage",
			in:   &discoveryv3.Resource{Name: webUID, Resource: &anypb.Any{TypeUrl: api.AddressType, Value: []byte{0xff, 0xff}}},
			want: `resource "Kubernetes//Pod/shop/web-1": the body is not a valid Address: `,
		},
		{
			name: "named unlike its Address",
			in:   &discoveryv3.Resource{Name: "other", Resource: body(serviceAddr())},
			want: `service "other": name: "shop/web.shop.svc.cluster.local" differs from the name of the xDS resource; name the resource and the Address alike` + "\n" +
				`service "other": the resource name differs from "shop/web.shop.svc.cluster.local"; name a service resource "<namespace>/<hostname>"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := decodeResource(tt.in.GetName(), tt.in)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("decodeResource() = %v", err)
			case tt.want == "":
				if res.version != "v1" || res.Workload == nil || res.Workload.UID != webUID || res.Service != nil {
					t.Errorf("decodeResource() = %+v", res)
				}
			case err == nil || !strings.HasPrefix(err.Error(), tt.want):
				t.Errorf("error:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}
