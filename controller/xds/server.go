// Package xds serves, over delta ADS with envoyproxy/go-control-plane, workload discovery to
// node agents and standard Envoy xDS (Listener, RouteConfiguration, Cluster,
// ClusterLoadAssignment) to waypoints: one snapshot per node agent and per waypoint pod in a
// snapshot cache, so a client receives only the resources that changed since what it holds. It
// authenticates every stream (an agent may subscribe only as its own node, a waypoint pod only
// as itself, "waypoint~<namespace>~<gateway>~<pod>", running as its Gateway's service
// account), and tracks what was pushed, sent, ACKed and NACKed per client for the debug pages
// and metrics.
//
// Proxyless gRPC pods ("grpc~<namespace>~<waypoint>~<pod>", see GRPCNodeID) are served over
// state-of-the-world ADS, the only variant gRPC speaks, and they alone are: a pod of the
// waypoint's namespace, from a token bound to it, receives that waypoint's configuration
// shaped by controller/grpcxds (client listeners per "<host>:<port>", a server listener per
// listening address it asks for; routes, clusters and endpoints unchanged).
package xds

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/translate"
)

// Peer is the authenticated caller of a stream.
type Peer struct {
	// Node is set for a node agent: the node whose workload discovery it may receive.
	Node string
	// Namespace, ServiceAccount and Pod identify a caller that is not a node agent; it may
	// subscribe as a waypoint pod (see WaypointNodeID) when they match it.
	Namespace, ServiceAccount, Pod string
}

func (p Peer) String() string {
	if p.Node != "" {
		return "the node agent of " + p.Node
	}
	s := p.Namespace + "/" + p.ServiceAccount
	if p.Pod != "" {
		s += " (pod " + p.Namespace + "/" + p.Pod + ")"
	}
	return s
}

// Authenticate returns the caller of a stream, or an error (a gRPC status) when it may
// receive nothing.
type Authenticate func(ctx context.Context) (Peer, error)

