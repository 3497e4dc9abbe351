package upstream

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// HTTPProtocolOptionsName is the typed_extension_protocol_options key of the upstream
// HTTP protocol options.
const HTTPProtocolOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// Envoy's defaults.
const (
	defaultConnectTimeout   = 5 * time.Second
	defaultCircuitBreaker   = 1024
	defaultMaxRetries       = 3
	defaultIdleTimeout      = time.Hour
	defaultDNSRefresh       = 5 * time.Second
	defaultCleanupInterval  = 5 * time.Second
	defaultPanicThreshold   = 50
	defaultRingMin          = 1024
	defaultRingMax          = 8 * 1024 * 1024
	defaultMaglevTableSize  = 65537
	defaultChoiceCount      = 2
	defaultOutlierInterval  = 10 * time.Second
	defaultBaseEjection     = 30 * time.Second
	defaultMaxEjection      = 300 * time.Second
	defaultMaxEjectPercent  = 10
	defaultConsecutive      = 5
	defaultSRMinimumHosts   = 5
	defaultSRRequestVolume  = 100
	defaultSRStdevFactor    = 1900
	defaultFPThreshold      = 85
	defaultFPMinimumHosts   = 5
	defaultFPRequestVolume  = 50
	maxUint32               = math.MaxUint32
	enforcingAlways         = 100
	enforcingNever          = 0
	enforcingDefaultGateway = enforcingNever
)

type discovery int

const (
	discoveryEDS discovery = iota
	discoveryStatic
	discoveryStrictDNS
	discoveryLogicalDNS
	discoveryOriginalDst
)

type lbPolicy int

const (
	lbLeastRequest lbPolicy = iota
	lbRoundRobin
	lbRandom
	lbRingHash
	lbMaglev
	lbClusterProvided
)

// config is a compiled cluster: everything the data path needs, with Envoy's defaults
// applied.
type config struct {
	name           string
	discovery      discovery
	edsName        string // the ClusterLoadAssignment of an EDS cluster
	connectTimeout time.Duration

	lb          lbPolicy
	choiceCount int
	ringMin     uint64
	ringMax     uint64
	maglevSize  uint64

	maxConnections, maxPending, maxRequests, maxRetries uint64

	http2              bool
	maxRequestsPerConn uint64 // 0: unlimited
	idleTimeout        time.Duration
	maxConnDuration    time.Duration // 0: unlimited
	keepalive          *net.KeepAliveConfig

	outlier        *outlierConfig
	panicThreshold float64

	dnsFamily       clusterv3.Cluster_DnsLookupFamily
	dnsRefresh      time.Duration
	static          []endpointSpec // STATIC, STRICT_DNS, LOGICAL_DNS: the inline load_assignment
	cleanupInterval time.Duration
}

// endpointSpec is an endpoint as configured: for DNS clusters host is a name to resolve.
type endpointSpec struct {
	ep        Endpoint
	host      string // DNS clusters: the name to resolve ("" when ep.Addr is an address)
	port      uint16
	unhealthy bool
}

type outlierConfig struct {
	consecutive5xx, consecutiveGateway, consecutiveLocal uint32
	enf5xx, enfGateway, enfLocal                         uint32
	enfSR, enfLocalSR, enfFP, enfLocalFP                 uint32
	interval, baseEjection, maxEjection, jitter          time.Duration
	maxEjectPercent                                      uint32
	split, alwaysEjectOne                                bool
	srMinHosts, srVolume, srStdevFactor                  uint32
	fpThreshold, fpMinHosts, fpVolume                    uint32
}

// onlyFields fails when m has a populated field outside allowed, naming it: a field the
// waypoint does not implement would change behaviour, so the update is refused.
func onlyFields(m proto.Message, path string, allowed ...string) error {
	var bad string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(allowed, string(fd.Name())) {
			bad = string(fd.Name())
			return false
		}
		return true
	})
	if bad != "" {
		return fmt.Errorf("%s.%s is not supported by the waypoint; remove it", path, bad)
	}
	return nil
}

func durationOr(d *durationpb.Duration, field string, def time.Duration) (time.Duration, error) {
	if d == nil {
		return def, nil
	}
	if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
		return 0, fmt.Errorf("%s: %v is not a valid duration; use a positive duration", field, d)
	}
	return d.AsDuration(), nil
}

