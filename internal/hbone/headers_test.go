package hbone

import (
	"net/netip"
	"testing"
)

func TestBaggageString(t *testing.T) {
	tests := []struct {
		b    Baggage
		want string
	}{
		{Baggage{}, ""},
		{
			Baggage{Cluster: "Kubernetes", Namespace: "shop", WorkloadKind: "deployment", WorkloadName: "books-v1",
				ServiceName: "books", ServiceVersion: "v1", Region: "eu-west-1", Zone: "eu-west-1a"},
			"k8s.cluster.name=Kubernetes,k8s.namespace.name=shop,k8s.deployment.name=books-v1,service.name=books," +
				"service.version=v1,cloud.region=eu-west-1,cloud.availability_zone=eu-west-1a",
		},
		{Baggage{Namespace: "shop", WorkloadName: "x"}, "k8s.namespace.name=shop,k8s.deployment.name=x"},
		{Baggage{Namespace: "shop", WorkloadKind: "cronjob", WorkloadName: "x"}, "k8s.namespace.name=shop,k8s.cronjob.name=x"},
		{Baggage{ServiceName: "a b,c;d%e\"f\\g=h"}, "service.name=a%20b%2Cc%3Bd%25e%22f%5Cg=h"},
		{Baggage{ServiceName: "ü"}, "service.name=%C3%BC"},
	}
	for _, tt := range tests {
		if got := tt.b.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.b, got, tt.want)
		}
		if tt.b.WorkloadName != "" && tt.b.WorkloadKind == "" {
			tt.b.WorkloadKind = "deployment"
		}
		if got := parseBaggage(tt.want); got != tt.b {
			t.Errorf("parseBaggage(%q) = %+v, want %+v", tt.want, got, tt.b)
		}
	}
}

func TestParseBaggage(t *testing.T) {
	tests := []struct {
		in   string
		want Baggage
	}{
		{"", Baggage{}},
		{" k8s.namespace.name = shop ; prop=1 , service.name=books", Baggage{Namespace: "shop", ServiceName: "books"}},
		{"k8s.pod.name=p1,k8s.deployment.name=d1", Baggage{WorkloadKind: "pod", WorkloadName: "p1"}},
		{"k8s.namespace.name=a,k8s.namespace.name=b", Baggage{Namespace: "a"}},
		{"service.name=%zz,service.version=v2", Baggage{ServiceVersion: "v2"}},
		{"garbage,=x,k8s.x.y.name=z,k8s..name=q,other=1", Baggage{}},
		{"service.name=a+b", Baggage{ServiceName: "a+b"}},
	}
	for _, tt := range tests {
		if got := parseBaggage(tt.in); got != tt.want {
			t.Errorf("parseBaggage(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
	long := "service.name=" + string(make([]byte, maxBaggageLen))
	if got := parseBaggage(long); got != (Baggage{}) {
		t.Errorf("parseBaggage of an oversized header = %+v, want nothing", got)
	}
}

func TestForwarded(t *testing.T) {
	v4 := netip.MustParseAddrPort("10.1.2.3:4567")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:80")
	if got, want := formatForwarded(v4, ""), `for="10.1.2.3:4567"`; got != want {
		t.Errorf("formatForwarded = %q, want %q", got, want)
	}
	if got, want := formatForwarded(v6, "books.shop.svc.cluster.local"), `for="[2001:db8::1]:80";host=books.shop.svc.cluster.local`; got != want {
		t.Errorf("formatForwarded = %q, want %q", got, want)
	}
	if got, want := formatForwarded(v4, "a b"), `for="10.1.2.3:4567";host="a b"`; got != want {
		t.Errorf("formatForwarded = %q, want %q", got, want)
	}
	tests := []struct {
		in       string
		wantFor  netip.AddrPort
		wantHost string
	}{
		{`for="10.1.2.3:4567"`, v4, ""},
		{`for="[2001:db8::1]:80";host=books.shop.svc.cluster.local`, v6, "books.shop.svc.cluster.local"},
		{`For=10.1.2.3;Host="a b"`, netip.AddrPortFrom(v4.Addr(), 0), "a b"},
		{`for="[2001:db8::1]"`, netip.AddrPortFrom(v6.Addr(), 0), ""},
		{`for="10.1.2.3:4567", for="10.9.9.9:1"`, v4, ""},
		{`for=unknown`, netip.AddrPort{}, ""},
		{`for="_hidden";proto=https`, netip.AddrPort{}, ""},
		{``, netip.AddrPort{}, ""},
		{`nonsense`, netip.AddrPort{}, ""},
	}
	for _, tt := range tests {
		gotFor, gotHost := parseForwarded(tt.in)
		if gotFor != tt.wantFor || gotHost != tt.wantHost {
			t.Errorf("parseForwarded(%q) = %v, %q; want %v, %q", tt.in, gotFor, gotHost, tt.wantFor, tt.wantHost)
		}
	}
}