// Options configures a Server.
type Options struct {
	// Authenticate checks every stream; required.
	Authenticate Authenticate
	// NewNode is called when an agent subscribes for a node that has no snapshot yet, or a
	// waypoint pod for a waypoint without configuration, so the caller can push; optional.
	NewNode func(node string)
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Server is the workload-discovery server.
type Server struct {
	opts  Options
	ctx   context.Context
	log   *slog.Logger
	cache cachev3.SnapshotCache // agents and waypoints (delta)
	// gcache holds the snapshots of proxyless gRPC nodes (state of the world, see grpc.go);
	// gmu orders the snapshots set for one of them.
	gcache cachev3.SnapshotCache
	gmu    sync.Mutex
	xds    serverv3.Server

	mu      sync.Mutex
	version uint64
	nodes   map[string]*NodeStatus // by node
	digests map[string]uint64      // by node: digest of the resources of its newest snapshot
	streams map[int64]*stream
	mesh    *translate.Mesh

	wversion  uint64
	wconfigs  map[WaypointKey]*waypointSnapshot // the newest configuration of each waypoint
	wstatuses map[string]*NodeStatus            // by waypoint node ID
	wdigests  map[string]uint64                 // by waypoint node ID: digest of its snapshot
	gnodes    map[string]*grpcNode              // proxyless gRPC nodes by node ID

	m metrics
}

type stream struct {
	peer     Peer
	node     string       // the node ID the stream acts for, set by its first request
	waypoint *WaypointKey // set for a waypoint pod's stream
	grpc     *WaypointKey // set for a proxyless gRPC pod's stream (state of the world)
	counted  bool         // the stream counts in its node's Streams (after its first request)
	sent     map[string]sent
}

// sent is a response sent, by nonce.
type sent struct{ version, typeURL string }

type metrics struct {
	pushes   prometheus.Counter
	pushTime prometheus.Histogram
	agents   prometheus.GaugeFunc
	acks     prometheus.Counter
	nacks    prometheus.Counter
	ackDelay prometheus.Histogram

	wpushes   prometheus.Counter
	waypoints prometheus.GaugeFunc
	wacks     prometheus.Counter
	wnacks    prometheus.Counter
	wackDelay prometheus.Histogram
}

// New returns a Server; register it on a gRPC server with Register.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.Authenticate == nil {
		return nil, fmt.Errorf("xds: Options.Authenticate is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, ctx: ctx, log: opts.Logger, nodes: map[string]*NodeStatus{}, digests: map[string]uint64{}, streams: map[int64]*stream{},
		wconfigs: map[WaypointKey]*waypointSnapshot{}, wstatuses: map[string]*NodeStatus{}, wdigests: map[string]uint64{}, gnodes: map[string]*grpcNode{}}
	s.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, cacheLogger{opts.Logger})
	s.gcache = cachev3.NewSnapshotCache(false, cachev3.IDHash{}, cacheLogger{opts.Logger})
	s.xds = serverv3.NewServer(ctx, muxCache{delta: s.cache, sotw: s.gcache}, serverv3.CallbackFuncs{
		DeltaStreamOpenFunc:     s.onOpen,
		DeltaStreamClosedFunc:   s.onClosed,
		StreamDeltaRequestFunc:  s.onRequest,
		StreamDeltaResponseFunc: s.onResponse,
		// State of the world: proxyless gRPC pods only (grpc.go).
		StreamOpenFunc:     s.onSotwOpen,
		StreamClosedFunc:   s.onSotwClosed,
		StreamRequestFunc:  s.onSotwRequest,
		StreamResponseFunc: s.onSotwResponse,
	})
	s.m = metrics{
		pushes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "weft_controller_xds_pushes_total", Help: "Snapshots pushed to the cache (one per change batch)."}),
		pushTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "weft_controller_xds_push_seconds", Help: "Time to compute and set the per-node snapshots of one push.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		agents: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "weft_controller_xds_connected_agents", Help: "Node agents with an open xDS stream."}, func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			n := 0
			for _, st := range s.nodes {
				if st.Streams > 0 {
					n++
				}
			}
			return float64(n)
		}),
		acks:     prometheus.NewCounter(prometheus.CounterOpts{Name: "weft_controller_xds_acks_total", Help: "Responses accepted by agents."}),
		nacks:    prometheus.NewCounter(prometheus.CounterOpts{Name: "weft_controller_xds_nacks_total", Help: "Responses rejected by agents."}),
		ackDelay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "weft_controller_xds_push_to_ack_seconds", Help: "Time from a push to the agent's ACK of it.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
	}
	s.waypointMetrics()
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.m.pushes, s.m.pushTime, s.m.agents, s.m.acks, s.m.nacks, s.m.ackDelay,
			s.m.wpushes, s.m.waypoints, s.m.wacks, s.m.wnacks, s.m.wackDelay} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// Register registers the ADS service on g.
func (s *Server) Register(g *grpc.Server) {
	discovery.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
}

// Push sets a snapshot of m for each of nodes and for every node with a connected agent.
// Agents receive what changed for them.
func (s *Server) Push(ctx context.Context, m *translate.Mesh, nodes []string) {
	start := time.Now()
	s.mu.Lock()
	s.version++
	version := strconv.FormatUint(s.version, 10)
	s.mesh = m
	targets := map[string]bool{}
	for _, n := range nodes {
		targets[n] = true
	}
	for n, st := range s.nodes {
		if st.Streams > 0 {
			targets[n] = true
		}
	}
	for n, st := range s.nodes { // nodes gone from the cluster with no agent left
		if !targets[n] {
			s.cache.ClearSnapshot(n)
			delete(s.digests, n)
			if st.Streams == 0 {
				delete(s.nodes, n)
			}
		}
	}
	s.mu.Unlock()
	// A node receives the shared resources and its own: the digest of the union is the sum of
	// theirs, so the shared part is hashed once per push, not once per node.
	shared := m.Shared()
	sharedDigest := digest(shared)
	for n := range targets {
		local := m.Local(n)
		d := sharedDigest + digest(local)
		s.mu.Lock()
		st := s.node(n)
		unchanged := st.Pushed != "" && s.digests[n] == d
		if !unchanged {
			st.Pushed, st.PushedAt, st.Resources = version, start, len(shared)+len(local)
			s.digests[n] = d
		}
		s.mu.Unlock()
		if unchanged {
			continue // the node's agent has (or is being sent) exactly this
		}
		if err := s.cache.SetSnapshot(ctx, n, newSnapshot(version, shared, local)); err != nil {
			s.log.Error("set snapshot", "node", n, "err", err)
		}
	}
	s.m.pushes.Inc()
	s.m.pushTime.Observe(time.Since(start).Seconds())
}

