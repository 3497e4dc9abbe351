package envoy

import (
	"fmt"
	"math"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

// defaultConnectTimeout is Istio's default connectTimeout.
const defaultConnectTimeout = 10 * time.Second

const httpProtocolOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

type destinationRule struct {
	dr      *networkingv1.DestinationRule
	subsets map[string]*networking.Subset
	index   map[string]int // subset name → index in spec.subsets
}

func (b *builder) indexDestinationRules() {
	drs := slices.Clone(b.in.DestinationRules)
	slices.SortFunc(drs, func(x, y *networkingv1.DestinationRule) int { return oldestFirst(x.ObjectMeta, y.ObjectMeta) })
	for _, dr := range drs {
		if dr.Namespace != b.in.Namespace {
			continue
		}
		if dr.Spec.WorkloadSelector != nil {
			b.problem("DestinationRule", dr.ObjectMeta, "spec.workloadSelector", "a rule for selected client workloads does not apply to the waypoint; ignored", "remove workloadSelector to apply the rule to the waypoint")
			continue
		}
		s := b.resolve(dr.Spec.Host)
		if s == nil {
			b.problem("DestinationRule", dr.ObjectMeta, "spec.host", fmt.Sprintf("host %q is not a service of namespace %s; ignored", dr.Spec.Host, b.in.Namespace), "name a Service of the waypoint's namespace")
			continue
		}
		if first := b.drs[s.host]; first != nil {
			b.problem("DestinationRule", dr.ObjectMeta, "spec.host", fmt.Sprintf("host %s already has DestinationRule %s (older); this one is ignored", s.host, first.dr.Name), "merge the rules into one DestinationRule")
			continue
		}
		d := &destinationRule{dr: dr, subsets: map[string]*networking.Subset{}, index: map[string]int{}}
		for i, ss := range dr.Spec.Subsets {
			if ss == nil {
				continue
			}
			field := fmt.Sprintf("spec.subsets[%d]", i)
			if ss.Name == "" {
				b.problem("DestinationRule", dr.ObjectMeta, field+".name", "a subset needs a name; ignored", "name the subset")
				continue
			}
			if _, dup := d.subsets[ss.Name]; dup {
				b.problem("DestinationRule", dr.ObjectMeta, field+".name", fmt.Sprintf("subset %q is defined twice; the first is used", ss.Name), "rename or remove one")
				continue
			}
			d.subsets[ss.Name], d.index[ss.Name] = ss, i
		}
		b.drs[s.host] = d
		b.checkPolicies(dr)
	}
}

// checkPolicies reports the fields of a rule's traffic policies that cannot be translated,
// once each, with their path.
func (b *builder) checkPolicies(dr *networkingv1.DestinationRule) {
	check := func(field string, p *networking.TrafficPolicy) {
		if p == nil {
			return
		}
		report := func(f, msg, fix string) { b.problem("DestinationRule", dr.ObjectMeta, field+"."+f, msg, fix) }
		cluster("check", &svcPort{}, p, report)
		for i, pl := range p.PortLevelSettings {
			if pl == nil {
				continue
			}
			f := fmt.Sprintf("%s.portLevelSettings[%d]", field, i)
			if pl.Port == nil || pl.Port.Number == 0 {
				b.problem("DestinationRule", dr.ObjectMeta, f+".port", "port-level settings need a port number; ignored", "set port.number")
				continue
			}
			pp := &networking.TrafficPolicy{LoadBalancer: pl.LoadBalancer, ConnectionPool: pl.ConnectionPool, OutlierDetection: pl.OutlierDetection, Tls: pl.Tls}
			cluster("check", &svcPort{}, pp, func(g, msg, fix string) { b.problem("DestinationRule", dr.ObjectMeta, f+"."+g, msg, fix) })
		}
		if p.Tunnel != nil || p.ProxyProtocol != nil || p.RetryBudget != nil {
			report("tunnel", "tunnel, proxyProtocol and retryBudget are not supported by the waypoint; ignored", "remove them")
		}
	}
	check("spec.trafficPolicy", dr.Spec.TrafficPolicy)
	for i, ss := range dr.Spec.Subsets {
		if ss != nil {
			check(fmt.Sprintf("spec.subsets[%d].trafficPolicy", i), ss.TrafficPolicy)
		}
	}
}

// portPolicy is policy with the port-level settings for port applied: each set part of
// the port's settings replaces the whole part, as in Istio.
func portPolicy(policy *networking.TrafficPolicy, port uint32) (*networking.TrafficPolicy, int) {
	if policy == nil {
		return nil, -1
	}
	for i, pl := range policy.PortLevelSettings {
		if pl == nil || pl.Port == nil || pl.Port.Number != port {
			continue
		}
		out := &networking.TrafficPolicy{LoadBalancer: policy.LoadBalancer, ConnectionPool: policy.ConnectionPool, OutlierDetection: policy.OutlierDetection, Tls: policy.Tls}
		if pl.LoadBalancer != nil {
			out.LoadBalancer = pl.LoadBalancer
		}
		if pl.ConnectionPool != nil {
			out.ConnectionPool = pl.ConnectionPool
		}
		if pl.OutlierDetection != nil {
			out.OutlierDetection = pl.OutlierDetection
		}
		if pl.Tls != nil {
			out.Tls = pl.Tls
		}
		return out, i
	}
	return policy, -1
}

// overlay returns base with the parts set in top replacing base's (a subset's policy over
// the rule's).
func overlay(base, top *networking.TrafficPolicy) *networking.TrafficPolicy {
	if top == nil {
		return base
	}
	if base == nil {
		return top
	}
	out := &networking.TrafficPolicy{LoadBalancer: base.LoadBalancer, ConnectionPool: base.ConnectionPool, OutlierDetection: base.OutlierDetection, Tls: base.Tls}
	if top.LoadBalancer != nil {
		out.LoadBalancer = top.LoadBalancer
	}
	if top.ConnectionPool != nil {
		out.ConnectionPool = top.ConnectionPool
	}
	if top.OutlierDetection != nil {
		out.OutlierDetection = top.OutlierDetection
	}
	if top.Tls != nil {
		out.Tls = top.Tls
	}
	return out
}

// clusters builds a cluster per HTTP service port and per DestinationRule subset, one per
// TCP service port (tcp_proxy has no routes, so no subsets), and the load assignment of
// each EDS cluster.
func (b *builder) clusters() ([]*clusterv3.Cluster, []*endpointv3.ClusterLoadAssignment) {
	var clusters []*clusterv3.Cluster
	var cla []*endpointv3.ClusterLoadAssignment
	for _, host := range sortedKeys(b.services) {
		s := b.services[host]
		d := b.drs[host]
		ports := make([]*svcPort, 0, len(s.ports)+len(s.tcp))
		for i := range s.ports {
			ports = append(ports, &s.ports[i])
		}
		for i := range s.tcp {
			ports = append(ports, &s.tcp[i])
		}
		for _, port := range ports {
			type variant struct {
				subset string
				labels map[string]string
				policy *networking.TrafficPolicy
				field  string
			}
			variants := []variant{{field: "spec.trafficPolicy"}}
			if d != nil {
				top, pi := portPolicy(d.dr.Spec.TrafficPolicy, port.number)
				if pi >= 0 {
					variants[0].field = fmt.Sprintf("spec.trafficPolicy.portLevelSettings[%d]", pi)
				}
				variants[0].policy = top
				if port.tcp {
					b.checkTCPPolicy(d, top, variants[0].field, port.number)
				}
				for _, name := range sortedKeys(d.subsets) {
					if port.tcp {
						break // subsets are chosen by routes: a TCP port has none
					}
					ss := d.subsets[name]
					sp, spi := portPolicy(ss.TrafficPolicy, port.number)
					field := fmt.Sprintf("spec.subsets[%d].trafficPolicy", d.index[name])
					if spi >= 0 {
						field += fmt.Sprintf(".portLevelSettings[%d]", spi)
					}
					variants = append(variants, variant{subset: name, labels: ss.Labels, policy: overlay(top, sp), field: field})
				}
			}
			for _, v := range variants {
				name := ClusterName(port.number, v.subset, host)
				c := cluster(name, port, v.policy, func(string, string, string) {}) // reported by checkPolicies
				if err := c.ValidateAll(); err != nil {
					b.problem("DestinationRule", d.dr.ObjectMeta, v.field, "the cluster "+name+" is invalid and left out ("+err.Error()+"); requests to it fail with 503", "correct the traffic policy")
					continue
				}
				clusters = append(clusters, c)
				if c.GetType() != clusterv3.Cluster_EDS {
					continue
				}
				a := &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{locality(b.endpoints(s, port, v.labels))}}
				if err := a.ValidateAll(); err != nil {
					b.problem("Service", s.svc.ObjectMeta, "endpoints", "the endpoints of "+name+" are invalid and left out: "+err.Error(), "")
					continue
				}
				cla = append(cla, a)
			}
		}
	}
	return clusters, cla
}

