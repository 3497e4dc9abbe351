package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/weftmesh/weft/internal/hbone"
	"github.com/weftmesh/weft/nodeagent/admin"
	"github.com/weftmesh/weft/nodeagent/state"
)

// outbound handles a connection a pod's app opened, captured to 15001.
func (p *Proxy) outbound(ctx context.Context, pod *Pod, c net.Conn) {
	defer c.Close()
	// Built only on the paths that log: With formats its attributes at once, which cost 3 % of
	// the agent's CPU at a high connection rate.
	log := func() *slog.Logger { return p.d.Logger.With("pod", pod.UID, "dir", "outbound") }
	var orig netip.AddrPort
	var err error
	if p.d.ConnDst != nil {
		orig, err = p.d.ConnDst(c)
	} else {
		orig, err = p.d.OriginalDst(pod.Cookie, addrOf(c.RemoteAddr()))
	}
	if err != nil {
		log().Warn("no original destination", "peer", c.RemoteAddr(), "err", err)
		return
	}
	snap, src, ok := p.workload(pod)
	if !ok {
		log().Warn("source workload unknown", "dst", orig)
		return
	}
	family := orig.Addr().Unmap()
	srcAddr := netip.AddrPortFrom(addrLike(src, family), addrOf(c.RemoteAddr()).Port())
	if g, svc := waypointOf(snap, orig); g != nil {
		if wp, ok := snap.Waypoint(g, pickIndex); ok {
			p.viaWaypoint(ctx, pod, src, wp, g, svc, orig, srcAddr, c)
			return
		}
		if !g.FallbackDirect {
			log().Warn("connection refused: waypoint unavailable", "waypoint", g.Name(), "dst", orig,
				"reason", "the destination's traffic must traverse its waypoint, which is missing or has no ready pod; deploy it (weftctl waypoint apply) or label the namespace "+fallbackLabel+" to bypass it")
			p.d.Metrics.Denied(admin.Outbound, admin.DenyWaypointUnavailable)
			p.failed(Conn{Reporter: admin.ReporterSource, Source: src, SourceID: src.Identity(), Service: svc, Security: admin.SecurityMutualTLS}, admin.FlagDenied)
			abort(c)
			return
		}
		log().Debug("waypoint unavailable: going direct (fallback opted into)", "waypoint", g.Name(), "dst", orig)
	}
	dst, port, svc := resolve(snap, orig)
	if dst == nil || !dst.Enrolled() {
		p.passthrough(ctx, pod, src, dst, svc, orig, c)
		return
	}
	conn := Conn{Reporter: admin.ReporterSource, Source: src, SourceID: src.Identity(), Destination: dst, Service: svc, Security: admin.SecurityMutualTLS}
	if dst.Node == p.d.Node {
		if dstPod := p.pod(dst.UID); dstPod != nil {
			// Same node: no TLS round trip, the same identity and policy checks as over HBONE.
			p.deliverLocal(ctx, snap, dstPod, netip.AddrPortFrom(addrLike(dst, family), port), srcAddr, c, conn)
			return
		}
	}
	target := netip.AddrPortFrom(addrLike(dst, family), port)
	req := hbone.Request{
		Source:       src.Identity(),
		Destination:  []spiffeid.ID{dst.Identity()},
		Addr:         netip.AddrPortFrom(target.Addr(), HBONEPort),
		Authority:    target,
		ForwardedFor: srcAddr,
		Baggage:      baggage(src),
	}
	if svc != nil {
		req.ForwardedHost = svc.Hostname
	}
	p.tunnel(ctx, pod, req, conn, c)
}

// tunnel relays c over a new HBONE stream from pod, or resets c when the stream cannot be
// opened.
func (p *Proxy) tunnel(ctx context.Context, pod *Pod, req hbone.Request, conn Conn, c net.Conn) {
	dctx, cancel := context.WithTimeout(context.WithValue(ctx, sourceNetNS{}, pod.ns), 10*time.Second)
	up, err := p.pool.Dial(dctx, req)
	cancel()
	if err != nil {
		p.d.Logger.Warn("hbone dial failed", "pod", pod.UID, "addr", req.Addr, "authority", req.Authority, "err", err)
		p.failed(conn, responseFlag(err))
		abort(c)
		return
	}
	defer up.Close()
	relay(c, up, p.opened(conn))
}

// fallbackLabel is the opt-in to bypass a missing waypoint (api.LabelWaypointFallback).
const fallbackLabel = "weft.dev/waypoint-fallback=direct"

// waypointOf returns the waypoint that a connection to orig must traverse, if any: the
// service's waypoint for a Service VIP, the workload's for a pod address, and the service it
// addressed.
func waypointOf(snap *state.Snapshot, orig netip.AddrPort) (*state.GatewayAddress, *state.Service) {
	if svc, ok := snap.ServiceByAddr(orig); ok {
		return svc.Waypoint, svc
	}
	if w, ok := snap.WorkloadByIP(orig.Addr().Unmap()); ok {
		return w.Waypoint, nil
	}
	return nil, nil
}

