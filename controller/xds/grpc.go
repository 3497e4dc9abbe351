package xds

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/controller/grpcxds"
)

// GRPCNodePrefix starts the node ID of a proxyless gRPC pod (a gRPC xDS client or server):
// "grpc~<namespace>~<waypoint gateway name>~<pod name>". Such a node is served over
// state-of-the-world ADS (the only variant gRPC speaks), and only such a node is: it receives
// the configuration of the named waypoint of its own namespace shaped by controller/grpcxds.
const GRPCNodePrefix = "grpc"

// GRPCNodeID is the node ID pod subscribes as to receive waypoint k's configuration.
func GRPCNodeID(k WaypointKey, pod string) string {
	return strings.Join([]string{GRPCNodePrefix, k.Namespace, k.Name, pod}, "~")
}

// ParseGRPCNodeID splits a proxyless gRPC pod's node ID.
func ParseGRPCNodeID(id string) (WaypointKey, string, error) {
	parts := strings.Split(id, "~")
	if len(parts) != 4 || parts[0] != GRPCNodePrefix || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return WaypointKey{}, "", fmt.Errorf("node ID %q is not of the form %s~<namespace>~<waypoint name>~<pod name>", id, GRPCNodePrefix)
	}
	return WaypointKey{parts[1], parts[2]}, parts[3], nil
}

// grpcNode is a proxyless gRPC pod with at least one open stream.
type grpcNode struct {
	key     WaypointKey
	servers map[string]bool // server listener names asked for while connected
	gen     uint64          // snapshots set
	status  *NodeStatus
}

// muxCache sends state-of-the-world watches (proxyless gRPC nodes) to one snapshot cache
// and delta watches (agents, waypoints) to the other. The state-of-the-world cache is not
// in ADS mode: a gRPC client asks for some of a waypoint's listeners and clusters, and
// go-control-plane's ADS mode answers only requests naming every resource of the snapshot.
type muxCache struct {
	delta, sotw cachev3.SnapshotCache
}

func (m muxCache) CreateWatch(r *cachev3.Request, s cachev3.Subscription, c chan cachev3.Response) (func(), error) {
	return m.sotw.CreateWatch(r, s, c)
}

func (m muxCache) CreateDeltaWatch(r *cachev3.DeltaRequest, s cachev3.Subscription, c chan cachev3.DeltaResponse) (func(), error) {
	return m.delta.CreateDeltaWatch(r, s, c)
}

func (m muxCache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, status.Error(codes.Unimplemented, "REST/fetch xDS is not served")
}

