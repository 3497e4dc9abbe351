package xds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/backoff"
	"github.com/weftmesh/weft/nodeagent/config"
	"github.com/weftmesh/weft/nodeagent/state"
)

// Defaults of Options.
const (
	DefaultMinBackoff        = 100 * time.Millisecond
	DefaultMaxBackoff        = 5 * time.Second
	DefaultResetBackoffAfter = 10 * time.Second
	DefaultResyncAfterNACK   = 10 * time.Second
)

// maxMessageSize bounds one response. The first response of a stream carries every resource
// of the node (thousands of workloads make a few MiB, beyond gRPC's default 4 MiB).
const maxMessageSize = 64 << 20

// wildcard subscribes to every resource of a type.
const wildcard = "*"

// Options configures a Source. Only Node is required.
type Options struct {
	// Node is the node's name, sent as the xDS node id.
	Node string
	// Cluster is sent as the xDS node cluster; optional.
	Cluster string
	// MinBackoff and MaxBackoff bound the jittered exponential back-off between streams;
	// zero means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// ResetBackoffAfter: a stream that delivered a response and then stayed up this long
	// resets the back-off, so that its end is retried after MinBackoff. Zero means
	// DefaultResetBackoffAfter.
	ResetBackoffAfter time.Duration
	// ResyncAfterNACK: a stream whose rejected resources no later response settled is ended
	// after this long and a new one opened with the versions held, so that the server resends
	// what the agent lacks — also the good resources that arrived beside a bad one, which the
	// server counts as delivered. Zero means DefaultResyncAfterNACK.
	ResyncAfterNACK time.Duration
	// Logger receives the source's logs; nil means slog.Default().
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

// Source is a [config.Source] that receives workload discovery from the controller over
// delta ADS (see the package documentation). It also reports its [config.Status].
type Source struct {
	conn   grpc.ClientConnInterface
	target string
	opts   Options
	log    *slog.Logger

	running atomic.Bool

	mu     sync.Mutex
	status config.Status
	failed string // text of the last connection error logged, to log a repeated one once
}

// NewSource returns a source that streams from conn. target names the server in Status
// ("xds:<target>") and in the logs, e.g. "weft-controller.weft-system.svc:15012".
func NewSource(conn grpc.ClientConnInterface, target string, opts Options) *Source {
	opts = opts.withDefaults()
	return &Source{
		conn:   conn,
		target: target,
		opts:   opts,
		log:    opts.Logger.With("component", "xds", "target", target),
		status: config.Status{Source: "xds:" + target, Disconnected: true},
	}
}

// Status returns where the source's configuration stands.
func (s *Source) Status() config.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Run streams workload discovery until ctx is done, when it returns nil; it delivers a
// snapshot when the first response arrives and whenever a response changes the resources.
// A broken stream is reopened after a back-off, and the last good snapshot stays in force
// meanwhile. Run returns an error only when it cannot start: Options.Node is empty, or Run is
// already running.
func (s *Source) Run(ctx context.Context, apply func(*state.Snapshot) error) error {
	if s.opts.Node == "" {
		return errors.New("xds: Options.Node is empty; set the node's name")
	}
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("xds: the source is already running")
	}
	defer s.running.Store(false)

	sy := &syncState{held: make(map[string]resource), pending: make(map[string]bool)}
	bo := backoff.Backoff{Min: s.opts.MinBackoff, Max: s.opts.MaxBackoff}
	for {
		up, err := s.stream(ctx, sy, apply)
		if ctx.Err() != nil {
			return nil
		}
		if up >= s.opts.ResetBackoffAfter {
			bo.Reset()
		}
		wait := bo.Next()
		s.disconnected(err, wait, sy.applied)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// syncState is what Run keeps across streams.
type syncState struct {
	held    map[string]resource // the resources in force
	applied bool                // a snapshot has been applied
	// pending names the resources of this stream's rejected responses that no later
	// response has settled: what the server believes the agent has, and it has not.
	pending map[string]bool
}

func (sy *syncState) versions() map[string]string {
	v := make(map[string]string, len(sy.held))
	for name, r := range sy.held {
		v[name] = r.version
	}
	return v
}

// stream runs one stream until it breaks or ctx is done. up is how long it stayed up after
// its first response (zero without one).
func (s *Source) stream(ctx context.Context, sy *syncState, apply func(*state.Snapshot) error) (up time.Duration, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	client := discoveryv3.NewAggregatedDiscoveryServiceClient(s.conn)
	str, err := client.DeltaAggregatedResources(ctx, grpc.MaxCallRecvMsgSize(maxMessageSize))
	if err != nil {
		return 0, err
	}
	// The server resends what differs from the resources held, so what it believed the agent
	// had rejected on an earlier stream is settled on this one.
	clear(sy.pending)
	err = str.Send(&discoveryv3.DeltaDiscoveryRequest{
		Node:                    &corev3.Node{Id: s.opts.Node, Cluster: s.opts.Cluster},
		TypeUrl:                 api.AddressType,
		ResourceNamesSubscribe:  []string{wildcard},
		InitialResourceVersions: sy.versions(),
	})
	if err != nil {
		return 0, streamErr(str, err)
	}
	var since time.Time // of the first response
	resync := time.AfterFunc(time.Hour, func() { cancel(errResync) })
	resync.Stop()
	defer resync.Stop()
	resyncArmed := false
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
		first := since.IsZero()
		if first {
			since = time.Now()
			s.connected(len(sy.held))
		}
		req := s.handle(resp, sy, apply, first)
		if err := str.Send(req); err != nil {
			return time.Since(since), streamErr(str, err)
		}
		switch {
		case len(sy.pending) > 0 && !resyncArmed: // from the first unsettled rejection
			resync.Reset(s.opts.ResyncAfterNACK)
			resyncArmed = true
		case len(sy.pending) == 0 && resyncArmed:
			resync.Stop()
			resyncArmed = false
		}
	}
}

// errResync ends a stream on purpose after a rejection (Options.ResyncAfterNACK).
var errResync = errors.New("resynchronising after a rejected configuration")

// streamErr returns why a stream broke: Send reports io.EOF and leaves the status to Recv,
// and Recv's io.EOF is a stream the server ended without an error.
func streamErr(str grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse], err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := str.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
			return rerr
		}
		return errors.New("the server ended the stream")
	}
	return err
}