// cluster builds the cluster of a service port with its traffic policy. report receives the
// policy's fields that cannot be translated (relative to the policy), which are ignored.
func cluster(name string, port *svcPort, policy *networking.TrafficPolicy, report func(field, msg, fix string)) *clusterv3.Cluster {
	max := wrapperspb.UInt32(math.MaxUint32)
	thresholds := &clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_DEFAULT, MaxConnections: max, MaxPendingRequests: max, MaxRequests: max, MaxRetries: max}
	c := &clusterv3.Cluster{
		Name:                 name,
		AltStatName:          name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: name},
		ConnectTimeout:       durationpb.New(defaultConnectTimeout),
		LbPolicy:             clusterv3.Cluster_LEAST_REQUEST, // Istio's default
		CircuitBreakers:      &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{thresholds}},
	}
	if port.tcp {
		defer func() { c.TypedExtensionProtocolOptions = nil }() // raw TCP: no HTTP options
	}
	opts := &upstreamhttpv3.HttpProtocolOptions{}
	if port.http2 {
		opts.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}
	} else {
		opts.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}}
	}
	defer func() {
		if proto.Equal(opts.CommonHttpProtocolOptions, &corev3.HttpProtocolOptions{}) {
			opts.CommonHttpProtocolOptions = nil
		}
		if a, err := anypb.New(opts); err == nil {
			c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsName: a}
		}
	}()
	if policy == nil {
		return c
	}
	problem := report
	if lb := policy.LoadBalancer; lb != nil {
		switch p := lb.LbPolicy.(type) {
		case *networking.LoadBalancerSettings_Simple:
			switch p.Simple {
			case networking.LoadBalancerSettings_UNSPECIFIED, networking.LoadBalancerSettings_LEAST_REQUEST:
			case networking.LoadBalancerSettings_ROUND_ROBIN:
				c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
			case networking.LoadBalancerSettings_RANDOM:
				c.LbPolicy = clusterv3.Cluster_RANDOM
			case networking.LoadBalancerSettings_PASSTHROUGH:
				c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
				c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
				c.EdsClusterConfig = nil
			default:
				problem("loadBalancer.simple", fmt.Sprintf("%s is not supported; LEAST_REQUEST is used", p.Simple), "use ROUND_ROBIN, RANDOM, LEAST_REQUEST or PASSTHROUGH")
			}
		case *networking.LoadBalancerSettings_ConsistentHash:
			c.LbPolicy = clusterv3.Cluster_RING_HASH
			ch := p.ConsistentHash
			if m, ok := ch.GetHashAlgorithm().(*networking.LoadBalancerSettings_ConsistentHashLB_Maglev); ok {
				c.LbPolicy = clusterv3.Cluster_MAGLEV
				if m.Maglev.GetTableSize() > 0 {
					c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(m.Maglev.GetTableSize())}}
				}
			} else {
				size := ch.GetRingHash().GetMinimumRingSize()
				if size == 0 {
					//lint:ignore SA1019 the older field is still honoured
					size = ch.GetMinimumRingSize()
				}
				if size > 0 {
					c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(size)}}
				}
			}
		}
		//lint:ignore SA1019 the older warmup field is reported too
		if lb.LocalityLbSetting != nil || lb.WarmupDurationSecs != nil || lb.Warmup != nil || lb.ZoneAwareLbSetting != nil {
			problem("loadBalancer", "localityLbSetting, zoneAwareLbSetting and warmup are not supported by the waypoint; ignored", "remove them")
		}
	}
	if cp := policy.ConnectionPool; cp != nil {
		if t := cp.Tcp; t != nil {
			if t.MaxConnections > 0 {
				thresholds.MaxConnections = wrapperspb.UInt32(uint32(t.MaxConnections))
			}
			if t.ConnectTimeout != nil {
				c.ConnectTimeout = durationpb.New(t.ConnectTimeout.AsDuration())
			}
			if t.MaxConnectionDuration != nil {
				opts.CommonHttpProtocolOptions = common(opts)
				opts.CommonHttpProtocolOptions.MaxConnectionDuration = durationpb.New(t.MaxConnectionDuration.AsDuration())
			}
			if t.IdleTimeout != nil {
				opts.CommonHttpProtocolOptions = common(opts)
				opts.CommonHttpProtocolOptions.IdleTimeout = durationpb.New(t.IdleTimeout.AsDuration())
			}
			if k := t.TcpKeepalive; k != nil {
				ka := &corev3.TcpKeepalive{}
				if k.Probes > 0 {
					ka.KeepaliveProbes = wrapperspb.UInt32(k.Probes)
				}
				if k.Time != nil {
					ka.KeepaliveTime = wrapperspb.UInt32(uint32(k.Time.AsDuration() / time.Second))
				}
				if k.Interval != nil {
					ka.KeepaliveInterval = wrapperspb.UInt32(uint32(k.Interval.AsDuration() / time.Second))
				}
				c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: ka}
			}
		}
		if h := cp.Http; h != nil {
			if h.Http1MaxPendingRequests > 0 {
				thresholds.MaxPendingRequests = wrapperspb.UInt32(uint32(h.Http1MaxPendingRequests))
			}
			if h.Http2MaxRequests > 0 {
				thresholds.MaxRequests = wrapperspb.UInt32(uint32(h.Http2MaxRequests))
			}
			if h.MaxRetries > 0 {
				thresholds.MaxRetries = wrapperspb.UInt32(uint32(h.MaxRetries))
			}
			if h.MaxRequestsPerConnection > 0 {
				opts.CommonHttpProtocolOptions = common(opts)
				opts.CommonHttpProtocolOptions.MaxRequestsPerConnection = wrapperspb.UInt32(uint32(h.MaxRequestsPerConnection))
			}
			if h.IdleTimeout != nil {
				opts.CommonHttpProtocolOptions = common(opts)
				opts.CommonHttpProtocolOptions.IdleTimeout = durationpb.New(h.IdleTimeout.AsDuration())
			}
			if h.H2UpgradePolicy != networking.ConnectionPoolSettings_HTTPSettings_DEFAULT || h.UseClientProtocol || h.MaxConcurrentStreams > 0 || h.Http2KeepAlive != nil {
				problem("connectionPool.http", "h2UpgradePolicy, useClientProtocol, maxConcurrentStreams and http2KeepAlive are not supported by the waypoint; ignored", "remove them")
			}
		}
	}
	if od := policy.OutlierDetection; od != nil {
		// Istio turns Envoy's success-rate ejection off (its default enforcing is 100).
		o := &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0)}
		if v := od.Consecutive_5XxErrors; v != nil {
			o.Consecutive_5Xx = wrapperspb.UInt32(v.Value)
			o.EnforcingConsecutive_5Xx = wrapperspb.UInt32(enforcing(v.Value))
		}
		gateway := od.ConsecutiveGatewayErrors
		//lint:ignore SA1019 the older field counts gateway errors, as Istio reads it
		if old := od.ConsecutiveErrors; gateway == nil && old > 0 {
			gateway = wrapperspb.UInt32(uint32(old))
		}
		if gateway != nil {
			o.ConsecutiveGatewayFailure = wrapperspb.UInt32(gateway.Value)
			o.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(enforcing(gateway.Value))
			if od.Consecutive_5XxErrors == nil {
				o.EnforcingConsecutive_5Xx = wrapperspb.UInt32(0)
			}
		}
		if od.Interval != nil {
			o.Interval = durationpb.New(od.Interval.AsDuration())
		}
		if od.BaseEjectionTime != nil {
			o.BaseEjectionTime = durationpb.New(od.BaseEjectionTime.AsDuration())
		}
		if od.MaxEjectionPercent > 0 {
			o.MaxEjectionPercent = wrapperspb.UInt32(uint32(od.MaxEjectionPercent))
		}
		if od.SplitExternalLocalOriginErrors {
			o.SplitExternalLocalOriginErrors = true
			if v := od.ConsecutiveLocalOriginFailures; v != nil {
				o.ConsecutiveLocalOriginFailure = wrapperspb.UInt32(v.Value)
			}
		}
		if len(od.OutlierDetectionHttpErrorCodes) > 0 {
			problem("outlierDetection.outlierDetectionHttpErrorCodes", "not supported by the waypoint; ignored", "remove it")
		}
		c.OutlierDetection = o
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: float64(od.MinHealthPercent)}}
	}
	if t := policy.Tls; t != nil && t.Mode != networking.ClientTLSSettings_ISTIO_MUTUAL {
		problem("tls.mode", t.Mode.String()+" is not supported: the mesh's mTLS (HBONE) carries every request; ignored", "remove tls or use ISTIO_MUTUAL")
	}
	return c
}

