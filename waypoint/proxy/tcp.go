package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/weftmesh/weft/internal/hbone"
	"github.com/weftmesh/weft/waypoint/metrics"
	"github.com/weftmesh/weft/waypoint/rbac"
	"github.com/weftmesh/weft/waypoint/upstream"
)

// Network filter names of TCP chains.
const (
	tcpProxyFilter = "envoy.filters.network.tcp_proxy"
	// NetworkRBACPrefix starts the name of every network RBAC filter of a TCP chain
	// (envoy.filters.network.rbac, or a name with a suffix such as ".deny").
	NetworkRBACPrefix = "envoy.filters.network.rbac"
)

// tcpChain is a filter chain whose last network filter is tcp_proxy: the tunnel's bytes are
// relayed to an endpoint of one cluster once the network RBAC filters allowed the connection.
type tcpChain struct {
	name     string
	prefixes []netip.Prefix // filter_chain_match.prefix_ranges; empty matches any address
	cluster  string
	rbac     []netRBAC // in filter order
}

type netRBAC struct {
	name   string
	filter *rbac.Filter
}

func isTCPChain(fc *listenerv3.FilterChain) bool {
	fs := fc.GetFilters()
	return len(fs) > 0 && fs[len(fs)-1].GetName() == tcpProxyFilter
}

// compileTCPChain compiles a chain of network RBAC filters followed by tcp_proxy. The chain
// may match destination_port and prefix_ranges only; tcp_proxy may set stat_prefix and
// cluster only: anything else changes behaviour the waypoint does not implement and is refused.
func compileTCPChain(path string, fc *listenerv3.FilterChain) (*tcpChain, error) {
	tc := &tcpChain{name: fc.GetName()}
	m := fc.GetFilterChainMatch()
	if f := firstSetField(m.ProtoReflect(), "destination_port", "prefix_ranges"); f != "" {
		return nil, fmt.Errorf("%s.filter_chain_match.%s: not supported by the waypoint on TCP chains; match destination_port and prefix_ranges only", path, f)
	}
	var err error
	if tc.prefixes, err = prefixRanges(path, m); err != nil {
		return nil, err
	}
	fs := fc.GetFilters()
	for i, f := range fs[:len(fs)-1] {
		fpath := fmt.Sprintf("%s.filters[%d] (%s)", path, i, f.GetName())
		if !strings.HasPrefix(f.GetName(), NetworkRBACPrefix) {
			return nil, fmt.Errorf("%s: only network RBAC filters may precede %s in a TCP chain", fpath, tcpProxyFilter)
		}
		var cfg rbacnetv3.RBAC
		if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
			return nil, fmt.Errorf("%s.typed_config: %w", fpath, err)
		}
		rf, err := rbac.CompileNetwork(&cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fpath, err)
		}
		tc.rbac = append(tc.rbac, netRBAC{name: f.GetName(), filter: rf})
	}
	fpath := fmt.Sprintf("%s.filters[%d] (%s)", path, len(fs)-1, tcpProxyFilter)
	var tp tcpproxyv3.TcpProxy
	if err := fs[len(fs)-1].GetTypedConfig().UnmarshalTo(&tp); err != nil {
		return nil, fmt.Errorf("%s.typed_config: %w", fpath, err)
	}
	if err := tp.ValidateAll(); err != nil {
		return nil, fmt.Errorf("%s: %w", fpath, err)
	}
	if len(tp.ProtoReflect().GetUnknown()) > 0 {
		return nil, fmt.Errorf("%s: unknown fields (from a newer Envoy API?); the waypoint supports stat_prefix and cluster", fpath)
	}
	if f := firstSetField(tp.ProtoReflect(), "stat_prefix", "cluster"); f != "" {
		return nil, fmt.Errorf("%s.%s: not supported by the waypoint; a TCP chain relays to one cluster (stat_prefix and cluster only)", fpath, f)
	}
	if tc.cluster = tp.GetCluster(); tc.cluster == "" {
		return nil, fmt.Errorf("%s.cluster: required", fpath)
	}
	return tc, nil
}

// firstSetField returns the name of the first populated field of m not in allowed, or "".
func firstSetField(m protoreflect.Message, allowed ...string) string {
	var out string
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		for _, a := range allowed {
			if string(fd.Name()) == a {
				return true
			}
		}
		out = string(fd.Name())
		return false
	})
	return out
}

