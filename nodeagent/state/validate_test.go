package state

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(ws []*Workload, ss []*Service) ([]*Workload, []*Service)
		want   []string // the problems, in order; none means valid
	}{
		{
			name:   "valid",
			mutate: func(ws []*Workload, ss []*Service) ([]*Workload, []*Service) { return ws, ss },
		},
		{
			name: "missing workload fields",
			mutate: func(ws []*Workload, ss []*Service) ([]*Workload, []*Service) {
				ws = append(ws, &Workload{})
				return ws, ss
			},
			want: []string{
				`workloads[4].uid: missing; set a unique id, e.g. "Kubernetes//Pod/<namespace>/<name>"`,
				`workloads[4].name: missing; set the workload's (pod's) name`,
				`workloads[4].namespace: missing; set the workload's namespace`,
				`workloads[4].addresses: empty; list the workload's IP addresses (only a workload with a node, a pod not started yet, may have none)`,
			},
		},
		{
			name: "pod not started yet: no address, with a node",
			mutate: func(ws []*Workload, ss []*Service) ([]*Workload, []*Service) {
				ws = append(ws, &Workload{UID: "Kubernetes//Pod/shop/new", Name: "new", Namespace: "shop", Node: "node-a", TunnelProtocol: TunnelHBONE})
				return ws, ss
			},
		},
		{
			name: "duplicate uid",
			mutate: func(ws []*Workload, ss []*Service) ([]*Workload, []*Service) {
				ws[2].UID = ws[0].UID
				return ws, ss
			},
			want: []string{
				`workloads[2].uid: "Kubernetes//Pod/shop/web-1" is already the uid of workloads[0]; give every workload a unique uid`,
				// web-3 is gone, so the service's endpoint names an unknown workload.
				`services[0].endpoints[2].workloadUid: no workload has uid "Kubernetes//Pod/shop/web-3"; add that workload or remove the endpoint`,
			},
		},
		{
			name: "duplicate address",
			mutate: func(ws []*Workload, ss []*Service) ([]*Workload, []*Service) {
				ws[1].Addresses = []netip.Addr{ip("10.0.1.2"), ip("::ffff:10.0.1.1"), ip("10.0.1.2")}
				return ws, ss
			},
			want: []string{
				`workloads[1].addresses[1]: 10.0.1.1 is already an address of workloads[0] (uid "Kubernetes//Pod/shop/web-1"); give every workload its own addresses`,
				`workloads[1].addresses[2]: 10.0.1.2 is listed twice; list each address once`,
			},
		},
		{
			name: "bad addresses",
			mutate: func(ws []*Workload, ss []*Service) ([]*Workload, []*Service) {
				ws[0].Addresses = []netip.Addr{{}, ip("0.0.0.0"), ip("ff02::1")}
				return ws, ss
			},
			want: []string{
				`workloads[0].addresses[0]: missing; write the workload's IP address`,
				`workloads[0].addresses[1]: 0.0.0.0 cannot be a workload or service address; write the workload's IP address`,
				`workloads[0].addresses[2]: ff02::1 cannot be a workload or service address; write the workload's IP address`,
			},
		},
		{
			name: "identity",
			mutate: func(ws []*Workload, ss []*Service) ([]*Workload, []*Service) {
				ws[0].Namespace = "shop/x"
				ws[0].ServiceAccount = "web sa"
				ws[1].TrustDomain = "Example.ORG"
				ws[2].TrustDomain = "spiffe://example.org/ns/x"
				return ws, ss
			},
			want: []string{
				`workloads[0].namespace: "shop/x" cannot be part of a SPIFFE ID; use letters, digits, '.', '-' and '_'`,
				`workloads[0].serviceAccount: "web sa" cannot be part of a SPIFFE ID; use letters, digits, '.', '-' and '_'`,
				`workloads[1].trustDomain: "Example.ORG" is not a trust domain; use lowercase letters, digits, '.', '-' and '_', e.g. "cluster.local"`,
				`workloads[2].trustDomain: "spiffe://example.org/ns/x" is not a trust domain; use lowercase letters, digits, '.', '-' and '_', e.g. "cluster.local"`,
			},
		},
		{
			name: "enums and ports",
			mutate: func(ws []*Workload, ss []*Service) ([]*Workload, []*Service) {
				ws[0].TunnelProtocol = 2
				ws[0].Status = 5
				ws[0].WorkloadType = 9
				ws[0].ExcludeInboundPorts = []uint16{80, 0}
				ws[0].ExcludeOutboundPorts = []uint16{0}
				ws[0].PeerAuthentication = PeerAuthentication{Mode: 4, PortLevel: map[uint16]Mode{0: ModeStrict, 80: 8}}
				ws[0].Waypoint = &GatewayAddress{}
				return ws, ss
			},
			want: []string{
				`workloads[0].tunnelProtocol: unknown tunnel protocol 2; use NONE or HBONE`,
				`workloads[0].status: unknown status 5; use HEALTHY or UNHEALTHY`,
				`workloads[0].workloadType: unknown workload type 9; use DEPLOYMENT, CRONJOB, POD or JOB`,
				`workloads[0].waypoint.address: missing; write the waypoint's IP address or name its Service (namespace and hostname)`,
				`workloads[0].excludeInboundPorts[1]: 0 is not a port; write a port number from 1 to 65535`,
				`workloads[0].excludeOutboundPorts[0]: 0 is not a port; write a port number from 1 to 65535`,
				`workloads[0].peerAuthentication.mtls.mode: unknown mode 4; use UNSET, DISABLE, PERMISSIVE or STRICT`,
				`workloads[0].peerAuthentication.portLevelMtls[0]: 0 is not a port; write a port number from 1 to 65535`,
				`workloads[0].peerAuthentication.portLevelMtls[80].mode: unknown mode 8; use UNSET, DISABLE, PERMISSIVE or STRICT`,
			},
		},
		{
			name: "nil entries",
			mutate: func(ws []*Workload, ss []*Service) ([]*Workload, []*Service) {
				return append(ws, nil), append(ss, nil)
			},
			want: []string{
				`workloads[4]: empty entry; describe a workload or remove the entry`,
				`services[2]: empty entry; describe a service or remove the entry`,
			},
		},
		{
			name: "missing service fields",
			mutate: func(ws []*Workload, ss []*Service) ([]*Workload, []*Service) {
				return ws, append(ss, &Service{VIPs: []netip.Addr{{}}})
			},
			want: []string{
				`services[2].name: missing; set the service's name`,
				`services[2].namespace: missing; set the service's namespace`,
				`services[2].hostname: missing; set the service's hostname, e.g. "<name>.<namespace>.svc.cluster.local"`,
				`services[2].vips[0]: missing; write the service's cluster IP`,
			},
		},
		{
			name: "duplicate service",
			mutate: func(ws []*Workload, ss []*Service) ([]*Workload, []*Service) {
				dup := *ss[0]
				dup.VIPs = []netip.Addr{ip("10.96.0.99")}
				return ws, append(ss, &dup)
			},
			want: []string{
				`services[2].hostname: "web.shop.svc.cluster.local" in namespace "shop" is already services[0]; describe each service once`,
			},
		},
		{
			name: "VIP clash",
			mutate: func(ws []*Workload, ss []*Service) ([]*Workload, []*Service) {
				ss[1].VIPs = []netip.Addr{ip("10.96.0.20"), ip("10.96.0.10"), ip("::ffff:10.96.0.20")}
				ss[1].Ports = []ServicePort{{Port: 5432}, {Port: 80}}
				return ws, ss
			},
			want: []string{
				`services[1].vips[1]: 10.96.0.10:80 is already served by services[0] (shop/web.shop.svc.cluster.local); give each service its own VIP`,
				`services[1].vips[2]: 10.96.0.20 is listed twice; list each VIP once`,
			},
		},
		{
			name: "service ports",
			mutate: func(ws []*Workload, ss []*Service) ([]*Workload, []*Service) {
				ss[0].Ports = append(ss[0].Ports, ServicePort{Port: 0}, ServicePort{Port: 80, AppProtocol: 7})
				return ws, ss
			},
			want: []string{
				`services[0].ports[2].port: 0 is not a port; write a port number from 1 to 65535`,
				`services[0].ports[3].port: 80 is already ports[0]; list each service port once`,
				`services[0].ports[3].appProtocol: unknown app protocol 7; use UNKNOWN, HTTP11, HTTP2 or GRPC`,
			},
		},
		{
			name: "endpoints",
			mutate: func(ws []*Workload, ss []*Service) ([]*Workload, []*Service) {
				ss[0].Endpoints = append(ss[0].Endpoints,
					Endpoint{},
					Endpoint{WorkloadUID: "Kubernetes//Pod/shop/gone"},
					Endpoint{WorkloadUID: "Kubernetes//Pod/shop/web-1", Ports: map[uint16]uint16{81: 8080, 80: 0}},
				)
				ss[1].Waypoint = &GatewayAddress{Address: ip("::")}
				return ws, ss
			},
			want: []string{
				`services[0].endpoints[3].workloadUid: missing; set the uid of a workload`,
				`services[0].endpoints[4].workloadUid: no workload has uid "Kubernetes//Pod/shop/gone"; add that workload or remove the endpoint`,
				`services[0].endpoints[5].workloadUid: "Kubernetes//Pod/shop/web-1" is already endpoints[0]; list each workload once`,
				`services[0].endpoints[5].ports[80]: target port 0 is not a port; write a port number from 1 to 65535`,
				`services[0].endpoints[5].ports[81]: 81 is not a port of the service; use one of 80, 9090`,
				`services[1].waypoint.address: :: cannot be a workload or service address; write the waypoint's IP address or name its Service (namespace and hostname)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, ss := tt.mutate(fixture())
			err := NewSnapshot("v", ws, ss).Validate()
			var got []string
			if err != nil {
				var ve *ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("Validate() = %T, want *ValidationError", err)
				}
				for _, fe := range ve.Errors {
					got = append(got, fe.Error())
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Validate() problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestInvalidSnapshotLookups checks that lookups on an invalid snapshot are well defined: the
// first of two conflicting entries wins.
func TestInvalidSnapshotLookups(t *testing.T) {
	ws, ss := fixture()
	ws[1].Addresses = []netip.Addr{ip("10.0.1.1")}
	s := NewSnapshot("v", ws, ss)
	if s.Validate() == nil {
		t.Fatal("duplicate address validated")
	}
	if w, ok := s.WorkloadByIP(ip("10.0.1.1")); !ok || w.Name != "web-1" {
		t.Errorf("WorkloadByIP = %v, %v, want web-1", w, ok)
	}
}
