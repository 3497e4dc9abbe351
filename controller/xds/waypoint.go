package xds

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// WaypointTypes are the types served to waypoints, over delta ADS.
var WaypointTypes = []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType}

// WaypointNodePrefix starts the node ID of a waypoint pod:
// "waypoint~<namespace>~<gateway name>~<pod name>".
const WaypointNodePrefix = "waypoint"

// WaypointKey names a waypoint: its Gateway.
type WaypointKey struct{ Namespace, Name string }

func (k WaypointKey) String() string { return k.Namespace + "/" + k.Name }

// WaypointNodeID is the node ID a pod of waypoint k subscribes as.
func WaypointNodeID(k WaypointKey, pod string) string {
	return strings.Join([]string{WaypointNodePrefix, k.Namespace, k.Name, pod}, "~")
}

// ParseWaypointNodeID splits a waypoint pod's node ID.
func ParseWaypointNodeID(id string) (WaypointKey, string, error) {
	parts := strings.Split(id, "~")
	if len(parts) != 4 || parts[0] != WaypointNodePrefix || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return WaypointKey{}, "", fmt.Errorf("node ID %q is not of the form %s~<namespace>~<gateway name>~<pod name>", id, WaypointNodePrefix)
	}
	return WaypointKey{parts[1], parts[2]}, parts[3], nil
}

// WaypointConfig is the Envoy configuration of one waypoint. Every resource must have passed
// its ValidateAll(); the server does not modify them.
type WaypointConfig struct {
	Listener  *listenerv3.Listener // nil: none
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}

// waypointSnapshot is the newest configuration of a waypoint.
type waypointSnapshot struct {
	cfg       *WaypointConfig // what snap holds, for proxyless gRPC nodes
	snap      *cachev3.Snapshot
	version   string
	digest    uint64
	resources int
	pushedAt  time.Time
}

func (s *Server) waypointMetrics() {
	s.m.wpushes = prometheus.NewCounter(prometheus.CounterOpts{Name: "weft_controller_xds_waypoint_pushes_total", Help: "Waypoint configurations that changed and were set in the cache."})
	s.m.waypoints = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "weft_controller_xds_connected_waypoints", Help: "Waypoint pods with an open xDS stream."}, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := 0
		for _, st := range s.wstatuses {
			if st.Streams > 0 {
				n++
			}
		}
		return float64(n)
	})
	s.m.wacks = prometheus.NewCounter(prometheus.CounterOpts{Name: "weft_controller_xds_waypoint_acks_total", Help: "Responses accepted by waypoints."})
	s.m.wnacks = prometheus.NewCounter(prometheus.CounterOpts{Name: "weft_controller_xds_waypoint_nacks_total", Help: "Responses rejected by waypoints."})
	s.m.wackDelay = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "weft_controller_xds_waypoint_push_to_ack_seconds", Help: "Time from a waypoint push to the waypoint's ACK of it.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)})
}

// authorizeWaypoint checks that peer may subscribe as pod of waypoint k: it runs as the
// Gateway's service account (the deployer names it after the Gateway) in its namespace, from
// a token bound to that pod, and the Gateway is a waypoint with a configuration. s.mu is held.
func (s *Server) authorizeWaypoint(peer Peer, k WaypointKey, pod string) error {
	if peer.Namespace != k.Namespace || peer.ServiceAccount != k.Name {
		return status.Errorf(codes.PermissionDenied, "%s may not subscribe as a pod of waypoint %s: only its service account %s/%s may", peer, k, k.Namespace, k.Name)
	}
	if peer.Pod != pod {
		return status.Errorf(codes.PermissionDenied, "%s may not subscribe as pod %s/%s: the node ID must name the pod its token is bound to", peer, k.Namespace, pod)
	}
	if s.wconfigs[k] == nil {
		return status.Errorf(codes.PermissionDenied, "Gateway %s is not a waypoint (gatewayClassName istio-waypoint, one HBONE listener on port 15008) known to the controller", k)
	}
	return nil
}

// wstatus returns the status of waypoint pod node, creating it. s.mu is held.
func (s *Server) wstatus(node string, k WaypointKey) *NodeStatus {
	st := s.wstatuses[node]
	if st == nil {
		st = &NodeStatus{Node: node, Waypoint: k.String()}
		s.wstatuses[node] = st
	}
	return st
}