// viaWaypoint tunnels a connection to waypoint pod wp: :authority is the original destination
// (the service VIP:port, or the pod's address), from which the waypoint routes, and the
// waypoint's identity is verified.
func (p *Proxy) viaWaypoint(ctx context.Context, pod *Pod, src, wp *state.Workload, g *state.GatewayAddress, svc *state.Service, orig, srcAddr netip.AddrPort, c net.Conn) {
	port := g.HBONEMTLSPort
	if port == 0 {
		port = HBONEPort
	}
	req := hbone.Request{
		Source:       src.Identity(),
		Destination:  []spiffeid.ID{wp.Identity()},
		Addr:         netip.AddrPortFrom(addrLike(wp, orig.Addr().Unmap()), port),
		Authority:    orig,
		ForwardedFor: srcAddr,
		Baggage:      baggage(src),
	}
	if svc != nil {
		req.ForwardedHost = svc.Hostname
	}
	conn := Conn{Reporter: admin.ReporterSource, Source: src, SourceID: src.Identity(), Destination: wp, Service: svc, Security: admin.SecurityMutualTLS}
	p.tunnel(ctx, pod, req, conn, c)
}

// resolve finds the destination workload and port of an original destination: a Service VIP is
// load-balanced over its healthy endpoints; a pod IP is that workload.
func resolve(snap *state.Snapshot, orig netip.AddrPort) (*state.Workload, uint16, *state.Service) {
	if svc, ok := snap.ServiceByAddr(orig); ok {
		if w, port, ok := snap.PickEndpoint(svc, orig.Port(), pickIndex); ok {
			return w, port, svc
		}
		return nil, orig.Port(), svc
	}
	w, _ := snap.WorkloadByIP(orig.Addr().Unmap())
	return w, orig.Port(), nil
}

// passthrough connects to a destination outside the mesh in plaintext, from the source pod.
func (p *Proxy) passthrough(ctx context.Context, pod *Pod, src, dst *state.Workload, svc *state.Service, orig netip.AddrPort, c net.Conn) {
	conn := Conn{Reporter: admin.ReporterSource, Source: src, SourceID: src.Identity(), Destination: dst, Service: svc, Security: admin.SecurityUnknown}
	reason := admin.PassthroughNotInMesh
	if dst == nil {
		reason = admin.PassthroughUnknownDestination
	}
	p.d.Metrics.Passthrough(admin.Outbound, reason)
	d := &net.Dialer{Control: p.d.ControlAgent, Timeout: 10 * time.Second}
	up, err := pod.ns.Dial(ctx, d, "tcp", orig.String())
	if err != nil {
		p.failed(conn, admin.FlagConnectFailure)
		return
	}
	defer up.Close()
	relay(c, up, p.opened(conn))
}

// addrLike returns w's address of the same family as like (a connection to an IPv6 VIP or pod
// address stays IPv6 end to end), or its first address when it has none of that family.
func addrLike(w *state.Workload, like netip.Addr) netip.Addr {
	for _, a := range w.Addresses {
		if a.Is4() == like.Is4() {
			return a
		}
	}
	if len(w.Addresses) == 0 {
		return netip.Addr{}
	}
	return w.Addresses[0]
}

func baggage(w *state.Workload) hbone.Baggage {
	return hbone.Baggage{
		Cluster:        w.ClusterID,
		Namespace:      w.Namespace,
		WorkloadKind:   w.WorkloadType.BaggageKind(),
		WorkloadName:   w.WorkloadName,
		ServiceName:    w.CanonicalName,
		ServiceVersion: w.CanonicalRevision,
	}
}

// labels turns c into metric labels.
func labels(c Conn) *admin.Labels {
	l := &admin.Labels{Reporter: c.Reporter, SecurityPolicy: c.Security}
	if c.Source != nil {
		l.SetSource(c.Source)
	}
	if !c.SourceID.IsZero() {
		l.SourcePrincipal = c.SourceID.String()
	}
	if c.Destination != nil {
		l.SetDestination(c.Destination)
	}
	if c.Service != nil {
		l.SetDestinationService(c.Service)
	}
	return l
}

// opened counts a connection and returns what to call with its byte counts when it ends.
func (p *Proxy) opened(c Conn) func(toUpstream, toClient int64) {
	cm := p.d.Metrics.ConnOpened(labels(c))
	return func(toUpstream, toClient int64) {
		cm.BytesReceived(toUpstream)
		cm.BytesSent(toClient)
		cm.Closed(admin.FlagNone)
	}
}

// failed counts a connection that could not be established.
func (p *Proxy) failed(c Conn, flag admin.ResponseFlag) {
	p.d.Metrics.ConnOpened(labels(c)).Closed(flag)
}

// responseFlag classifies an HBONE dial failure as ztunnel's response_flags do.
func responseFlag(err error) admin.ResponseFlag {
	var se *hbone.StatusError
	if errors.As(err, &se) {
		if se.Code == 401 {
			return admin.FlagDenied
		}
		return admin.FlagConnectFailure
	}
	return admin.FlagConnectFailure
}
