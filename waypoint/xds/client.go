package xds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/internal/backoff"
)

// Defaults of Options.
const (
	DefaultMinBackoff        = 100 * time.Millisecond
	DefaultMaxBackoff        = 5 * time.Second
	DefaultResetBackoffAfter = 10 * time.Second
	DefaultResyncAfterNACK   = 10 * time.Second
)

// maxMessageSize bounds one response (a first response carries every resource of a type).
const maxMessageSize = 64 << 20

// Types are the type URLs the client subscribes to, in the order it subscribes.
var Types = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType}

// Resources is a complete configuration: every resource held, each slice sorted by name.
// The caller must not modify the messages.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	// Versions are, by type URL, the versions of the responses the set was built from.
	Versions map[string]string
}

// Options configures a Client. Only Node is required.
type Options struct {
	// Node is the node ID: "waypoint~<namespace>~<gateway name>~<pod name>".
	Node string
	// Cluster and Metadata are sent as the node's cluster and metadata; optional.
	Cluster  string
	Metadata *structpb.Struct
	// MinBackoff and MaxBackoff bound the jittered exponential back-off between streams;
	// zero means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// ResetBackoffAfter: a stream that delivered a response and stayed up this long resets
	// the back-off. Zero means DefaultResetBackoffAfter.
	ResetBackoffAfter time.Duration
	// ResyncAfterNACK: a stream whose rejected resources no later response settled is ended
	// after this long and a new one opened with the versions held. Zero means
	// DefaultResyncAfterNACK.
	ResyncAfterNACK time.Duration
	// Logger receives the client's logs; nil means slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.ResetBackoffAfter <= 0 {
		o.ResetBackoffAfter = DefaultResetBackoffAfter
	}
	if o.ResyncAfterNACK <= 0 {
		o.ResyncAfterNACK = DefaultResyncAfterNACK
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Status is where the client's configuration stands, for the waypoint's admin page.
type Status struct {
	Target string `json:"target"`
	Node   string `json:"node"`
	// Connected: a stream is up and delivered a response; since when.
	Connected      bool      `json:"connected"`
	ConnectedSince time.Time `json:"connectedSince,omitzero"`
	// Applied is when a set was last applied; Versions and Resources (by type URL) describe
	// the set in force.
	Applied   time.Time         `json:"applied,omitzero"`
	Versions  map[string]string `json:"versions,omitempty"`
	Resources map[string]int    `json:"resources,omitempty"`
	// LastACK is when a response was last accepted.
	LastACK time.Time `json:"lastAck,omitzero"`
	// Rejected is the version and type of the last response NACKed, when, and why; cleared
	// once no rejection is left unsettled.
	Rejected     string    `json:"rejected,omitempty"`
	RejectedType string    `json:"rejectedType,omitempty"`
	LastNACK     time.Time `json:"lastNack,omitzero"`
	// LastError is the last rejection or connection error, empty when settled and connected.
	LastError string `json:"lastError,omitempty"`
}

// Client receives the waypoint's Envoy configuration over delta ADS.
type Client struct {
	conn   grpc.ClientConnInterface
	target string
	opts   Options
	log    *slog.Logger

	running atomic.Bool

	mu     sync.Mutex
	status Status
	failed string // the last connection error logged, to log a repeated one once
}

// NewClient returns a client that streams from conn; target names the server in Status and
// in the logs, e.g. "weft-controller.weft-system.svc:15012".
func NewClient(conn grpc.ClientConnInterface, target string, opts Options) *Client {
	opts = opts.withDefaults()
	return &Client{
		conn:   conn,
		target: target,
		opts:   opts,
		log:    opts.Logger.With("component", "xds", "target", target),
		status: Status{Target: target, Node: opts.Node},
	}
}

// Status returns a copy of where the configuration stands.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.status
	st.Versions = maps.Clone(st.Versions)
	st.Resources = maps.Clone(st.Resources)
	return st
}

// held is one resource in force.
type held struct {
	version string
	msg     proto.Message
}