func (s *Server) onSotwOpen(ctx context.Context, id int64, _ string) error {
	peer, err := s.opts.Authenticate(ctx)
	if err != nil {
		s.log.Warn("xds stream refused", "stream", id, "err", err)
		return err
	}
	if peer.Node != "" {
		return status.Errorf(codes.Unimplemented, "%s: workload discovery is served over delta ADS only (DeltaAggregatedResources)", peer)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams[id] = &stream{peer: peer, sent: map[string]sent{}}
	return nil
}

func (s *Server) onSotwRequest(id int64, req *discovery.DiscoveryRequest) error {
	s.mu.Lock()
	st := s.streams[id]
	if st == nil {
		s.mu.Unlock()
		return status.Error(codes.Internal, "unknown stream")
	}
	nodeID := req.GetNode().GetId()
	first := !st.counted
	if first {
		key, pod, err := ParseGRPCNodeID(nodeID)
		if err == nil {
			err = s.authorizeGRPC(st.peer, key, pod)
		} else {
			err = status.Errorf(codes.PermissionDenied, "state-of-the-world ADS is served to proxyless gRPC pods only (node agents and waypoints use delta ADS): %v", err)
		}
		if err != nil {
			s.mu.Unlock()
			s.log.Warn("xds stream refused", "stream", id, "caller", st.peer.String(), "node", nodeID, "err", err)
			return err
		}
		st.node, st.grpc, st.counted = nodeID, &key, true
		gn := s.gnodes[nodeID]
		if gn == nil {
			gn = &grpcNode{key: key, servers: map[string]bool{}, status: &NodeStatus{Node: nodeID, Waypoint: key.String()}}
			s.gnodes[nodeID] = gn
		}
		gn.status.Streams++
		if gn.status.Streams == 1 {
			gn.status.ConnectedSince = time.Now()
		}
		s.log.Info("proxyless gRPC client connected", "node", nodeID, "stream", id)
	} else if req.GetNode() != nil && nodeID != st.node {
		s.mu.Unlock()
		return status.Errorf(codes.PermissionDenied, "node %q: the stream was opened as node %q; a stream acts for one node", nodeID, st.node)
	}
	if !slices.Contains(WaypointTypes, req.GetTypeUrl()) {
		s.mu.Unlock()
		return status.Errorf(codes.InvalidArgument, "type %q is not served to proxyless gRPC clients; subscribe to %s", req.GetTypeUrl(), strings.Join(WaypointTypes, ", "))
	}
	gn := s.gnodes[st.node]
	if sr, ok := st.sent[req.GetResponseNonce()]; ok {
		delete(st.sent, req.GetResponseNonce())
		now := time.Now()
		ns := gn.status
		if req.GetErrorDetail() != nil {
			ns.Nacked, ns.NackType, ns.NackError, ns.NackedAt = sr.version, sr.typeURL, req.GetErrorDetail().GetMessage(), now
			s.log.Warn("proxyless gRPC client rejected configuration", "node", st.node, "version", sr.version, "type", sr.typeURL, "reason", ns.NackError)
		} else {
			ns.Acked, ns.AckedAt = sr.version, now
			if ns.NackType == "" || ns.NackType == sr.typeURL {
				ns.Nacked, ns.NackType, ns.NackError = "", "", ""
			}
		}
	}
	grown := false
	if req.GetTypeUrl() == resource.ListenerType {
		for _, name := range req.GetResourceNames() {
			if strings.HasPrefix(name, grpcxds.ServerListenerPrefix) && !gn.servers[name] {
				gn.servers[name] = true
				grown = true
			}
		}
	}
	node := st.node
	s.mu.Unlock()
	if first || grown {
		// Before the cache sees the request: a server listener asked for is in the snapshot
		// that answers it.
		s.serveGRPC(s.ctx, node)
	}
	return nil
}

// authorizeGRPC checks that peer may subscribe as pod, a proxyless gRPC client of waypoint
// k: a pod of the waypoint's namespace (any service account: it receives what the
// waypoint of its own namespace receives), from a token bound to that pod. s.mu is held.
func (s *Server) authorizeGRPC(peer Peer, k WaypointKey, pod string) error {
	if peer.Namespace != k.Namespace {
		return status.Errorf(codes.PermissionDenied, "%s may not receive the configuration of waypoint %s: only pods of namespace %s may", peer, k, k.Namespace)
	}
	if peer.Pod == "" || peer.Pod != pod {
		return status.Errorf(codes.PermissionDenied, "%s may not subscribe as pod %s/%s: the node ID must name the pod its token is bound to", peer, k.Namespace, pod)
	}
	if s.wconfigs[k] == nil {
		return status.Errorf(codes.PermissionDenied, "Gateway %s is not a waypoint (gatewayClassName istio-waypoint, one HBONE listener on port 15008) known to the controller", k)
	}
	return nil
}

// serveGRPC sets the snapshot of proxyless gRPC node: its waypoint's configuration shaped
// for gRPC, with the server listeners it asked for; an empty one when the waypoint is gone or
// its configuration cannot be shaped (then gRPC fails its calls rather than running without
// the waypoint's policies).
func (s *Server) serveGRPC(ctx context.Context, node string) {
	s.gmu.Lock() // snapshots of a node are set in the order they are built
	defer s.gmu.Unlock()
	s.mu.Lock()
	gn := s.gnodes[node]
	if gn == nil {
		s.mu.Unlock()
		return
	}
	ws := s.wconfigs[gn.key]
	servers := make([]string, 0, len(gn.servers))
	for n := range gn.servers {
		servers = append(servers, n)
	}
	slices.Sort(servers)
	gn.gen++
	version := "none"
	var in grpcxds.Input
	if ws != nil {
		version = ws.version
		in = grpcxds.Input{Listener: ws.cfg.Listener, Routes: ws.cfg.Routes, Clusters: ws.cfg.Clusters, Endpoints: ws.cfg.Endpoints}
	}
	version += ".g" + strconv.FormatUint(gn.gen, 10)
	s.mu.Unlock()

	res := map[resource.Type][]types.Resource{resource.ListenerType: nil, resource.RouteType: nil, resource.ClusterType: nil, resource.EndpointType: nil}
	n := 0
	if ws != nil {
		out, err := grpcxds.Build(in, servers)
		if err != nil {
			s.log.Error("the waypoint configuration cannot be shaped for proxyless gRPC; serving it nothing", "node", node, "waypoint", gn.key.String(), "err", err)
		} else {
			for _, l := range out.Listeners {
				res[resource.ListenerType] = append(res[resource.ListenerType], l)
			}
			for _, r := range out.Routes {
				res[resource.RouteType] = append(res[resource.RouteType], r)
			}
			for _, c := range out.Clusters {
				res[resource.ClusterType] = append(res[resource.ClusterType], c)
			}
			for _, e := range out.Endpoints {
				res[resource.EndpointType] = append(res[resource.EndpointType], e)
			}
			n = len(out.Listeners) + len(out.Routes) + len(out.Clusters) + len(out.Endpoints)
		}
	}
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		s.log.Error("proxyless gRPC snapshot", "node", node, "err", err)
		return
	}
	s.mu.Lock()
	gn.status.Pushed, gn.status.PushedAt, gn.status.Resources = version, time.Now(), n
	s.mu.Unlock()
	if err := s.gcache.SetSnapshot(ctx, node, snap); err != nil {
		s.log.Error("set proxyless gRPC snapshot", "node", node, "err", err)
	}
}

