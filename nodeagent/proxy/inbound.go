package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/weftmesh/weft/nodeagent/admin"
	"github.com/weftmesh/weft/nodeagent/hbone"
	"github.com/weftmesh/weft/nodeagent/podnet"
	"github.com/weftmesh/weft/nodeagent/state"
)

// inboundPlain handles a plaintext connection steered to 15006: its local address is where the
// client was going (pod IP:port).
func (p *Proxy) inboundPlain(ctx context.Context, pod *Pod, c net.Conn) {
	defer c.Close()
	snap, w, ok := p.workload(pod)
	if !ok {
		return
	}
	dst, client := addrOf(c.LocalAddr()), addrOf(c.RemoteAddr())
	src, _ := snap.WorkloadByIP(client.Addr().Unmap())
	conn := Conn{Reporter: admin.ReporterDestination, Source: src, Destination: w, Security: admin.SecurityNone}
	switch snap.InboundMode(w, dst.Port()) {
	case state.ModeStrict:
		p.d.Logger.Info("plaintext refused: STRICT mTLS", "pod", pod.UID, "from", client, "port", dst.Port())
		p.d.Metrics.Denied(admin.Inbound, admin.DenyStrictPlaintext)
		return
	case state.ModeDisable:
		p.d.Metrics.Passthrough(admin.Inbound, admin.PassthroughMTLSDisabled)
	default:
		p.d.Metrics.Passthrough(admin.Inbound, admin.PassthroughPermissive)
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
func (p *Proxy) deliverLocal(ctx context.Context, dstPod *Pod, target, srcAddr netip.AddrPort, c net.Conn, conn Conn) {
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
	return podnet.Dial(ctx, pod.NetNS, d, "tcp", netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()).String())
}

func hasAddr(w *state.Workload, a netip.Addr) bool {
	for _, wa := range w.Addresses {
		if wa == a.Unmap() {
			return true
		}
	}
	return false
}
