package state

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var (
	ip   = netip.MustParseAddr
	addr = netip.MustParseAddrPort
)

// fixture returns a small valid mesh: two enrolled workloads of service web on node-a (one
// of them unhealthy), one on node-b with a port override, a workload outside the mesh, and a
// service with a waypoint.
func fixture() ([]*Workload, []*Service) {
	ws := []*Workload{
		{
			UID: "Kubernetes//Pod/shop/web-1", Name: "web-1", Namespace: "shop", ServiceAccount: "web",
			Node: "node-a", Addresses: []netip.Addr{ip("10.0.1.1"), ip("fd00::1:1")},
			TunnelProtocol: TunnelHBONE, WorkloadName: "web", CanonicalName: "web", CanonicalRevision: "v1",
			PeerAuthentication: PeerAuthentication{Mode: ModeStrict, PortLevel: map[uint16]Mode{9090: ModePermissive, 8081: ModeUnset}},
		},
		{
			UID: "Kubernetes//Pod/shop/web-2", Name: "web-2", Namespace: "shop", ServiceAccount: "web",
			Node: "node-a", Addresses: []netip.Addr{ip("10.0.1.2")}, TunnelProtocol: TunnelHBONE, Status: Unhealthy,
		},
		{
			UID: "Kubernetes//Pod/shop/web-3", Name: "web-3", Namespace: "shop", ServiceAccount: "web",
			Node: "node-b", Addresses: []netip.Addr{ip("10.0.2.3")}, TunnelProtocol: TunnelHBONE,
			ExcludeInboundPorts: []uint16{15020}, ExcludeOutboundPorts: []uint16{5432},
		},
		{
			UID: "Kubernetes//Pod/legacy/db-0", Name: "db-0", Namespace: "legacy", TrustDomain: "example.org",
			Node: "node-b", Addresses: []netip.Addr{ip("10.0.2.9")},
		},
	}
	ss := []*Service{
		{
			Name: "web", Namespace: "shop", Hostname: "web.shop.svc.cluster.local",
			VIPs:  []netip.Addr{ip("10.96.0.10"), ip("fd00:96::10")},
			Ports: []ServicePort{{Name: "http", Port: 80, TargetPort: 8080, AppProtocol: ProtocolHTTP11}, {Name: "metrics", Port: 9090}},
			Endpoints: []Endpoint{
				{WorkloadUID: "Kubernetes//Pod/shop/web-1"},
				{WorkloadUID: "Kubernetes//Pod/shop/web-2"},
				{WorkloadUID: "Kubernetes//Pod/shop/web-3", Ports: map[uint16]uint16{80: 8081}},
			},
		},
		{
			Name: "db", Namespace: "legacy", Hostname: "db.legacy.svc.cluster.local",
			VIPs: []netip.Addr{ip("10.96.0.20")}, Ports: []ServicePort{{Port: 5432}},
			Endpoints: []Endpoint{{WorkloadUID: "Kubernetes//Pod/legacy/db-0"}},
			Waypoint:  &GatewayAddress{Address: ip("10.0.3.1")},
		},
	}
	return ws, ss
}

func mustSnapshot(t testing.TB) *Snapshot {
	t.Helper()
	ws, ss := fixture()
	s := NewSnapshot("v1", ws, ss)
	if err := s.Validate(); err != nil {
		t.Fatalf("fixture does not validate:\n%v", err)
	}
	return s
}

func TestWorkloadByIP(t *testing.T) {
	s := mustSnapshot(t)
	tests := []struct {
		ip   string
		want string // UID, "" for none
	}{
		{"10.0.1.1", "Kubernetes//Pod/shop/web-1"},
		{"fd00::1:1", "Kubernetes//Pod/shop/web-1"},
		{"::ffff:10.0.1.2", "Kubernetes//Pod/shop/web-2"},
		{"fd00::1:1%eth0", "Kubernetes//Pod/shop/web-1"},
		{"10.0.2.9", "Kubernetes//Pod/legacy/db-0"},
		{"10.0.9.9", ""},
		{"10.96.0.10", ""}, // a VIP is not a workload
	}
	for _, tt := range tests {
		w, ok := s.WorkloadByIP(ip(tt.ip))
		if got := uidOf(w, ok); got != tt.want {
			t.Errorf("WorkloadByIP(%s) = %q, want %q", tt.ip, got, tt.want)
		}
	}
}