func (s *Server) onSotwResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	if st == nil || !st.counted || st.grpc == nil {
		return
	}
	st.sent[resp.GetNonce()] = sent{resp.GetVersionInfo(), resp.GetTypeUrl()}
	if gn := s.gnodes[st.node]; gn != nil {
		gn.status.Sent, gn.status.SentAt = resp.GetVersionInfo(), time.Now()
	}
}

func (s *Server) onSotwClosed(id int64, _ *core.Node) {
	s.mu.Lock()
	st := s.streams[id]
	delete(s.streams, id)
	if st == nil || !st.counted || st.grpc == nil {
		s.mu.Unlock()
		return
	}
	gn := s.gnodes[st.node]
	gone := false
	if gn != nil {
		gn.status.Streams--
		if gn.status.Streams <= 0 {
			delete(s.gnodes, st.node)
			gone = true
		}
	}
	s.mu.Unlock()
	s.log.Info("proxyless gRPC client disconnected", "node", st.node, "stream", id)
	if gone {
		s.gcache.ClearSnapshot(st.node)
	}
}

// GRPCStatuses returns where every connected proxyless gRPC pod's configuration stands.
func (s *Server) GRPCStatuses() []NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]*NodeStatus, len(s.gnodes))
	for n, gn := range s.gnodes {
		m[n] = gn.status
	}
	return sortedStatuses(m)
}

// grpcNodesOf returns the connected proxyless gRPC nodes of the waypoints in keys. s.mu is
// held.
func (s *Server) grpcNodesOf(keys map[WaypointKey]bool) []string {
	var out []string
	for n, gn := range s.gnodes {
		if keys[gn.key] {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
