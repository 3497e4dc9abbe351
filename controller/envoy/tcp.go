package envoy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TCPProxyFilter is the network filter of a TCP chain.
const TCPProxyFilter = "envoy.filters.network.tcp_proxy"

// TCPChainName is the name of the filter chain of a Service's TCP port, "<host>:<port>" like
// the virtual hosts of HTTP ports, so controller/waypointcfg can find the Service's policies.
func TCPChainName(host string, port uint32) string {
	return host + ":" + strconv.FormatUint(uint64(port), 10)
}

// tcpChains builds a chain per TCP (non-HTTP) port of each Service with a cluster IP: it
// matches the port and the Service's addresses (prefix_ranges, so Services sharing a port
// each get theirs, and an HTTP chain of the same port keeps the other addresses) and relays
// with tcp_proxy to the port's cluster. Headless Services have no address to match and are
// reported. The chains are sorted by port, then host.
func (b *builder) tcpChains(known map[string]bool) []*listenerv3.FilterChain {
	type item struct {
		port uint32
		s    *service
	}
	var items []item
	for _, host := range sortedKeys(b.services) {
		s := b.services[host]
		for _, p := range s.tcp {
			items = append(items, item{p.number, s})
		}
	}
	var out []*listenerv3.FilterChain
	for _, port := range sortedPorts(items, func(i item) uint32 { return i.port }) {
		for _, it := range items {
			if it.port != port {
				continue
			}
			s := it.s
			if len(s.vips) == 0 {
				b.problem("Service", s.svc.ObjectMeta, fmt.Sprintf("spec.ports[port=%d]", port), "a headless Service has no address the waypoint can match; its TCP port is not served by the waypoint", "give the Service a cluster IP")
				continue
			}
			cluster := ClusterName(port, "", s.host)
			if !known[cluster] {
				continue // left out with a Problem already
			}
			chain, err := tcpChain(s, port, cluster)
			if err != nil {
				b.problems = append(b.problems, Problem{Kind: "Listener", Name: ListenerName, Field: "filterChains", Message: "the TCP chain " + TCPChainName(s.host, port) + " is invalid and left out: " + err.Error(), Fix: "report this as a bug of Weft"})
				continue
			}
			out = append(out, chain)
		}
	}
	return out
}

func tcpChain(s *service, port uint32, cluster string) (*listenerv3.FilterChain, error) {
	tp := &tcpproxyv3.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}}
	if err := tp.ValidateAll(); err != nil {
		return nil, err
	}
	a, err := anypb.New(tp)
	if err != nil {
		return nil, err
	}
	match := &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port)}
	for _, v := range s.vips {
		ip, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("cluster IP %q: %w", v, err)
		}
		match.PrefixRanges = append(match.PrefixRanges, &corev3.CidrRange{AddressPrefix: ip.String(), PrefixLen: wrapperspb.UInt32(uint32(ip.BitLen()))})
	}
	fc := &listenerv3.FilterChain{
		Name:             TCPChainName(s.host, port),
		FilterChainMatch: match,
		Filters:          []*listenerv3.Filter{{Name: TCPProxyFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}},
	}
	return fc, fc.ValidateAll()
}

func sortedPorts[T any](items []T, port func(T) uint32) []uint32 {
	seen := map[uint32]bool{}
	var out []uint32
	for _, it := range items {
		if p := port(it); !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}