// syncState is what Run keeps across streams.
type syncState struct {
	held     map[string]map[string]held // by type URL, then name
	versions map[string]string          // by type URL: version of the last accepted response
	answered map[string]bool            // types that have answered (for the first apply)
	applied  bool                       // a set has been applied
	// pending names, by type, the resources of rejected responses that no later response
	// settled: what the server believes the waypoint has, and it has not.
	pending map[string]map[string]bool
}

func newSyncState() *syncState {
	sy := &syncState{held: map[string]map[string]held{}, versions: map[string]string{}, answered: map[string]bool{}, pending: map[string]map[string]bool{}}
	for _, t := range Types {
		sy.held[t] = map[string]held{}
		sy.pending[t] = map[string]bool{}
	}
	return sy
}

func (sy *syncState) unsettled() bool {
	for _, p := range sy.pending {
		if len(p) > 0 {
			return true
		}
	}
	return false
}

// Run streams the configuration until ctx is done, when it returns nil. apply is called with
// the complete set whenever an accepted response changes it; an error from apply NACKs the
// response. Run returns an error only when it cannot start: Options.Node is empty, or Run is
// already running.
func (c *Client) Run(ctx context.Context, apply func(*Resources) error) error {
	if c.opts.Node == "" {
		return errors.New("xds: Options.Node is empty; set waypoint~<namespace>~<gateway>~<pod>")
	}
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("xds: the client is already running")
	}
	defer c.running.Store(false)
	sy := newSyncState()
	bo := backoff.Backoff{Min: c.opts.MinBackoff, Max: c.opts.MaxBackoff}
	for {
		up, err := c.stream(ctx, sy, apply)
		if ctx.Err() != nil {
			return nil
		}
		if up >= c.opts.ResetBackoffAfter {
			bo.Reset()
		}
		wait := bo.Next()
		c.disconnected(err, wait, sy.applied)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// errResync ends a stream on purpose after a rejection (Options.ResyncAfterNACK).
var errResync = errors.New("resynchronising after a rejected configuration")

// stream runs one stream until it breaks or ctx is done; up is how long it stayed up after
// its first response.
func (c *Client) stream(ctx context.Context, sy *syncState, apply func(*Resources) error) (time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	str, err := discoveryv3.NewAggregatedDiscoveryServiceClient(c.conn).DeltaAggregatedResources(ctx, grpc.MaxCallRecvMsgSize(maxMessageSize))
	if err != nil {
		return 0, err
	}
	for _, p := range sy.pending { // the server resends what differs from what is held
		clear(p)
	}
	for i, typ := range Types {
		req := &discoveryv3.DeltaDiscoveryRequest{
			TypeUrl:                 typ,
			ResourceNamesSubscribe:  []string{"*"},
			InitialResourceVersions: versions(sy.held[typ]),
		}
		if i == 0 {
			req.Node = &corev3.Node{Id: c.opts.Node, Cluster: c.opts.Cluster, Metadata: c.opts.Metadata}
		}
		if err := str.Send(req); err != nil {
			return 0, streamErr(str, err)
		}
	}
	var since time.Time
	resync := time.AfterFunc(time.Hour, func() { cancel(errResync) })
	resync.Stop()
	defer resync.Stop()
	armed := false
	for {
		resp, err := str.Recv()
		if err != nil {
			if errors.Is(context.Cause(ctx), errResync) {
				err = errResync
			}
			if since.IsZero() {
				return 0, streamErr(str, err)
			}
			return time.Since(since), streamErr(str, err)
		}
		if since.IsZero() {
			since = time.Now()
			c.connected(since)
		}
		if err := str.Send(c.handle(resp, sy, apply)); err != nil {
			return time.Since(since), streamErr(str, err)
		}
		switch u := sy.unsettled(); {
		case u && !armed:
			resync.Reset(c.opts.ResyncAfterNACK)
			armed = true
		case !u && armed:
			resync.Stop()
			armed = false
		}
	}
}

func versions(h map[string]held) map[string]string {
	v := make(map[string]string, len(h))
	for name, r := range h {
		if r.version != "" {
			v[name] = r.version
		}
	}
	return v
}

// streamErr returns why a stream broke: Send reports io.EOF and leaves the status to Recv.
func streamErr(str grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse], err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := str.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
			return rerr
		}
		return errors.New("the server ended the stream")
	}
	return err
}