func u32Or(v *wrapperspb.UInt32Value, def uint32) uint32 {
	if v == nil {
		return def
	}
	return v.Value
}

func percent(v *wrapperspb.UInt32Value, field string, def uint32) (uint32, error) {
	p := u32Or(v, def)
	if p > 100 {
		return 0, fmt.Errorf("%s: %d is not a percentage; use 0 to 100", field, p)
	}
	return p, nil
}

// compile checks a cluster and turns it into a config. Errors name the field and the fix.
func compile(c *clusterv3.Cluster) (*config, error) {
	if err := onlyFields(c, "cluster", "name", "alt_stat_name", "type", "eds_cluster_config",
		"connect_timeout", "lb_policy", "circuit_breakers", "typed_extension_protocol_options",
		"outlier_detection", "ring_hash_lb_config", "maglev_lb_config", "least_request_lb_config",
		"round_robin_lb_config", "original_dst_lb_config", "common_lb_config",
		"upstream_connection_options", "load_assignment", "dns_lookup_family", "dns_refresh_rate",
		"cleanup_interval", "metadata"); err != nil {
		return nil, err
	}
	if c.GetName() == "" {
		return nil, errors.New("cluster.name is empty; name the cluster")
	}
	cfg := &config{name: c.GetName()}
	var err error
	if cfg.connectTimeout, err = durationOr(c.GetConnectTimeout(), "cluster.connect_timeout", defaultConnectTimeout); err != nil {
		return nil, err
	}
	if cfg.connectTimeout == 0 {
		return nil, errors.New("cluster.connect_timeout must be greater than 0; set a connect timeout")
	}
	if err := compileDiscovery(c, cfg); err != nil {
		return nil, err
	}
	if err := compileLB(c, cfg); err != nil {
		return nil, err
	}
	if err := compileCircuitBreakers(c.GetCircuitBreakers(), cfg); err != nil {
		return nil, err
	}
	if err := compileProtocol(c, cfg); err != nil {
		return nil, err
	}
	if uco := c.GetUpstreamConnectionOptions(); uco != nil {
		if err := onlyFields(uco, "cluster.upstream_connection_options", "tcp_keepalive"); err != nil {
			return nil, err
		}
		if ka := uco.GetTcpKeepalive(); ka != nil {
			cfg.keepalive = &net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
			if v := ka.GetKeepaliveTime(); v != nil {
				cfg.keepalive.Idle = time.Duration(v.Value) * time.Second
			}
			if v := ka.GetKeepaliveInterval(); v != nil {
				cfg.keepalive.Interval = time.Duration(v.Value) * time.Second
			}
			if v := ka.GetKeepaliveProbes(); v != nil {
				cfg.keepalive.Count = int(v.Value)
			}
		}
	}
	if od := c.GetOutlierDetection(); od != nil {
		if cfg.outlier, err = compileOutlier(od); err != nil {
			return nil, err
		}
	}
	cfg.panicThreshold = defaultPanicThreshold
	if cl := c.GetCommonLbConfig(); cl != nil {
		if err := onlyFields(cl, "cluster.common_lb_config", "healthy_panic_threshold"); err != nil {
			return nil, err
		}
		if t := cl.GetHealthyPanicThreshold(); t != nil {
			if t.Value < 0 || t.Value > 100 {
				return nil, fmt.Errorf("cluster.common_lb_config.healthy_panic_threshold: %v is not a percentage; use 0 to 100", t.Value)
			}
			cfg.panicThreshold = t.Value
		}
	}
	return cfg, nil
}

