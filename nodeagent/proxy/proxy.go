// Package proxy is the node agent's L4 proxy. For every enrolled pod it serves three listeners
// inside the pod's network namespace:
//
//   - outbound (15001): connections the pod's apps open, redirected by the datapath. The original
//     destination decides: a mesh workload (directly or behind a Service VIP) is reached over HBONE
//     to its node's agent — or, on this node, handed over in-process with the same identity and
//     policy checks; anything else passes through in plaintext.
//   - inbound plaintext (15006): connections from outside the mesh, steered by the datapath;
//     refused when the workload's PeerAuthentication mode for the port is STRICT.
//   - inbound HBONE (15008): mTLS tunnels from other agents, terminated with the pod's own SVID.
//
// Upstream connections to the pod's apps are made from inside the pod with the client's address as
// source (IP_TRANSPARENT), so apps see the real peer, as with Istio ambient.
package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/weftmesh/weft/internal/hbone"
	"github.com/weftmesh/weft/nodeagent/admin"
	"github.com/weftmesh/weft/nodeagent/podnet"
	"github.com/weftmesh/weft/nodeagent/state"
)

// Ports of the agent's listeners inside every enrolled pod.
const (
	OutboundPort = 15001
	InboundPort  = 15006
	HBONEPort    = hbone.Port
)

// Conn describes one proxied connection for metrics.
type Conn struct {
	Reporter    admin.Reporter
	Source      *state.Workload
	SourceID    spiffeid.ID // authenticated source identity, if any
	Destination *state.Workload
	Service     *state.Service
	Security    admin.SecurityPolicy
}

// Deps are what the proxy needs from the rest of the agent.
type Deps struct {
	Node  string
	Store *state.Store
	Certs hbone.Certificates
	// OriginalDst returns where a captured outbound connection was going (datapath).
	OriginalDst func(netnsCookie uint64, peer netip.AddrPort) (netip.AddrPort, error)
	// ConnDst, when set, returns the original destination of an accepted connection from the
	// connection itself (iptables REDIRECT capture: SO_ORIGINAL_DST). It replaces OriginalDst for
	// outbound connections and the local address for inbound plaintext, which after a REDIRECT
	// is the agent's listener.
	ConnDst func(c net.Conn) (netip.AddrPort, error)
	// ControlAgent and ControlUpstream configure the agent's sockets: marked (so the datapath
	// never captures them), and marked + transparent (upstream connections to apps).
	ControlAgent    func(network, address string, c syscall.RawConn) error
	ControlUpstream func(network, address string, c syscall.RawConn) error
	Metrics         *admin.Metrics // nil records nothing
	Logger          *slog.Logger
}

// Proxy serves the enrolled pods of one node.
type Proxy struct {
	d    Deps
	pool *hbone.Pool

	mu   sync.Mutex
	pods map[string]*Pod // by workload UID
}

// New returns a proxy; Close releases its pooled HBONE connections.
func New(d Deps) (*Proxy, error) {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{d: d, pods: map[string]*Pod{}}
	pool, err := hbone.NewPool(hbone.PoolConfig{Certs: d.Certs, DialContext: p.dialFromSource, Logger: d.Logger})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p.pool = pool
	return p, nil
}

// Close closes pooled connections.
func (p *Proxy) Close() error { return p.pool.Close() }

// Evict drops pooled HBONE connections to ip (its workload changed).
func (p *Proxy) Evict(ip netip.Addr) { p.pool.Evict(ip) }

// sourceNetNS carries the source pod's namespace to dialFromSource through Pool.Dial.
type sourceNetNS struct{}

// dialFromSource opens the HBONE connection from inside the source pod, with the agent mark, so
// that its source address is the pod's (NetworkPolicy keeps working) and it is not captured.
func (p *Proxy) dialFromSource(ctx context.Context, network, addr string) (net.Conn, error) {
	ns, _ := ctx.Value(sourceNetNS{}).(*podnet.NS)
	d := &net.Dialer{Control: p.d.ControlAgent, Timeout: 10 * time.Second}
	if ns == nil {
		return d.DialContext(ctx, network, addr)
	}
	return ns.Dial(ctx, d, network, addr)
}

// pod returns the served pod of a local workload.
func (p *Proxy) pod(uid string) *Pod {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pods[uid]
}

// relay copies between the client and the upstream until both directions are done and reports
// the byte counts to closed (may be nil).
func relay(client, upstream net.Conn, closed func(toUpstream, toClient int64)) {
	toUpstream, toClient, _ := hbone.Relay(client, upstream)
	if closed != nil {
		closed(toUpstream, toClient)
	}
}

// pickIndex picks uniformly among n endpoints.
func pickIndex(n int) int { return rand.IntN(n) }