// handle applies one response and returns its ACK or NACK.
func (c *Client) handle(resp *discoveryv3.DeltaDiscoveryResponse, sy *syncState, apply func(*Resources) error) *discoveryv3.DeltaDiscoveryRequest {
	typ := resp.GetTypeUrl()
	version := cmp.Or(resp.GetSystemVersionInfo(), resp.GetNonce())
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}
	next, touched, changed, err := prepare(resp, sy.held[typ])
	if err == nil && (changed || !sy.applied) {
		answered := maps.Clone(sy.answered)
		answered[typ] = true
		if sy.applied || len(answered) == len(Types) {
			set := assemble(sy.held, typ, next, sy.versions, version)
			if aerr := apply(set); aerr != nil {
				err = fmt.Errorf("rejected by the waypoint: %w", aerr)
			} else {
				sy.applied = true
				c.applied(set)
			}
		}
	}
	if err != nil {
		if sy.pending[typ] != nil {
			for _, n := range touched {
				sy.pending[typ][n] = true
			}
		}
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		c.rejected(typ, version, resp.GetNonce(), err)
		return req
	}
	sy.held[typ] = next
	sy.versions[typ] = version
	sy.answered[typ] = true
	for _, n := range touched {
		delete(sy.pending[typ], n)
	}
	c.accepted(typ, version, changed, !sy.unsettled())
	return req
}

// prepare applies resp on a copy of cur: every resource decoded and validated.
func prepare(resp *discoveryv3.DeltaDiscoveryResponse, cur map[string]held) (next map[string]held, touched []string, changed bool, err error) {
	typ := resp.GetTypeUrl()
	if !slices.Contains(Types, typ) {
		return nil, nil, false, fmt.Errorf("type %q was not subscribed to; the waypoint takes %s", typ, strings.Join(Types, ", "))
	}
	next = maps.Clone(cur)
	for _, name := range resp.GetRemovedResources() {
		touched = append(touched, name)
		if _, ok := next[name]; ok {
			delete(next, name)
			changed = true
		}
	}
	var errs []error
	for _, r := range resp.GetResources() {
		name := r.GetName()
		touched = append(touched, name)
		msg, err := decode(typ, r)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", shortType(typ), name, err))
			continue
		}
		if old, ok := cur[name]; !ok || old.version == "" || old.version != r.GetVersion() || !proto.Equal(old.msg, msg) {
			changed = true
		}
		next[name] = held{version: r.GetVersion(), msg: msg}
	}
	if len(errs) > 0 {
		return nil, touched, false, errors.Join(errs...)
	}
	return next, touched, changed, nil
}

// decode unmarshals and validates one resource of type typ sent as name.
func decode(typ string, r *discoveryv3.Resource) (proto.Message, error) {
	if r.GetName() == "" {
		return nil, errors.New("the resource has no name")
	}
	if r.GetResource() == nil {
		return nil, errors.New("the resource has no body")
	}
	if got := r.GetResource().GetTypeUrl(); got != typ {
		return nil, fmt.Errorf("the body is a %s, want %s", got, typ)
	}
	var msg interface {
		proto.Message
		ValidateAll() error
	}
	switch typ {
	case resource.ListenerType:
		msg = &listenerv3.Listener{}
	case resource.RouteType:
		msg = &routev3.RouteConfiguration{}
	case resource.ClusterType:
		msg = &clusterv3.Cluster{}
	case resource.EndpointType:
		msg = &endpointv3.ClusterLoadAssignment{}
	}
	if err := r.GetResource().UnmarshalTo(msg); err != nil {
		return nil, fmt.Errorf("cannot unmarshal: %w", err)
	}
	if err := msg.ValidateAll(); err != nil {
		return nil, fmt.Errorf("invalid: %w", err)
	}
	var own string
	switch m := msg.(type) {
	case *listenerv3.Listener:
		own = m.GetName()
	case *routev3.RouteConfiguration:
		own = m.GetName()
	case *clusterv3.Cluster:
		own = m.GetName()
	case *endpointv3.ClusterLoadAssignment:
		own = m.GetClusterName()
	}
	if own != r.GetName() {
		return nil, fmt.Errorf("sent as %q but named %q inside", r.GetName(), own)
	}
	return msg, nil
}