func uidOf(w *Workload, ok bool) string {
	if !ok {
		return ""
	}
	return w.UID
}

func TestWorkloadByUID(t *testing.T) {
	s := mustSnapshot(t)
	if w, ok := s.WorkloadByUID("Kubernetes//Pod/shop/web-3"); !ok || w.Name != "web-3" {
		t.Errorf("WorkloadByUID(web-3) = %v, %v", w, ok)
	}
	if _, ok := s.WorkloadByUID("nope"); ok {
		t.Error("WorkloadByUID(nope) found a workload")
	}
}

func TestServiceByAddr(t *testing.T) {
	s := mustSnapshot(t)
	tests := []struct {
		addr string
		want string // namespace/hostname
	}{
		{"10.96.0.10:80", "shop/web.shop.svc.cluster.local"},
		{"10.96.0.10:9090", "shop/web.shop.svc.cluster.local"},
		{"[fd00:96::10]:80", "shop/web.shop.svc.cluster.local"},
		{"[::ffff:10.96.0.20]:5432", "legacy/db.legacy.svc.cluster.local"},
		{"10.96.0.10:81", ""},
		{"10.0.1.1:8080", ""},
	}
	for _, tt := range tests {
		svc, ok := s.ServiceByAddr(addr(tt.addr))
		got := ""
		if ok {
			got = svc.NamespacedHostname()
		}
		if got != tt.want {
			t.Errorf("ServiceByAddr(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestLocalWorkloads(t *testing.T) {
	s := mustSnapshot(t)
	tests := []struct {
		node string
		want []string
	}{
		{"node-a", []string{"web-1", "web-2"}},
		{"node-b", []string{"db-0", "web-3"}}, // sorted by UID: Kubernetes//Pod/legacy < .../shop
		{"node-c", nil},
	}
	for _, tt := range tests {
		var got []string
		for _, w := range s.LocalWorkloads(tt.node) {
			got = append(got, w.Name)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("LocalWorkloads(%s) = %v, want %v", tt.node, got, tt.want)
		}
	}
}

func TestPickEndpoint(t *testing.T) {
	s := mustSnapshot(t)
	web, _ := s.ServiceByAddr(addr("10.96.0.10:80"))
	db, _ := s.ServiceByAddr(addr("10.96.0.20:5432"))
	tests := []struct {
		name     string
		svc      *Service
		port     uint16
		pick     func(int) int
		wantN    int // n passed to pick
		wantName string
		wantPort uint16
		wantOK   bool
	}{
		// web-2 is unhealthy: the candidates are web-1 and web-3.
		{"first", web, 80, func(int) int { return 0 }, 2, "web-1", 8080, true},
		{"override", web, 80, func(int) int { return 1 }, 2, "web-3", 8081, true},
		{"target port defaults to port", web, 9090, func(int) int { return 1 }, 2, "web-3", 9090, true},
		{"nil pick", db, 5432, nil, 0, "db-0", 5432, true},
		{"unknown port", web, 81, func(int) int { return 0 }, 0, "", 0, false},
		{"pick out of range", web, 80, func(n int) int { return n }, 2, "", 0, false},
		{"negative pick", web, 80, func(int) int { return -1 }, 2, "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotN := 0
			pick := tt.pick
			if pick != nil {
				pick = func(n int) int { gotN = n; return tt.pick(n) }
			}
			w, port, ok := s.PickEndpoint(tt.svc, tt.port, pick)
			name := ""
			if w != nil {
				name = w.Name
			}
			if name != tt.wantName || port != tt.wantPort || ok != tt.wantOK || gotN != tt.wantN {
				t.Errorf("PickEndpoint = %q, %d, %v (n=%d), want %q, %d, %v (n=%d)",
					name, port, ok, gotN, tt.wantName, tt.wantPort, tt.wantOK, tt.wantN)
			}
		})
	}
}

func TestPickEndpointNoHealthy(t *testing.T) {
	ws, ss := fixture()
	for _, w := range ws {
		w.Status = Unhealthy
	}
	s := NewSnapshot("v", ws, ss)
	web, _ := s.ServiceByAddr(addr("10.96.0.10:80"))
	if w, _, ok := s.PickEndpoint(web, 80, func(int) int { t.Fatal("pick called"); return 0 }); ok {
		t.Errorf("PickEndpoint picked %s with no healthy endpoint", w.Name)
	}
}

func TestInboundMode(t *testing.T) {
	s := mustSnapshot(t)
	web1, _ := s.WorkloadByUID("Kubernetes//Pod/shop/web-1")
	web3, _ := s.WorkloadByUID("Kubernetes//Pod/shop/web-3")
	db, _ := s.WorkloadByUID("Kubernetes//Pod/legacy/db-0")
	tests := []struct {
		name string
		w    *Workload
		port uint16
		want Mode
	}{
		{"workload mode", web1, 8080, ModeStrict},
		{"port level", web1, 9090, ModePermissive},
		{"port level unset inherits", web1, 8081, ModeStrict},
		{"enrolled default", web3, 8080, ModePermissive},
		{"not in mesh", db, 5432, ModeDisable},
		{"nil workload", nil, 80, ModeDisable},
	}
	for _, tt := range tests {
		if got := s.InboundMode(tt.w, tt.port); got != tt.want {
			t.Errorf("%s: InboundMode(%d) = %v, want %v", tt.name, tt.port, got, tt.want)
		}
	}
}

func TestIdentity(t *testing.T) {
	s := mustSnapshot(t)
	tests := []struct {
		uid  string
		want string
	}{
		{"Kubernetes//Pod/shop/web-1", "spiffe://cluster.local/ns/shop/sa/web"},
		{"Kubernetes//Pod/legacy/db-0", "spiffe://example.org/ns/legacy/sa/default"},
	}
	for _, tt := range tests {
		w, _ := s.WorkloadByUID(tt.uid)
		if got := w.Identity().String(); got != tt.want {
			t.Errorf("%s: Identity() = %s, want %s", tt.uid, got, tt.want)
		}
	}
	// Outside a snapshot the identity is computed on demand.
	w := &Workload{Namespace: "a", ServiceAccount: "b"}
	if got := w.Identity().String(); got != "spiffe://cluster.local/ns/a/sa/b" {
		t.Errorf("Identity() = %s", got)
	}
	if got := (&Workload{Namespace: "bad/ns"}).Identity(); !got.IsZero() {
		t.Errorf("Identity() of an invalid namespace = %s, want zero", got)
	}
}

func TestWorkloadHelpers(t *testing.T) {
	s := mustSnapshot(t)
	w, _ := s.WorkloadByUID("Kubernetes//Pod/shop/web-3")
	if !w.InboundExcluded(15020) || w.InboundExcluded(8080) {
		t.Error("InboundExcluded wrong")
	}
	if !w.OutboundExcluded(5432) || w.OutboundExcluded(15020) {
		t.Error("OutboundExcluded wrong")
	}
	if !w.Enrolled() || !w.Healthy() {
		t.Error("web-3 should be enrolled and healthy")
	}
	db, _ := s.ServiceByAddr(addr("10.96.0.20:5432"))
	if got := db.Waypoint.AddrPort(); got != addr("10.0.3.1:15008") {
		t.Errorf("waypoint AddrPort = %s", got)
	}
	if got := (&GatewayAddress{Address: ip("10.0.3.1"), HBONEMTLSPort: 15009}).AddrPort(); got != addr("10.0.3.1:15009") {
		t.Errorf("waypoint AddrPort = %s", got)
	}
	if got := CronJob.BaggageKind(); got != "cronjob" {
		t.Errorf("BaggageKind = %s", got)
	}
}

// TestSnapshotIsolated checks that a snapshot keeps its content when the caller's structs
// change, and that building one does not write to them.
func TestSnapshotIsolated(t *testing.T) {
	ws, ss := fixture()
	s := NewSnapshot("v1", ws, ss)
	ws[0].Name = "changed"
	ws[0].Addresses[0] = ip("10.9.9.9")
	ss[0].Hostname = "changed"
	w, ok := s.WorkloadByIP(ip("10.0.1.1"))
	if !ok || w.Name != "web-1" || w.Addresses[0] != ip("10.0.1.1") {
		t.Errorf("snapshot changed with its input: %v %+v", ok, w)
	}
	if svc, _ := s.ServiceByAddr(addr("10.96.0.10:80")); svc.Hostname != "web.shop.svc.cluster.local" {
		t.Errorf("service changed with its input: %s", svc.Hostname)
	}
	if !ws[1].id.IsZero() || ss[0].targets != nil {
		t.Error("NewSnapshot wrote to its input")
	}
}

func TestEmptySnapshot(t *testing.T) {
	s := NewSnapshot("", nil, nil)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.WorkloadByIP(ip("10.0.0.1")); ok {
		t.Error("found a workload in an empty snapshot")
	}
	if len(s.Workloads()) != 0 || len(s.Services()) != 0 || s.LocalWorkloads("n") != nil {
		t.Error("empty snapshot is not empty")
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    []uint16
		wantErr string
	}{
		{"", nil, ""},
		{"15020", []uint16{15020}, ""},
		{"9090, 15020,9090 ,", []uint16{9090, 15020}, ""},
		{"80,x", nil, `state: "x" is not a port; write port numbers from 1 to 65535 separated by commas`},
		{"0", nil, `state: "0" is not a port; write port numbers from 1 to 65535 separated by commas`},
		{"65536", nil, `state: "65536" is not a port; write port numbers from 1 to 65535 separated by commas`},
	}
	for _, tt := range tests {
		got, err := ParsePorts(tt.in)
		if errText(err) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("ParsePorts(%q) = %v, %q; want %v, %q", tt.in, got, errText(err), tt.want, tt.wantErr)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestEnumText(t *testing.T) {
	var m Mode
	if err := m.UnmarshalText([]byte("STRICT")); err != nil || m != ModeStrict {
		t.Errorf("UnmarshalText(STRICT) = %v, %v", m, err)
	}
	err := m.UnmarshalText([]byte("strict"))
	if want := `"strict" is not a mode; write UNSET, DISABLE, PERMISSIVE or STRICT`; errText(err) != want {
		t.Errorf("UnmarshalText(strict) error = %q, want %q", errText(err), want)
	}
	if _, err := Mode(7).MarshalText(); err == nil {
		t.Error("MarshalText of an unknown mode succeeded")
	}
	if got := Mode(7).String(); got != "Mode(7)" {
		t.Errorf("String = %s", got)
	}
	for _, p := range []TunnelProtocol{TunnelNone, TunnelHBONE} {
		b, _ := p.MarshalText()
		var q TunnelProtocol
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Errorf("round trip of %v: %v, %v", p, q, err)
		}
	}
}

func TestValidationErrorText(t *testing.T) {
	var p Problems
	for i := range 12 {
		p.Add("workloads["+string(rune('a'+i))+"]", "bad")
	}
	err := p.Err()
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 11 || lines[10] != "(and 2 more problems)" || lines[0] != "workloads[a]: bad" {
		t.Errorf("Error() =\n%s", err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "workloads[a]" {
		t.Errorf("errors.As: %v", fe)
	}
	if (&Problems{}).Err() != nil {
		t.Error("no problems gives an error")
	}
}