// PushWaypoints makes cfgs the configuration of every waypoint: a waypoint whose resources
// changed gets a new snapshot, set for each of its connected pods; an unchanged one is left
// alone; the pods of a waypoint no longer in cfgs get an empty configuration.
func (s *Server) PushWaypoints(ctx context.Context, cfgs map[WaypointKey]*WaypointConfig) {
	now := time.Now()
	s.mu.Lock()
	s.wversion++
	version := "w" + strconv.FormatUint(s.wversion, 10)
	changed := map[WaypointKey]bool{}
	for k, cfg := range cfgs {
		res := waypointResources(cfg)
		d := resourcesDigest(res)
		if old := s.wconfigs[k]; old != nil && old.digest == d {
			continue
		}
		snap, err := cachev3.NewSnapshot(version, res)
		if err != nil { // not expected: the types are the four known ones
			s.log.Error("waypoint snapshot", "waypoint", k.String(), "err", err)
			continue
		}
		n := 0
		for _, rs := range res {
			n += len(rs)
		}
		if cfg == nil {
			cfg = &WaypointConfig{}
		}
		s.wconfigs[k] = &waypointSnapshot{cfg: cfg, snap: snap, version: version, digest: d, resources: n, pushedAt: now}
		changed[k] = true
		s.m.wpushes.Inc()
	}
	for k := range s.wconfigs {
		if cfgs[k] == nil {
			delete(s.wconfigs, k)
			changed[k] = true
		}
	}
	grpcNodes := s.grpcNodesOf(changed)
	type set struct {
		node string
		snap *cachev3.Snapshot
	}
	var sets []set
	var clear []string
	for node, st := range s.wstatuses {
		k, _, _ := ParseWaypointNodeID(node)
		if st.Streams == 0 { // gone: a pod that comes back gets its snapshot when it subscribes
			delete(s.wstatuses, node)
			delete(s.wdigests, node)
			clear = append(clear, node)
			continue
		}
		ws := s.wconfigs[k]
		if ws == nil { // the waypoint is gone: its pods lose their configuration
			if s.wdigests[node] != 0 || st.Pushed == "" {
				empty, _ := cachev3.NewSnapshot(version, nil)
				st.Pushed, st.PushedAt, st.Resources = version, now, 0
				s.wdigests[node] = 0
				sets = append(sets, set{node, empty})
			}
			continue
		}
		if s.wdigests[node] == ws.digest && st.Pushed != "" {
			continue
		}
		st.Pushed, st.PushedAt, st.Resources = ws.version, ws.pushedAt, ws.resources
		s.wdigests[node] = ws.digest
		sets = append(sets, set{node, ws.snap})
	}
	s.mu.Unlock()
	for _, n := range clear {
		s.cache.ClearSnapshot(n)
	}
	for _, st := range sets {
		if err := s.cache.SetSnapshot(ctx, st.node, st.snap); err != nil {
			s.log.Error("set waypoint snapshot", "node", st.node, "err", err)
		}
	}
	for _, n := range grpcNodes {
		s.serveGRPC(ctx, n)
	}
}

// serveWaypoint sets the newest snapshot of waypoint k for a pod that just subscribed as node.
func (s *Server) serveWaypoint(ctx context.Context, node string, k WaypointKey) {
	s.mu.Lock()
	ws := s.wconfigs[k]
	st := s.wstatuses[node]
	if ws == nil || st == nil || (st.Pushed != "" && s.wdigests[node] == ws.digest) {
		s.mu.Unlock()
		return
	}
	st.Pushed, st.PushedAt, st.Resources = ws.version, ws.pushedAt, ws.resources
	s.wdigests[node] = ws.digest
	s.mu.Unlock()
	if err := s.cache.SetSnapshot(ctx, node, ws.snap); err != nil {
		s.log.Error("set waypoint snapshot", "node", node, "err", err)
	}
}

// WaypointStatuses returns where every connected waypoint pod's configuration stands.
func (s *Server) WaypointStatuses() []NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedStatuses(s.wstatuses)
}

// WaypointConfigs returns the names of the waypoints with a configuration and its version.
func (s *Server) WaypointConfigs() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.wconfigs))
	for k, ws := range s.wconfigs {
		out[k.String()] = ws.version
	}
	return out
}

func waypointResources(cfg *WaypointConfig) map[resource.Type][]types.Resource {
	res := map[resource.Type][]types.Resource{
		resource.ListenerType: nil, resource.RouteType: nil, resource.ClusterType: nil, resource.EndpointType: nil,
	}
	if cfg == nil {
		return res
	}
	if cfg.Listener != nil {
		res[resource.ListenerType] = []types.Resource{cfg.Listener}
	}
	for _, r := range cfg.Routes {
		res[resource.RouteType] = append(res[resource.RouteType], r)
	}
	for _, c := range cfg.Clusters {
		res[resource.ClusterType] = append(res[resource.ClusterType], c)
	}
	for _, e := range cfg.Endpoints {
		res[resource.EndpointType] = append(res[resource.EndpointType], e)
	}
	return res
}

// resourcesDigest sums a hash of every resource's type, name and deterministic encoding.
// Never zero (zero marks "no configuration" in wdigests).
func resourcesDigest(res map[resource.Type][]types.Resource) uint64 {
	sum := uint64(1)
	opts := proto.MarshalOptions{Deterministic: true}
	for typ, rs := range res {
		for _, r := range rs {
			b, err := opts.Marshal(r)
			if err != nil {
				b = []byte(err.Error()) // never equal to a real encoding's hash in practice
			}
			sum += fnv64a(fnv64a(fnv64a(fnv64a(fnvOffset, typ), "\x00"), cachev3.GetResourceName(r)+"\x00"), string(b))
		}
	}
	if sum == 0 {
		sum = 1
	}
	return sum
}