// handle applies one response and returns the ACK or the NACK to send.
func (s *Source) handle(resp *discoveryv3.DeltaDiscoveryResponse, sy *syncState, apply func(*state.Snapshot) error, first bool) *discoveryv3.DeltaDiscoveryRequest {
	version := cmp.Or(resp.GetSystemVersionInfo(), resp.GetNonce())
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: api.AddressType, ResponseNonce: resp.GetNonce()}

	d, err := prepare(resp, sy.held, version, !sy.applied)
	if err == nil && d.snap != nil {
		if aerr := apply(d.snap); aerr != nil {
			err = fmt.Errorf("rejected by the agent: %w", aerr)
		}
	}
	if err != nil {
		for _, name := range d.touched {
			sy.pending[name] = true
		}
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		s.rejected(version, resp.GetNonce(), err)
		return req
	}
	sy.held = d.next
	for _, name := range d.touched {
		delete(sy.pending, name)
	}
	if d.snap != nil {
		sy.applied = true
	}
	s.accepted(version, d, len(sy.pending) == 0, first)
	return req
}

// delta is a response applied on a copy of the resources in force.
type delta struct {
	touched []string            // names the response updates or removes
	next    map[string]resource // the resources once it is applied
	snap    *state.Snapshot     // to deliver, nil when nothing changed
	updated int                 // resources added or changed
	removed int                 // resources removed
}

// prepare applies resp on a copy of held, converts and validates the result. The snapshot is
// built only when the response changes something, or when force is set.
func prepare(resp *discoveryv3.DeltaDiscoveryResponse, held map[string]resource, version string, force bool) (delta, error) {
	var d delta
	if resp.GetTypeUrl() != api.AddressType {
		return d, fmt.Errorf("unexpected type %q; the agent subscribes to %s only", resp.GetTypeUrl(), api.AddressType)
	}
	d.next = make(map[string]resource, len(held)+len(resp.GetResources()))
	for name, r := range held {
		d.next[name] = r
	}
	for _, name := range removedNames(resp) {
		d.touched = append(d.touched, name)
		if _, ok := d.next[name]; ok {
			delete(d.next, name)
			d.removed++
		}
	}
	var errs Errors
	for _, r := range resp.GetResources() {
		name := cmp.Or(r.GetName(), r.GetResourceName().GetName())
		d.touched = append(d.touched, name)
		res, err := decodeResource(name, r)
		if err != nil {
			var re Errors
			if errors.As(err, &re) {
				errs = append(errs, re...)
			} else {
				errs = append(errs, &ResourceError{Kind: KindResource, Name: name, Detail: err.Error()})
			}
			continue
		}
		if old, ok := held[name]; !ok || old.version == "" || old.version != res.version {
			d.updated++
		}
		d.next[name] = res
	}
	if len(errs) > 0 {
		return d, errs
	}
	if d.updated == 0 && d.removed == 0 && !force {
		return d, nil
	}
	snap, err := buildSnapshot(version, d.next)
	if err != nil {
		return d, err
	}
	d.snap = snap
	return d, nil
}

// removedNames lists the names of the resources that a response removes.
func removedNames(resp *discoveryv3.DeltaDiscoveryResponse) []string {
	names := slices.Clip(resp.GetRemovedResources())
	for _, rn := range resp.GetRemovedResourceNames() {
		names = append(names, rn.GetName())
	}
	return names
}

var _ interface {
	config.Source
	config.StatusReporter
} = (*Source)(nil)
