// Package hbone implements HBONE, the HTTP-Based Overlay Network Environment of Istio ambient
// mode, as ztunnel speaks it: every proxied TCP connection is one HTTP/2 CONNECT stream over a
// mutual TLS 1.3 connection between workload identities.
//
// The wire format follows ztunnel: TLS 1.3 only, ALPN "h2", no SNI, no session resumption,
// ECDSA P-256 workload certificates with exactly one SPIFFE URI SAN. The client checks that the
// server presents one of the expected identities; the server checks that the client's chain
// verifies and that its identity is in the server's trust domain, and leaves who may call to
// policy. The CONNECT request carries :authority (the destination ip:port, or the service
// VIP:port when going through a waypoint), forwarded: for="<source ip:port>" and a W3C baggage
// header describing the source workload. The server answers 200 once the upstream connection is
// up, 400 for anything but a well-formed CONNECT to an ip:port, 401 when policy denies and 503
// when the upstream cannot be reached.
//
// [Pool] is the client: it keeps HTTP/2 connections per (source identity, destination
// identities, dial address, source IP), opens one stream per [Pool.Dial], and returns the stream
// as a [net.Conn] ([*Stream]). [Server] is the inbound side that the node agent runs inside
// every pod's network namespace on port 15008: its Handler relays each stream to an upstream
// connection. A waypoint sets Terminate instead and serves HTTP on the stream itself.
//
// HTTP/2 is this package's own, built on golang.org/x/net/http2's Framer and hpack, and
// speaks to any HTTP/2 peer (ztunnel, net/http's client and server): it carries only what HBONE
// needs — CONNECT streams, DATA, flow control, SETTINGS, PING, RST_STREAM and GOAWAY. Both
// sides announce a 4 MiB stream window, a 16 MiB connection window and accept 1 MiB frames, as
// ztunnel does, return window as the application consumes data, and respect the peer's windows,
// SETTINGS_MAX_FRAME_SIZE and SETTINGS_MAX_CONCURRENT_STREAMS. Each direction of a stream ends
// independently, as TCP half-close does and as ztunnel (hyper's h2) does: END_STREAM ends only
// the sender's direction, the other keeps flowing until it ends too, and the stream is gone once
// both have ended or either side reset it (RST_STREAM, which aborts the upstream connection).
// So when the upstream closes its side first, the client reads EOF and may still send, and its
// data and its own EOF reach the upstream. Connections send PINGs when idle and close when
// unanswered; Server.Shutdown sends GOAWAY and drains.
package hbone

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Port is the inbound HBONE port of every workload.
const Port = 15008

// Flow-control and framing sizes, as ztunnel sets them.
const (
	StreamWindow     = 4 << 20  // per-stream receive window (HTTP2_STREAM_WINDOW_SIZE)
	ConnectionWindow = 16 << 20 // per-connection receive window (HTTP2_CONNECTION_WINDOW_SIZE)
	MaxFrameSize     = 1 << 20  // largest frame we accept (HTTP2_FRAME_SIZE)
)

// Defaults of Pool and Server.
const (
	DefaultMaxStreamsPerConn = 100 // pool: streams per connection (ztunnel POOL_MAX_STREAMS_PER_CONNECTION)
	DefaultServerMaxStreams  = 200 // server: SETTINGS_MAX_CONCURRENT_STREAMS (ztunnel)
	DefaultKeepAliveInterval = 10 * time.Second
	DefaultKeepAliveTimeout  = 20 * time.Second
	DefaultIdleTimeout       = 5 * time.Minute // pool: release unused connections (POOL_UNUSED_RELEASE_TIMEOUT)
	DefaultHandshakeTimeout  = 10 * time.Second
)

// Certificates supplies the workload certificates a tunnel endpoint presents and the trust
// bundle it verifies peers with. *identity.Manager implements it.
type Certificates interface {
	// Get returns a valid SVID for id.
	Get(ctx context.Context, id spiffeid.ID) (*x509svid.SVID, error)
	// Bundle returns the trust bundle, following rotations.
	Bundle() x509bundle.Source
}

// Request describes one tunnelled TCP connection.
type Request struct {
	// Source is the identity of the workload that opens the connection; its SVID is presented.
	Source spiffeid.ID
	// Destination lists the identities the server may present; at least one is required.
	Destination []spiffeid.ID
	// Addr is where to connect: the destination pod's IP and port 15008, or a waypoint.
	Addr netip.AddrPort
	// Authority is the :authority of the CONNECT request: the destination ip:port, or the
	// service VIP:port when Addr is a waypoint.
	Authority netip.AddrPort
	// ForwardedFor is the address of the original client, sent as forwarded: for="ip:port".
	// Zero means no forwarded header. Its IP is part of the pool key, as in ztunnel.
	ForwardedFor netip.AddrPort
	// ForwardedHost, when set with ForwardedFor, is sent as the host= parameter of forwarded:
	// the service hostname the client addressed, which the destination uses in metrics.
	ForwardedHost string
	// Baggage describes the source workload.
	Baggage Baggage
}

// Baggage is the source workload's description carried in the W3C baggage header, with the keys
// ztunnel uses. Empty fields are left out.
type Baggage struct {
	Cluster        string // k8s.cluster.name
	Namespace      string // k8s.namespace.name
	WorkloadKind   string // <kind> of k8s.<kind>.name: deployment, cronjob, pod, job...
	WorkloadName   string // k8s.<kind>.name
	ServiceName    string // service.name (the canonical service)
	ServiceVersion string // service.version (the canonical revision)
	Region         string // cloud.region
	Zone           string // cloud.availability_zone
}

// StatusError is the error of a CONNECT that the server answered with a status other than 200:
// 400 bad request, 401 denied by policy, 503 upstream unreachable.
type StatusError struct {
	Code int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("hbone: CONNECT refused: %d %s", e.Code, http.StatusText(e.Code))
}

// Counters counts the payload bytes of one stream in each direction, from the point of view of
// the endpoint that holds it. It is safe for concurrent use and may be read while the stream is
// open, so metrics can be exported incrementally.
type Counters struct {
	sent, received atomic.Int64
}

// Sent returns the bytes sent to the peer.
func (c *Counters) Sent() int64 { return c.sent.Load() }

// Received returns the bytes received from the peer.
func (c *Counters) Received() int64 { return c.received.Load() }