// Relay takes over a tunnel whose destination selects a TCP chain (ServerOptions.Relay): it
// runs the chain's network RBAC filters — a denied connection is refused with 401, as a node
// agent refuses it, so the client sees a reset — connects to an endpoint of the chain's
// cluster (503 when it cannot: no cluster, no healthy endpoint, circuit breaker, connect
// failure) and returns the function that relays the tunnel's bytes both ways, half-closes
// included. For other tunnels it returns nil and 0: they are served as HTTP.
func (h *Handler) Relay(ctx context.Context, in *hbone.Inbound) (func(net.Conn), int, error) {
	cfg := h.cfg.Load()
	if cfg == nil {
		return nil, 0, nil
	}
	_, tc := cfg.pick(in.Authority)
	if tc == nil {
		return nil, 0, nil
	}
	x := &tcpExchange{start: time.Now(), in: in, client: clientAddr(in), chain: tc.name, cluster: tc.cluster}
	req := rbac.Request{SourceIP: x.client.Addr(), DestinationIP: in.Authority.Addr(), DestinationPort: in.Authority.Port()}
	if !in.PeerID.IsZero() {
		req.Principal = in.PeerID.String()
	}
	for _, f := range tc.rbac {
		d := f.filter.Evaluate(&req)
		if d.Logged {
			x.audited = append(x.audited, d.Policy)
		}
		if !d.Allowed {
			x.denied = d.Policy
			if x.denied == "" {
				x.denied = "(no ALLOW policy matched)"
			}
			x.flag = "-"
			h.tcpLog(x, http.StatusUnauthorized, 0, 0, nil)
			return nil, http.StatusUnauthorized, fmt.Errorf("RBAC: access denied by %s (filter %s)", x.denied, f.name)
		}
	}
	ucl, ok := h.o.Clusters.Cluster(tc.cluster)
	if !ok {
		x.flag = "NC"
		h.tcpLog(x, http.StatusServiceUnavailable, 0, 0, nil)
		return nil, http.StatusServiceUnavailable, fmt.Errorf("cluster %s not found", tc.cluster)
	}
	up, ep, err := ucl.DialTCP(ctx, upstream.Pick{})
	x.upstream = ep
	if err != nil {
		var ov *upstream.OverflowError
		switch {
		case errors.As(err, &ov):
			x.flag = "UO"
		case errors.Is(err, upstream.ErrNoHealthyUpstream):
			x.flag = "UH"
		default:
			x.flag = "UF"
		}
		h.tcpLog(x, http.StatusServiceUnavailable, 0, 0, err)
		return nil, http.StatusServiceUnavailable, err
	}
	x.flag = "-"
	l := x.labels()
	h.o.Metrics.TCPOpened(l)
	return func(st net.Conn) {
		received, sent, err := hbone.Relay(st, up)
		h.o.Metrics.TCPClosed(l, sent, received)
		h.tcpLog(x, http.StatusOK, received, sent, err)
	}, 0, nil
}

// tcpExchange is one TCP connection through the waypoint, for metrics and the access log.
type tcpExchange struct {
	start          time.Time
	in             *hbone.Inbound
	client         netip.AddrPort
	chain, cluster string
	upstream       *upstream.Endpoint
	flag           string
	audited        []string
	denied         string
}

func (x *tcpExchange) labels() *metrics.Labels {
	l := peerLabels(x.in, x.upstream, x.cluster)
	l.RequestProtocol, l.ResponseFlags = "tcp", x.flag
	return l
}

// tcpLog writes the access log record of a TCP connection: status is the tunnel's answer
// (200 relayed, 401 denied, 503 not connected).
func (h *Handler) tcpLog(x *tcpExchange, status int, received, sent int64, err error) {
	if h.o.AccessLog == nil {
		return
	}
	upstreamHost := "-"
	if x.upstream != nil {
		upstreamHost = x.upstream.String()
	}
	attrs := []slog.Attr{
		slog.String("start_time", x.start.UTC().Format(time.RFC3339Nano)),
		slog.String("protocol", "tcp"),
		slog.Int("response_code", status),
		slog.String("response_flags", x.flag),
		slog.Int64("bytes_received", received),
		slog.Int64("bytes_sent", sent),
		slog.Float64("duration_ms", float64(time.Since(x.start).Microseconds())/1000),
		slog.String("upstream_host", upstreamHost),
		slog.String("upstream_cluster", x.cluster),
		slog.String("filter_chain", x.chain),
		slog.String("authority", x.in.Authority.String()),
		slog.String("downstream_remote_address", x.client.String()),
	}
	if !x.in.PeerID.IsZero() {
		attrs = append(attrs, slog.String("downstream_peer_principal", x.in.PeerID.String()))
	}
	if x.denied != "" {
		attrs = append(attrs, slog.String("rbac_denied_by", x.denied))
	}
	if len(x.audited) > 0 {
		attrs = append(attrs, slog.Any("rbac_audited_by", x.audited))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	h.o.AccessLog.LogAttrs(context.Background(), slog.LevelInfo, "access", attrs...)
}