func compileDiscovery(c *clusterv3.Cluster, cfg *config) error {
	var err error
	switch c.GetType() {
	case clusterv3.Cluster_EDS:
		cfg.discovery = discoveryEDS
		cfg.edsName = c.GetName()
		if e := c.GetEdsClusterConfig(); e != nil {
			if err := onlyFields(e, "cluster.eds_cluster_config", "eds_config", "service_name"); err != nil {
				return err
			}
			if src := e.GetEdsConfig(); src != nil && src.GetAds() == nil && src.GetSelf() == nil {
				return errors.New("cluster.eds_cluster_config.eds_config: the waypoint takes endpoints over ADS only; use ads: {}")
			}
			if e.GetServiceName() != "" {
				cfg.edsName = e.GetServiceName()
			}
		}
		if c.GetLoadAssignment() != nil {
			return errors.New("cluster.load_assignment is not used by an EDS cluster; remove it or use type STATIC")
		}
	case clusterv3.Cluster_STATIC, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
		dns := c.GetType() != clusterv3.Cluster_STATIC
		switch c.GetType() {
		case clusterv3.Cluster_STATIC:
			cfg.discovery = discoveryStatic
		case clusterv3.Cluster_STRICT_DNS:
			cfg.discovery = discoveryStrictDNS
		default:
			cfg.discovery = discoveryLogicalDNS
		}
		if c.GetEdsClusterConfig() != nil {
			return fmt.Errorf("cluster.eds_cluster_config needs type EDS, not %s; remove it", c.GetType())
		}
		if c.GetLoadAssignment() == nil {
			return fmt.Errorf("cluster.load_assignment: a %s cluster needs its endpoints inline; add load_assignment", c.GetType())
		}
		if cfg.static, err = compileEndpoints(c.GetLoadAssignment(), "cluster.load_assignment", dns); err != nil {
			return err
		}
		if cfg.discovery == discoveryLogicalDNS && len(cfg.static) != 1 {
			return fmt.Errorf("cluster.load_assignment: a LOGICAL_DNS cluster takes exactly one endpoint, not %d; use STRICT_DNS for several", len(cfg.static))
		}
		if dns {
			switch f := c.GetDnsLookupFamily(); f {
			case clusterv3.Cluster_AUTO, clusterv3.Cluster_V4_ONLY, clusterv3.Cluster_V6_ONLY, clusterv3.Cluster_V4_PREFERRED, clusterv3.Cluster_ALL:
				cfg.dnsFamily = f
			default:
				return fmt.Errorf("cluster.dns_lookup_family %s is not supported; use AUTO, V4_ONLY, V6_ONLY, V4_PREFERRED or ALL", f)
			}
			//lint:ignore SA1019 the controller emits the cluster-level DNS fields
			if cfg.dnsRefresh, err = durationOr(c.GetDnsRefreshRate(), "cluster.dns_refresh_rate", defaultDNSRefresh); err != nil {
				return err
			}
			if cfg.dnsRefresh < time.Millisecond {
				return errors.New("cluster.dns_refresh_rate must be at least 1ms; set a longer refresh rate")
			}
		}
	case clusterv3.Cluster_ORIGINAL_DST:
		cfg.discovery = discoveryOriginalDst
		if c.GetEdsClusterConfig() != nil || c.GetLoadAssignment() != nil {
			return errors.New("cluster: an ORIGINAL_DST cluster takes no endpoints; remove eds_cluster_config and load_assignment")
		}
		if c.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
			return fmt.Errorf("cluster.lb_policy must be CLUSTER_PROVIDED for an ORIGINAL_DST cluster, not %s", c.GetLbPolicy())
		}
		if o := c.GetOriginalDstLbConfig(); o != nil {
			if err := onlyFields(o, "cluster.original_dst_lb_config"); err != nil {
				return err
			}
		}
		if cfg.cleanupInterval, err = durationOr(c.GetCleanupInterval(), "cluster.cleanup_interval", defaultCleanupInterval); err != nil {
			return err
		}
	default:
		return fmt.Errorf("cluster.type %s is not supported; use EDS, STATIC, STRICT_DNS, LOGICAL_DNS or ORIGINAL_DST", c.GetType())
	}
	if cfg.discovery != discoveryStrictDNS && cfg.discovery != discoveryLogicalDNS {
		//lint:ignore SA1019 the controller emits the cluster-level DNS fields
		if c.GetDnsRefreshRate() != nil || c.GetDnsLookupFamily() != clusterv3.Cluster_AUTO {
			return fmt.Errorf("cluster.dns_refresh_rate and dns_lookup_family apply to DNS clusters only, not %s; remove them", c.GetType())
		}
	}
	if cfg.discovery != discoveryOriginalDst && (c.GetCleanupInterval() != nil || c.GetOriginalDstLbConfig() != nil) {
		return fmt.Errorf("cluster.cleanup_interval and original_dst_lb_config apply to ORIGINAL_DST clusters only, not %s; remove them", c.GetType())
	}
	return nil
}