// digest sums a hash of every resource name and version: equal for equal sets, in any order,
// and the digest of a union of disjoint sets is the sum of theirs.
func digest(rs map[string]translate.Resource) uint64 {
	var sum uint64
	for name, r := range rs {
		sum += fnv64a(fnv64a(fnv64a(fnvOffset, name), "\x00"), r.Version)
	}
	return sum
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnv64a continues an FNV-1a hash over s without allocating.
func fnv64a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// Mesh returns the last mesh pushed, nil before the first push.
func (s *Server) Mesh() *translate.Mesh {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mesh
}

// Statuses returns where every node's configuration stands.
func (s *Server) Statuses() []NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedStatuses(s.nodes)
}

// node returns the status of node, creating it. s.mu is held.
func (s *Server) node(n string) *NodeStatus {
	st := s.nodes[n]
	if st == nil {
		st = &NodeStatus{Node: n}
		s.nodes[n] = st
	}
	return st
}

func (s *Server) onOpen(ctx context.Context, id int64, typeURL string) error {
	peer, err := s.opts.Authenticate(ctx)
	if err != nil {
		s.log.Warn("xds stream refused", "stream", id, "err", err)
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams[id] = &stream{peer: peer, sent: map[string]sent{}}
	return nil
}

func (s *Server) onClosed(id int64, _ *core.Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	delete(s.streams, id)
	if st == nil || !st.counted {
		return
	}
	if st.waypoint != nil {
		if ns := s.wstatuses[st.node]; ns != nil {
			ns.Streams--
			s.log.Info("waypoint disconnected", "node", st.node, "stream", id)
		}
		return
	}
	if ns := s.nodes[st.node]; ns != nil {
		ns.Streams--
		s.log.Info("agent disconnected", "node", st.node, "stream", id)
	}
}

func (s *Server) onRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	s.mu.Lock()
	st := s.streams[id]
	if st == nil {
		s.mu.Unlock()
		return status.Error(codes.Internal, "unknown stream")
	}
	if !st.counted { // first request of the stream: who it acts for
		if err := s.bind(id, st, req.GetNode().GetId()); err != nil {
			s.mu.Unlock()
			s.log.Warn("xds stream refused", "stream", id, "caller", st.peer.String(), "node", req.GetNode().GetId(), "err", err)
			return err
		}
	} else if req.GetNode() != nil && req.GetNode().GetId() != st.node {
		s.mu.Unlock()
		return status.Errorf(codes.PermissionDenied, "node %q: the stream was opened as node %q; a stream acts for one node", req.GetNode().GetId(), st.node)
	}
	if err := checkType(st, req.GetTypeUrl()); err != nil {
		s.mu.Unlock()
		return err
	}
	var ns *NodeStatus
	acks, nacks, ackDelay, kind := s.m.acks, s.m.nacks, s.m.ackDelay, "agent"
	if st.waypoint != nil {
		ns, acks, nacks, ackDelay, kind = s.wstatus(st.node, *st.waypoint), s.m.wacks, s.m.wnacks, s.m.wackDelay, "waypoint"
	} else {
		ns = s.node(st.node)
	}
	newNode, newWaypoint := false, false
	if !st.counted {
		st.counted = true
		ns.Streams++
		if ns.Streams == 1 {
			ns.ConnectedSince = time.Now()
		}
		newNode = ns.Pushed == "" && st.waypoint == nil
		newWaypoint = st.waypoint != nil
		s.log.Info(kind+" connected", "node", st.node, "stream", id, "known", len(req.GetInitialResourceVersions()))
	} else if sr, ok := st.sent[req.GetResponseNonce()]; ok {
		delete(st.sent, req.GetResponseNonce())
		now := time.Now()
		if req.GetErrorDetail() != nil {
			ns.Nacked, ns.NackType, ns.NackError, ns.NackedAt = sr.version, sr.typeURL, req.GetErrorDetail().GetMessage(), now
			nacks.Inc()
			s.log.Warn(kind+" rejected configuration", "node", st.node, "version", sr.version, "type", sr.typeURL, "reason", ns.NackError)
		} else {
			ns.Acked, ns.AckedAt = sr.version, now
			if ns.NackType == "" || ns.NackType == sr.typeURL { // the rejected type is now accepted
				ns.Nacked, ns.NackType, ns.NackError = "", "", ""
			}
			acks.Inc()
			if sr.version == ns.Pushed {
				ackDelay.Observe(now.Sub(ns.PushedAt).Seconds())
			}
		}
	}
	node, wp := st.node, st.waypoint
	s.mu.Unlock()
	if newNode && s.opts.NewNode != nil {
		s.opts.NewNode(node)
	}
	if newWaypoint {
		s.serveWaypoint(s.ctx, node, *wp)
	}
	return nil
}