func common(o *upstreamhttpv3.HttpProtocolOptions) *corev3.HttpProtocolOptions {
	if o.CommonHttpProtocolOptions == nil {
		return &corev3.HttpProtocolOptions{}
	}
	return o.CommonHttpProtocolOptions
}

func enforcing(v uint32) uint32 {
	if v > 0 {
		return 100
	}
	return 0
}

// effectivePolicy is the traffic policy of the cluster of host's port and subset.
func (b *builder) effectivePolicy(host string, port uint32, subset string) *networking.TrafficPolicy {
	d := b.drs[host]
	if d == nil {
		return nil
	}
	top, _ := portPolicy(d.dr.Spec.TrafficPolicy, port)
	if subset == "" {
		return top
	}
	ss := d.subsets[subset]
	if ss == nil {
		return top
	}
	sp, _ := portPolicy(ss.TrafficPolicy, port)
	return overlay(top, sp)
}

// locality groups endpoints in one locality of weight 1: Envoy treats a missing locality and
// weight the same way, but gRPC's xDS client rejects a locality without an ID and skips one
// without weight, so both are explicit.
func locality(lbs []*endpointv3.LbEndpoint) *endpointv3.LocalityLbEndpoints {
	return &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{}, LoadBalancingWeight: wrapperspb.UInt32(1), LbEndpoints: lbs}
}

// checkTCPPolicy reports the connection-pool settings of a TCP port's policy that the
// waypoint's tcp_proxy does not apply (Istio puts them on its tcp_proxy; Weft does not yet).
// The HTTP settings do not apply to TCP, as in Istio, and are not reported.
func (b *builder) checkTCPPolicy(d *destinationRule, p *networking.TrafficPolicy, field string, port uint32) {
	t := p.GetConnectionPool().GetTcp()
	if t.GetIdleTimeout() != nil || t.GetMaxConnectionDuration() != nil {
		b.problem("DestinationRule", d.dr.ObjectMeta, field+".connectionPool.tcp", fmt.Sprintf("idleTimeout and maxConnectionDuration are not applied to TCP port %d by the waypoint; ignored there", port), "remove them, or name the port for HTTP")
	}
}