func compileLB(c *clusterv3.Cluster, cfg *config) error {
	switch p := c.GetLbPolicy(); p {
	case clusterv3.Cluster_ROUND_ROBIN:
		cfg.lb = lbRoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		cfg.lb = lbLeastRequest
	case clusterv3.Cluster_RANDOM:
		cfg.lb = lbRandom
	case clusterv3.Cluster_RING_HASH:
		cfg.lb = lbRingHash
	case clusterv3.Cluster_MAGLEV:
		cfg.lb = lbMaglev
	case clusterv3.Cluster_CLUSTER_PROVIDED:
		if cfg.discovery != discoveryOriginalDst {
			return fmt.Errorf("cluster.lb_policy CLUSTER_PROVIDED needs type ORIGINAL_DST, not %s", c.GetType())
		}
		cfg.lb = lbClusterProvided
	default:
		return fmt.Errorf("cluster.lb_policy %s is not supported; use ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH or MAGLEV", p)
	}
	mismatch := func(field string) error {
		return fmt.Errorf("cluster.%s does not apply to lb_policy %s; remove it", field, c.GetLbPolicy())
	}
	cfg.choiceCount = defaultChoiceCount
	if lr := c.GetLeastRequestLbConfig(); lr != nil {
		if cfg.lb != lbLeastRequest {
			return mismatch("least_request_lb_config")
		}
		// active_request_bias only matters with unequal weights, which are refused.
		if err := onlyFields(lr, "cluster.least_request_lb_config", "choice_count", "active_request_bias"); err != nil {
			return err
		}
		if v := lr.GetChoiceCount(); v != nil {
			if v.Value < 2 {
				return fmt.Errorf("cluster.least_request_lb_config.choice_count: %d is too small; use 2 or more", v.Value)
			}
			cfg.choiceCount = int(v.Value)
		}
	}
	if rr := c.GetRoundRobinLbConfig(); rr != nil {
		if cfg.lb != lbRoundRobin {
			return mismatch("round_robin_lb_config")
		}
		if err := onlyFields(rr, "cluster.round_robin_lb_config"); err != nil {
			return err
		}
	}
	cfg.ringMin, cfg.ringMax = defaultRingMin, defaultRingMax
	if rh := c.GetRingHashLbConfig(); rh != nil {
		if cfg.lb != lbRingHash {
			return mismatch("ring_hash_lb_config")
		}
		if err := onlyFields(rh, "cluster.ring_hash_lb_config", "minimum_ring_size", "maximum_ring_size", "hash_function"); err != nil {
			return err
		}
		if rh.GetHashFunction() != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
			return fmt.Errorf("cluster.ring_hash_lb_config.hash_function %s is not supported; use XX_HASH", rh.GetHashFunction())
		}
		if v := rh.GetMinimumRingSize(); v != nil {
			cfg.ringMin = v.Value
		}
		if v := rh.GetMaximumRingSize(); v != nil {
			cfg.ringMax = v.Value
		}
		if cfg.ringMin == 0 || cfg.ringMin > cfg.ringMax || cfg.ringMax > defaultRingMax {
			return fmt.Errorf("cluster.ring_hash_lb_config: minimum_ring_size %d and maximum_ring_size %d must satisfy 0 < minimum ≤ maximum ≤ %d", cfg.ringMin, cfg.ringMax, defaultRingMax)
		}
	}
	cfg.maglevSize = defaultMaglevTableSize
	if mg := c.GetMaglevLbConfig(); mg != nil {
		if cfg.lb != lbMaglev {
			return mismatch("maglev_lb_config")
		}
		if err := onlyFields(mg, "cluster.maglev_lb_config", "table_size"); err != nil {
			return err
		}
		if v := mg.GetTableSize(); v != nil {
			if v.Value > 5000011 || !isPrime(v.Value) {
				return fmt.Errorf("cluster.maglev_lb_config.table_size %d must be a prime number up to 5000011; use e.g. 65537", v.Value)
			}
			cfg.maglevSize = v.Value
		}
	}
	return nil
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for i := uint64(2); i*i <= n; i++ {
		if n%i == 0 {
			return false
		}
	}
	return true
}