// bind decides which node the stream st acts for from the node ID of its first request.
// s.mu is held.
func (s *Server) bind(id int64, st *stream, nodeID string) error {
	if st.peer.Node != "" { // a node agent
		if nodeID != "" && nodeID != st.peer.Node {
			return status.Errorf(codes.PermissionDenied, "node %q: the caller may subscribe only as node %q (its own)", nodeID, st.peer.Node)
		}
		st.node = st.peer.Node
		return nil
	}
	key, pod, err := ParseWaypointNodeID(nodeID)
	if err != nil {
		return status.Errorf(codes.PermissionDenied, "%s is not a node agent, so it may subscribe only as a waypoint pod: %v", st.peer, err)
	}
	if err := s.authorizeWaypoint(st.peer, key, pod); err != nil {
		return err
	}
	st.node, st.waypoint = nodeID, &key
	return nil
}

// checkType refuses the types a stream is not served: an agent gets workload discovery only,
// a waypoint the four Envoy types.
func checkType(st *stream, typeURL string) error {
	if st.waypoint == nil {
		if typeURL != api.AddressType {
			return status.Errorf(codes.InvalidArgument, "type %q is not served to node agents; subscribe to %s", typeURL, api.AddressType)
		}
		return nil
	}
	if !slices.Contains(WaypointTypes, typeURL) {
		return status.Errorf(codes.InvalidArgument, "type %q is not served to waypoints; subscribe to %s", typeURL, strings.Join(WaypointTypes, ", "))
	}
	return nil
}

func (s *Server) onResponse(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	if st == nil || !st.counted {
		return
	}
	st.sent[resp.GetNonce()] = sent{resp.GetSystemVersionInfo(), resp.GetTypeUrl()}
	var ns *NodeStatus
	if st.waypoint != nil {
		ns = s.wstatus(st.node, *st.waypoint)
	} else {
		ns = s.node(st.node)
	}
	ns.Sent, ns.SentAt = resp.GetSystemVersionInfo(), time.Now()
}

// cacheLogger sends go-control-plane's logs to slog at debug level (its Info is per watch).
type cacheLogger struct{ l *slog.Logger }

func (c cacheLogger) Debugf(format string, args ...any) { c.debug(format, args) }
func (c cacheLogger) Infof(format string, args ...any)  { c.debug(format, args) }
func (c cacheLogger) debug(format string, args []any) {
	if c.l.Enabled(context.Background(), slog.LevelDebug) {
		c.l.Debug("xds cache: " + fmt.Sprintf(format, args...))
	}
}
func (c cacheLogger) Warnf(format string, args ...any) {
	c.l.Warn("xds cache: " + fmt.Sprintf(format, args...))
}
func (c cacheLogger) Errorf(format string, args ...any) {
	c.l.Error("xds cache: " + fmt.Sprintf(format, args...))
}
