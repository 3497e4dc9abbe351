package grpcxds

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

func filter(t *testing.T, name string, m proto.Message) *hcmv3.HttpFilter {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}
}

// input is a waypoint with books on port 80 (endpoint 10.0.0.1:8080) and the filters given.
func input(t *testing.T, filters ...*hcmv3.HttpFilter) Input {
	t.Helper()
	hcm := &hcmv3.HttpConnectionManager{StatPrefix: "inbound_80", HttpFilters: filters,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "80",
			ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}}
	a, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	perRoute, _ := anypb.New(&rbachttpv3.RBACPerRoute{Rbac: &rbachttpv3.RBAC{}})
	return Input{
		Listener: &listenerv3.Listener{Name: "main_internal", FilterChains: []*listenerv3.FilterChain{{Name: "80",
			Filters: []*listenerv3.Filter{{Name: hcmName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}}}}},
		Routes: []*routev3.RouteConfiguration{{Name: "80", VirtualHosts: []*routev3.VirtualHost{{
			Name: "books.shop.svc.cluster.local:80", Domains: []string{"books.shop.svc.cluster.local:80"},
			TypedPerFilterConfig: map[string]*anypb.Any{"envoy.filters.http.rbac.deny": perRoute},
			Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "outbound|80||books.shop.svc.cluster.local"}}}}},
		}}}},
		Endpoints: []*endpointv3.ClusterLoadAssignment{{ClusterName: "outbound|80||books.shop.svc.cluster.local",
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}}}}}}}}},
	}
}

func names(t *testing.T, l *listenerv3.Listener, api bool) ([]string, *hcmv3.HttpConnectionManager) {
	t.Helper()
	hcm := &hcmv3.HttpConnectionManager{}
	a := l.GetApiListener().GetApiListener()
	if !api {
		a = l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig()
	}
	if err := a.UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range hcm.HttpFilters {
		out = append(out, f.Name)
	}
	return out, hcm
}

func TestBuild(t *testing.T) {
	rbacDeny := filter(t, "envoy.filters.http.rbac.deny", &rbachttpv3.RBAC{})
	in := input(t, filter(t, "envoy.filters.http.cors", &corsv3.Cors{}), rbacDeny,
		filter(t, "envoy.filters.http.fault", &faultv3.HTTPFault{}), filter(t, "envoy.filters.http.router", &routerv3.Router{}))
	for _, tc := range []struct {
		name, server string
		vhosts       int // virtual hosts of the server listener
		err          string
	}{
		{name: "endpoint address", server: "grpc/server?xds.resource.listening_address=10.0.0.1:8080", vhosts: 1},
		{name: "unspecified address", server: "grpc/server?xds.resource.listening_address=0.0.0.0:8080", vhosts: 1},
		{name: "not an endpoint", server: "grpc/server?xds.resource.listening_address=10.0.0.9:8080", vhosts: 0},
		{name: "other port", server: "grpc/server?xds.resource.listening_address=10.0.0.1:9090", vhosts: 0},
		{name: "bad address", server: "grpc/server?xds.resource.listening_address=books:80", err: "ip:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Build(in, []string{tc.server, "books.shop.svc.cluster.local:80"})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Listeners) != 2 || res.Listeners[0].Name != "books.shop.svc.cluster.local:80" || res.Listeners[1].Name != tc.server {
				t.Fatalf("listeners %v", res.Listeners)
			}
			got, hcm := names(t, res.Listeners[0], true)
			if strings.Join(got, ",") != "envoy.filters.http.fault,envoy.filters.http.router" || hcm.GetRds().GetRouteConfigName() != "80" {
				t.Errorf("client filters %v, rds %v", got, hcm.GetRds())
			}
			got, hcm = names(t, res.Listeners[1], false)
			want := "envoy.filters.http.rbac.deny,envoy.filters.http.router" // the same RBAC filter message
			if tc.vhosts == 0 {
				want = "envoy.filters.http.router" // no virtual host: every RPC is refused anyway
			}
			if strings.Join(got, ",") != want || tc.vhosts > 0 && !proto.Equal(hcm.HttpFilters[0], rbacDeny) {
				t.Errorf("server filters %v, want %s", got, want)
			}
			vhs := hcm.GetRouteConfig().GetVirtualHosts()
			if len(vhs) != tc.vhosts {
				t.Fatalf("server virtual hosts %v, want %d", vhs, tc.vhosts)
			}
			if tc.vhosts > 0 {
				vh := vhs[0]
				if vh.Routes[0].GetNonForwardingAction() == nil || !proto.Equal(vh.TypedPerFilterConfig["envoy.filters.http.rbac.deny"], in.Routes[0].VirtualHosts[0].TypedPerFilterConfig["envoy.filters.http.rbac.deny"]) {
					t.Errorf("server virtual host %v", vh)
				}
			}
			if res.Routes[0] != in.Routes[0] || res.Endpoints[0] != in.Endpoints[0] {
				t.Error("routes and endpoints are not served unchanged")
			}
		})
	}
}

// TestUnknownFilter: a filter gRPC has no equivalent for is an error, never dropped.
func TestUnknownFilter(t *testing.T) {
	in := input(t, filter(t, "envoy.filters.http.lua", &structpb.Struct{}), filter(t, "envoy.filters.http.router", &routerv3.Router{}))
	if _, err := Build(in, nil); err == nil || !strings.Contains(err.Error(), "envoy.filters.http.lua") {
		t.Fatalf("err %v, want one naming the filter", err)
	}
}