func compileCircuitBreakers(cb *clusterv3.CircuitBreakers, cfg *config) error {
	cfg.maxConnections, cfg.maxPending, cfg.maxRequests, cfg.maxRetries = defaultCircuitBreaker, defaultCircuitBreaker, defaultCircuitBreaker, defaultMaxRetries
	if cb == nil {
		return nil
	}
	if err := onlyFields(cb, "cluster.circuit_breakers", "thresholds"); err != nil {
		return err
	}
	seen := map[corev3.RoutingPriority]bool{}
	for i, t := range cb.GetThresholds() {
		path := fmt.Sprintf("cluster.circuit_breakers.thresholds[%d]", i)
		if err := onlyFields(t, path, "priority", "max_connections", "max_pending_requests", "max_requests", "max_retries", "track_remaining"); err != nil {
			return err
		}
		if seen[t.GetPriority()] {
			return fmt.Errorf("%s: priority %s has thresholds twice; keep one", path, t.GetPriority())
		}
		seen[t.GetPriority()] = true
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue // the waypoint routes with the default priority only
		}
		cfg.maxConnections = uint64(u32Or(t.GetMaxConnections(), defaultCircuitBreaker))
		cfg.maxPending = uint64(u32Or(t.GetMaxPendingRequests(), defaultCircuitBreaker))
		cfg.maxRequests = uint64(u32Or(t.GetMaxRequests(), defaultCircuitBreaker))
		cfg.maxRetries = uint64(u32Or(t.GetMaxRetries(), defaultMaxRetries))
	}
	return nil
}

func compileProtocol(c *clusterv3.Cluster, cfg *config) error {
	cfg.idleTimeout = defaultIdleTimeout
	for k := range c.GetTypedExtensionProtocolOptions() {
		if k != HTTPProtocolOptionsName {
			return fmt.Errorf("cluster.typed_extension_protocol_options[%q] is not supported; only %s is", k, HTTPProtocolOptionsName)
		}
	}
	a := c.GetTypedExtensionProtocolOptions()[HTTPProtocolOptionsName]
	if a == nil {
		return nil // HTTP/1.1, Envoy's default
	}
	path := fmt.Sprintf("cluster.typed_extension_protocol_options[%q]", HTTPProtocolOptionsName)
	o := &upstreamhttpv3.HttpProtocolOptions{}
	if err := a.UnmarshalTo(o); err != nil {
		return fmt.Errorf("%s: %w; use type %s", path, err, HTTPProtocolOptionsName)
	}
	if err := onlyFields(o, path, "common_http_protocol_options", "explicit_http_config"); err != nil {
		return err
	}
	if o.GetExplicitHttpConfig() == nil {
		return fmt.Errorf("%s: the upstream protocol must be explicit_http_config (use_downstream_protocol_config and auto_config are not supported); set explicit_http_config", path)
	}
	e := o.GetExplicitHttpConfig()
	switch {
	case e.GetHttpProtocolOptions() != nil:
		if err := onlyFields(e.GetHttpProtocolOptions(), path+".explicit_http_config.http_protocol_options"); err != nil {
			return err
		}
	case e.GetHttp2ProtocolOptions() != nil:
		if err := onlyFields(e.GetHttp2ProtocolOptions(), path+".explicit_http_config.http2_protocol_options"); err != nil {
			return err
		}
		cfg.http2 = true
	default:
		return fmt.Errorf("%s.explicit_http_config: only http_protocol_options (HTTP/1.1) and http2_protocol_options (h2c) are supported", path)
	}
	if co := o.GetCommonHttpProtocolOptions(); co != nil {
		cpath := path + ".common_http_protocol_options"
		if err := onlyFields(co, cpath, "idle_timeout", "max_connection_duration", "max_requests_per_connection"); err != nil {
			return err
		}
		var err error
		if cfg.idleTimeout, err = durationOr(co.GetIdleTimeout(), cpath+".idle_timeout", defaultIdleTimeout); err != nil {
			return err
		}
		if cfg.maxConnDuration, err = durationOr(co.GetMaxConnectionDuration(), cpath+".max_connection_duration", 0); err != nil {
			return err
		}
		cfg.maxRequestsPerConn = uint64(u32Or(co.GetMaxRequestsPerConnection(), 0))
	}
	return nil
}

