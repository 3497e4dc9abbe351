package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/weftmesh/weft/internal/hbone"
	"github.com/weftmesh/weft/nodeagent/admin"
	"github.com/weftmesh/weft/nodeagent/authz"
	"github.com/weftmesh/weft/nodeagent/state"
)

// inboundPlain handles a plaintext connection steered to 15006: its local address is where the
// client was going (pod IP:port), or, after an iptables REDIRECT, Deps.ConnDst tells.
func (p *Proxy) inboundPlain(ctx context.Context, pod *Pod, c net.Conn) {
	defer c.Close()
	snap, w, ok := p.workload(pod)
	if !ok {
		return
	}
	dst, client := addrOf(c.LocalAddr()), addrOf(c.RemoteAddr())
	if p.d.ConnDst != nil {
		var err error
		if dst, err = p.d.ConnDst(c); err != nil {
			p.d.Logger.Warn("no original destination", "pod", pod.UID, "dir", "inbound", "peer", client, "err", err)
			return
		}
	}
	src, _ := snap.WorkloadByIP(client.Addr().Unmap())
	conn := Conn{Reporter: admin.ReporterDestination, Source: src, Destination: w, Security: admin.SecurityNone}
	switch snap.InboundMode(w, dst.Port()) {
	case state.ModeStrict:
		p.d.Logger.Info("plaintext refused: STRICT mTLS", "pod", pod.UID, "from", client, "port", dst.Port())
		p.d.Metrics.Denied(admin.Inbound, admin.DenyStrictPlaintext)
		abort(c)
		return
	case state.ModeDisable:
		p.d.Metrics.Passthrough(admin.Inbound, admin.PassthroughMTLSDisabled)
	default:
		p.d.Metrics.Passthrough(admin.Inbound, admin.PassthroughPermissive)
	}
	if !p.authorize(snap, w, spiffeid.ID{}, client, dst) {
		abort(c)
		return
	}
	up, err := p.dialApp(ctx, pod, client, dst)
	if err != nil {
		p.failed(conn, admin.FlagConnectFailure)
		return
	}
	defer up.Close()
	relay(c, up, p.opened(conn))
}

// inboundHBONE answers a CONNECT arriving on the pod's 15008.
func (p *Proxy) inboundHBONE(ctx context.Context, pod *Pod, in *hbone.Inbound) (net.Conn, int, error) {
	snap, w, ok := p.workload(pod)
	if !ok {
		return nil, http.StatusServiceUnavailable, errors.New("workload no longer served here")
	}
	if !hasAddr(w, in.Authority.Addr()) {
		return nil, http.StatusBadRequest, errors.New("authority is not this workload's address")
	}
	src, _ := snap.WorkloadByIP(in.RemoteAddr.Addr().Unmap())
	conn := Conn{Reporter: admin.ReporterDestination, Source: src, SourceID: in.PeerID, Destination: w, Security: admin.SecurityMutualTLS}
	if !p.authorize(snap, w, in.PeerID, in.RemoteAddr, in.Authority) {
		return nil, http.StatusUnauthorized, errors.New("denied by authorization policy")
	}
	up, err := p.dialApp(ctx, pod, in.RemoteAddr, in.Authority)
	if err != nil {
		p.failed(conn, admin.FlagConnectFailure)
		return nil, http.StatusServiceUnavailable, err
	}
	p.d.Logger.Debug("hbone inbound", "pod", pod.UID, "peer", in.PeerID.String(), "authority", in.Authority)
	pod.streams.Store(in, p.opened(conn))
	return up, http.StatusOK, nil
}

// deliverLocal hands a same-node connection to the destination pod's app (at target), with the
// source identity known as on the HBONE path: it is one of this agent's workloads.
func (p *Proxy) deliverLocal(ctx context.Context, snap *state.Snapshot, dstPod *Pod, target, srcAddr netip.AddrPort, c net.Conn, conn Conn) {
	if !p.authorize(snap, conn.Destination, conn.SourceID, srcAddr, target) {
		abort(c) // as over HBONE after a 401
		return
	}
	up, err := p.dialApp(ctx, dstPod, srcAddr, target)
	if err != nil {
		p.failed(conn, admin.FlagConnectFailure)
		return
	}
	defer up.Close()
	relay(c, up, p.opened(conn))
}

// dialApp connects to the pod's app at dst from inside the pod, with the client's address as
// source, so the app sees the real peer.
func (p *Proxy) dialApp(ctx context.Context, pod *Pod, client, dst netip.AddrPort) (net.Conn, error) {
	d := &net.Dialer{
		Control:   p.d.ControlUpstream,
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(client.Addr().Unmap(), 0)),
		Timeout:   5 * time.Second,
	}
	return pod.ns.Dial(ctx, d, "tcp", netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()).String())
}

// authorize applies the AuthorizationPolicies of the destination workload w to a connection
// from client (with the mTLS identity peer; zero for plaintext) to dst. Every decision is
// counted; a denial is logged with the policy that decided.
func (p *Proxy) authorize(snap *state.Snapshot, w *state.Workload, peer spiffeid.ID, client, dst netip.AddrPort) bool {
	policies := snap.PoliciesFor(w)
	if len(policies) == 0 {
		return true
	}
	c := authz.Conn{SourceIP: client.Addr().Unmap(), DestinationIP: dst.Addr().Unmap(), DestinationPort: dst.Port()}
	if !peer.IsZero() {
		c.SourcePrincipal = peer.TrustDomain().Name() + peer.Path()
		c.SourceNamespace = authz.PrincipalNamespace(c.SourcePrincipal)
	}
	d := authz.Evaluate(policies, c)
	for _, name := range d.Audited {
		p.d.Logger.Info("audit", "policy", name, "workload", w.Namespace+"/"+w.Name, "from", client, "principal", c.SourcePrincipal, "port", dst.Port())
	}
	if d.Allowed {
		p.d.Metrics.Authorization(true, d.Policy)
		p.d.Logger.Debug("authorized", "policy", d.Policy, "workload", w.Namespace+"/"+w.Name, "from", client, "principal", c.SourcePrincipal, "port", dst.Port())
		return true
	}
	policy := d.Policy
	if policy == "" { // no ALLOW policy matched: they decided together
		policy = allowPolicies(policies)
	}
	p.d.Logger.Info("connection denied", "policy", policy, "reason", d.Reason(), "workload", w.Namespace+"/"+w.Name,
		"from", client, "principal", c.SourcePrincipal, "port", dst.Port())
	p.d.Metrics.Authorization(false, policy)
	p.d.Metrics.Denied(admin.Inbound, admin.DenyAuthorizationPolicy)
	return false
}

// allowPolicies names the ALLOW policies among policies, "ns/a,ns/b".
func allowPolicies(policies []*state.Authorization) string {
	var names []string
	for _, a := range policies {
		if a.Action == state.ActionAllow {
			names = append(names, a.Key())
		}
	}
	return strings.Join(names, ",")
}

// abort closes c with a TCP reset (SO_LINGER 0): a refused client sees "connection reset", as
// with ztunnel, rather than an orderly end it could mistake for an empty answer.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func hasAddr(w *state.Workload, a netip.Addr) bool {
	for _, wa := range w.Addresses {
		if wa == a.Unmap() {
			return true
		}
	}
	return false
}
