package state

import (
	"fmt"
	"net/netip"
	"testing"
)

// benchSnapshot builds a snapshot of n workloads spread over 100 nodes and n/10 services of 10
// endpoints each.
func benchSnapshot(b *testing.B, n int) *Snapshot {
	b.Helper()
	ws := make([]*Workload, n)
	for i := range ws {
		ws[i] = &Workload{
			UID: fmt.Sprintf("Kubernetes//Pod/ns%d/pod-%d", i%50, i), Name: fmt.Sprintf("pod-%d", i),
			Namespace: fmt.Sprintf("ns%d", i%50), ServiceAccount: "sa", Node: fmt.Sprintf("node-%d", i%100),
			Addresses:      []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})},
			TunnelProtocol: TunnelHBONE,
			PeerAuthentication: PeerAuthentication{
				Mode: ModeStrict, PortLevel: map[uint16]Mode{9090: ModePermissive},
			},
		}
	}
	ss := make([]*Service, n/10)
	for i := range ss {
		svc := &Service{
			Name: fmt.Sprintf("svc-%d", i), Namespace: "ns", Hostname: fmt.Sprintf("svc-%d.ns.svc.cluster.local", i),
			VIPs:  []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})},
			Ports: []ServicePort{{Port: 80, TargetPort: 8080}, {Port: 443, TargetPort: 8443}},
		}
		for j := range 10 {
			svc.Endpoints = append(svc.Endpoints, Endpoint{WorkloadUID: ws[i*10+j].UID})
		}
		ss[i] = svc
	}
	s := NewSnapshot("bench", ws, ss)
	if err := s.Validate(); err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkWorkloadByIP(b *testing.B) {
	s := benchSnapshot(b, 10000)
	ip := netip.AddrFrom4([4]byte{10, 1, 0x12, 0x34})
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.WorkloadByIP(ip); !ok {
			b.Fatal("not found")
		}
	}
}

func BenchmarkWorkloadByUID(b *testing.B) {
	s := benchSnapshot(b, 10000)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.WorkloadByUID("Kubernetes//Pod/ns34/pod-1234"); !ok {
			b.Fatal("not found")
		}
	}
}

func BenchmarkServiceByAddr(b *testing.B) {
	s := benchSnapshot(b, 10000)
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 96, 0, 200}), 443)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.ServiceByAddr(addr); !ok {
			b.Fatal("not found")
		}
	}
}

func BenchmarkLocalWorkloads(b *testing.B) {
	s := benchSnapshot(b, 10000)
	b.ReportAllocs()
	for b.Loop() {
		if len(s.LocalWorkloads("node-42")) == 0 {
			b.Fatal("none")
		}
	}
}

func BenchmarkPickEndpoint(b *testing.B) {
	s := benchSnapshot(b, 10000)
	svc, _ := s.ServiceByAddr(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 96, 0, 200}), 443))
	next := 0
	pick := func(n int) int { next++; return next % n } // round robin
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := s.PickEndpoint(svc, 443, pick); !ok {
			b.Fatal("no endpoint")
		}
	}
}

func BenchmarkInboundMode(b *testing.B) {
	s := benchSnapshot(b, 10000)
	w, _ := s.WorkloadByUID("Kubernetes//Pod/ns34/pod-1234")
	b.ReportAllocs()
	for b.Loop() {
		if s.InboundMode(w, 8080) != ModeStrict {
			b.Fatal("wrong mode")
		}
	}
}

func BenchmarkIdentity(b *testing.B) {
	s := benchSnapshot(b, 100)
	w, _ := s.WorkloadByUID("Kubernetes//Pod/ns10/pod-10")
	b.ReportAllocs()
	for b.Loop() {
		if w.Identity().IsZero() {
			b.Fatal("zero")
		}
	}
}

// BenchmarkNewSnapshot measures building (and validating) a 10,000-workload snapshot, the
// cost of one configuration change.
func BenchmarkNewSnapshot(b *testing.B) {
	s := benchSnapshot(b, 10000)
	ws, ss := s.Workloads(), s.Services()
	b.ReportAllocs()
	for b.Loop() {
		if NewSnapshot("v", ws, ss).Validate() != nil {
			b.Fatal("invalid")
		}
	}
}

// TestLookupsDoNotAllocate pins the zero-allocation property of the hot lookups.
func TestLookupsDoNotAllocate(t *testing.T) {
	s := mustSnapshot(t)
	ip := netip.MustParseAddr("10.0.1.1")
	addr := netip.MustParseAddrPort("10.96.0.10:80")
	svc, _ := s.ServiceByAddr(addr)
	w, _ := s.WorkloadByIP(ip)
	pick := func(n int) int { return n - 1 }
	allocs := testing.AllocsPerRun(100, func() {
		s.WorkloadByIP(ip)
		s.WorkloadByUID("Kubernetes//Pod/shop/web-1")
		s.ServiceByAddr(addr)
		s.LocalWorkloads("node-a")
		s.PickEndpoint(svc, 80, pick)
		s.InboundMode(w, 9090)
		_ = w.Identity()
	})
	if allocs != 0 {
		t.Errorf("lookups allocate %v times per run, want 0", allocs)
	}
}