func compileOutlier(od *clusterv3.OutlierDetection) (*outlierConfig, error) {
	const path = "cluster.outlier_detection"
	if err := onlyFields(od, path, "consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent",
		"enforcing_consecutive_5xx", "enforcing_success_rate", "success_rate_minimum_hosts",
		"success_rate_request_volume", "success_rate_stdev_factor", "consecutive_gateway_failure",
		"enforcing_consecutive_gateway_failure", "split_external_local_origin_errors",
		"consecutive_local_origin_failure", "enforcing_consecutive_local_origin_failure",
		"enforcing_local_origin_success_rate", "failure_percentage_threshold", "enforcing_failure_percentage",
		"enforcing_failure_percentage_local_origin", "failure_percentage_minimum_hosts",
		"failure_percentage_request_volume", "max_ejection_time", "max_ejection_time_jitter",
		"always_eject_one_host"); err != nil {
		return nil, err
	}
	o := &outlierConfig{
		consecutive5xx:     u32Or(od.GetConsecutive_5Xx(), defaultConsecutive),
		consecutiveGateway: u32Or(od.GetConsecutiveGatewayFailure(), defaultConsecutive),
		consecutiveLocal:   u32Or(od.GetConsecutiveLocalOriginFailure(), defaultConsecutive),
		split:              od.GetSplitExternalLocalOriginErrors(),
		alwaysEjectOne:     od.GetAlwaysEjectOneHost().GetValue(),
		srMinHosts:         u32Or(od.GetSuccessRateMinimumHosts(), defaultSRMinimumHosts),
		srVolume:           u32Or(od.GetSuccessRateRequestVolume(), defaultSRRequestVolume),
		srStdevFactor:      u32Or(od.GetSuccessRateStdevFactor(), defaultSRStdevFactor),
		fpMinHosts:         u32Or(od.GetFailurePercentageMinimumHosts(), defaultFPMinimumHosts),
		fpVolume:           u32Or(od.GetFailurePercentageRequestVolume(), defaultFPRequestVolume),
	}
	var err error
	pcts := []struct {
		dst   *uint32
		v     *wrapperspb.UInt32Value
		field string
		def   uint32
	}{
		{&o.enf5xx, od.GetEnforcingConsecutive_5Xx(), "enforcing_consecutive_5xx", enforcingAlways},
		{&o.enfGateway, od.GetEnforcingConsecutiveGatewayFailure(), "enforcing_consecutive_gateway_failure", enforcingDefaultGateway},
		{&o.enfLocal, od.GetEnforcingConsecutiveLocalOriginFailure(), "enforcing_consecutive_local_origin_failure", enforcingAlways},
		{&o.enfSR, od.GetEnforcingSuccessRate(), "enforcing_success_rate", enforcingAlways},
		{&o.enfLocalSR, od.GetEnforcingLocalOriginSuccessRate(), "enforcing_local_origin_success_rate", enforcingAlways},
		{&o.enfFP, od.GetEnforcingFailurePercentage(), "enforcing_failure_percentage", enforcingNever},
		{&o.enfLocalFP, od.GetEnforcingFailurePercentageLocalOrigin(), "enforcing_failure_percentage_local_origin", enforcingNever},
		{&o.maxEjectPercent, od.GetMaxEjectionPercent(), "max_ejection_percent", defaultMaxEjectPercent},
		{&o.fpThreshold, od.GetFailurePercentageThreshold(), "failure_percentage_threshold", defaultFPThreshold},
	}
	for _, p := range pcts {
		if *p.dst, err = percent(p.v, path+"."+p.field, p.def); err != nil {
			return nil, err
		}
	}
	if o.interval, err = durationOr(od.GetInterval(), path+".interval", defaultOutlierInterval); err != nil {
		return nil, err
	}
	if o.interval <= 0 {
		return nil, fmt.Errorf("%s.interval must be greater than 0; set an interval", path)
	}
	if o.baseEjection, err = durationOr(od.GetBaseEjectionTime(), path+".base_ejection_time", defaultBaseEjection); err != nil {
		return nil, err
	}
	if o.maxEjection, err = durationOr(od.GetMaxEjectionTime(), path+".max_ejection_time", max(defaultMaxEjection, o.baseEjection)); err != nil {
		return nil, err
	}
	if o.maxEjection < o.baseEjection {
		return nil, fmt.Errorf("%s.max_ejection_time (%s) is shorter than base_ejection_time (%s); raise it", path, o.maxEjection, o.baseEjection)
	}
	if o.jitter, err = durationOr(od.GetMaxEjectionTimeJitter(), path+".max_ejection_time_jitter", 0); err != nil {
		return nil, err
	}
	return o, nil
}