// assemble returns the complete set: held, with next in place of typ's resources.
func assemble(h map[string]map[string]held, typ string, next map[string]held, vers map[string]string, version string) *Resources {
	pick := func(t string) map[string]held {
		if t == typ {
			return next
		}
		return h[t]
	}
	set := &Resources{Versions: maps.Clone(vers)}
	set.Versions[typ] = version
	for _, name := range slices.Sorted(maps.Keys(pick(resource.ListenerType))) {
		set.Listeners = append(set.Listeners, pick(resource.ListenerType)[name].msg.(*listenerv3.Listener))
	}
	for _, name := range slices.Sorted(maps.Keys(pick(resource.RouteType))) {
		set.Routes = append(set.Routes, pick(resource.RouteType)[name].msg.(*routev3.RouteConfiguration))
	}
	for _, name := range slices.Sorted(maps.Keys(pick(resource.ClusterType))) {
		set.Clusters = append(set.Clusters, pick(resource.ClusterType)[name].msg.(*clusterv3.Cluster))
	}
	for _, name := range slices.Sorted(maps.Keys(pick(resource.EndpointType))) {
		set.Endpoints = append(set.Endpoints, pick(resource.EndpointType)[name].msg.(*endpointv3.ClusterLoadAssignment))
	}
	return set
}

// shortType is the message name of a type URL ("Cluster").
func shortType(typ string) string { return typ[strings.LastIndex(typ, ".")+1:] }

// The transitions: status and one log line each (per-response success at debug level).

func (c *Client) connected(at time.Time) {
	c.mu.Lock()
	c.status.Connected, c.status.ConnectedSince = true, at
	c.failed = ""
	c.mu.Unlock()
	c.log.Info("xds connected", "node", c.opts.Node)
}

func (c *Client) disconnected(err error, retryIn time.Duration, applied bool) {
	keep := "; the last good configuration stays in force"
	if !applied {
		keep = "; no configuration received yet"
	}
	c.mu.Lock()
	was := c.status.Connected
	c.status.Connected, c.status.ConnectedSince = false, time.Time{}
	c.status.LastError = fmt.Sprintf("xds: %s: %v%s", c.target, err, keep)
	repeated := !was && c.failed == err.Error()
	c.failed = err.Error()
	c.mu.Unlock()
	switch {
	case was:
		c.log.Warn("xds disconnected; retrying", "err", err, "retry_in", retryIn)
	case !repeated:
		c.log.Warn("xds cannot connect; retrying", "err", err, "retry_in", retryIn)
	default:
		c.log.Debug("xds cannot connect; retrying", "err", err, "retry_in", retryIn)
	}
}

func (c *Client) applied(set *Resources) {
	c.mu.Lock()
	c.status.Applied = time.Now()
	c.status.Versions = maps.Clone(set.Versions)
	c.status.Resources = map[string]int{
		resource.ListenerType: len(set.Listeners), resource.RouteType: len(set.Routes),
		resource.ClusterType: len(set.Clusters), resource.EndpointType: len(set.Endpoints),
	}
	c.mu.Unlock()
	c.log.Info("xds config applied", "listeners", len(set.Listeners), "routes", len(set.Routes), "clusters", len(set.Clusters), "endpoints", len(set.Endpoints))
}

func (c *Client) accepted(typ, version string, changed, settled bool) {
	c.mu.Lock()
	c.status.LastACK = time.Now()
	if settled {
		c.status.Rejected, c.status.RejectedType, c.status.LastError = "", "", ""
	}
	c.mu.Unlock()
	c.log.Debug("xds response accepted", "type", shortType(typ), "version", version, "changed", changed)
}

func (c *Client) rejected(typ, version, nonce string, err error) {
	c.mu.Lock()
	c.status.Rejected, c.status.RejectedType, c.status.LastNACK = version, typ, time.Now()
	c.status.LastError = fmt.Sprintf("xds: %s version %s: %v", shortType(typ), version, err)
	c.mu.Unlock()
	c.log.Warn("xds config rejected (NACK)", "type", shortType(typ), "version", version, "nonce", nonce, "err", err)
}