// compileEndpoints checks a load assignment and returns its endpoints. dns allows hostnames.
func compileEndpoints(cla *endpointv3.ClusterLoadAssignment, path string, dns bool) ([]endpointSpec, error) {
	if err := onlyFields(cla, path, "cluster_name", "endpoints", "policy"); err != nil {
		return nil, err
	}
	if p := cla.GetPolicy(); p != nil {
		if err := onlyFields(p, path+".policy", "overprovisioning_factor"); err != nil {
			return nil, err
		}
	}
	var out []endpointSpec
	var weight uint32
	for i, l := range cla.GetEndpoints() {
		lpath := fmt.Sprintf("%s.endpoints[%d]", path, i)
		// locality and its load_balancing_weight are informational: locality-weighted
		// balancing is not configured (common_lb_config.locality_weighted_lb_config is refused).
		if err := onlyFields(l, lpath, "locality", "lb_endpoints", "load_balancing_weight", "priority"); err != nil {
			return nil, err
		}
		if l.GetPriority() != 0 {
			return nil, fmt.Errorf("%s.priority %d: priority levels are not supported by the waypoint; put every endpoint at priority 0", lpath, l.GetPriority())
		}
		for j, lb := range l.GetLbEndpoints() {
			epath := fmt.Sprintf("%s.lb_endpoints[%d]", lpath, j)
			if err := onlyFields(lb, epath, "endpoint", "health_status", "metadata", "load_balancing_weight"); err != nil {
				return nil, err
			}
			w := u32Or(lb.GetLoadBalancingWeight(), 1)
			if weight != 0 && w != weight {
				return nil, fmt.Errorf("%s.load_balancing_weight %d differs from the other endpoints' (%d): weighted endpoints are not supported by the waypoint; give every endpoint the same weight", epath, w, weight)
			}
			weight = w
			spec := endpointSpec{}
			switch hs := lb.GetHealthStatus(); hs {
			case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
			case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT:
				spec.unhealthy = true
			default:
				return nil, fmt.Errorf("%s.health_status %s is not supported; use HEALTHY, UNHEALTHY, DRAINING or TIMEOUT", epath, hs)
			}
			e := lb.GetEndpoint()
			if e == nil {
				return nil, fmt.Errorf("%s.endpoint is missing; set endpoint.address", epath)
			}
			// hostname and health_check_config are informational: the waypoint does no
			// active health checking.
			if err := onlyFields(e, epath+".endpoint", "address", "hostname", "health_check_config"); err != nil {
				return nil, err
			}
			sa := e.GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, fmt.Errorf("%s.endpoint.address must be a socket_address", epath)
			}
			if err := onlyFields(sa, epath+".endpoint.address.socket_address", "protocol", "address", "port_value"); err != nil {
				return nil, err
			}
			if sa.GetProtocol() != corev3.SocketAddress_TCP {
				return nil, fmt.Errorf("%s.endpoint.address.socket_address.protocol must be TCP", epath)
			}
			if sa.GetPortValue() == 0 || sa.GetPortValue() > 65535 {
				return nil, fmt.Errorf("%s.endpoint.address.socket_address.port_value %d is not a port; set 1-65535", epath, sa.GetPortValue())
			}
			spec.port = uint16(sa.GetPortValue())
			if a, err := netip.ParseAddr(sa.GetAddress()); err == nil {
				spec.ep.Addr = netip.AddrPortFrom(a.Unmap(), spec.port)
			} else if dns && sa.GetAddress() != "" {
				spec.host = sa.GetAddress()
				spec.ep.Hostname = spec.host
			} else {
				return nil, fmt.Errorf("%s.endpoint.address.socket_address.address %q is not an IP address; use an IP address (hostnames need a STRICT_DNS or LOGICAL_DNS cluster)", epath, sa.GetAddress())
			}
			if err := parseMetadata(lb.GetMetadata(), &spec.ep); err != nil {
				return nil, fmt.Errorf("%s.%w", epath, err)
			}
			out = append(out, spec)
		}
	}
	return out, nil
}
