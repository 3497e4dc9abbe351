package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/weftmesh/weft/internal/hbone"
	"github.com/weftmesh/weft/nodeagent/podnet"
	"github.com/weftmesh/weft/nodeagent/state"
)

// Pod is one enrolled workload served by the proxy: its listeners inside its network namespace.
type Pod struct {
	UID    string
	NetNS  string // path
	Cookie uint64 // netns cookie, the datapath's key
	ns     *podnet.NS

	// Inbound are the 15006 listeners; the datapath steers connections into them.
	Inbound []net.Listener

	outbound []net.Listener
	hbone    *hbone.Server
	hboneLns []net.Listener
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	streams  sync.Map // *hbone.Inbound → func(toUpstream, toClient int64), until the stream closes
}

// OpenPod opens the pod's listeners (outbound on loopback, inbound and HBONE on every address)
// inside its namespace with lc, for IPv4 and, when ipv6 is set, IPv6; Serve starts serving them.
func (p *Proxy) OpenPod(ctx context.Context, uid, netnsPath string, cookie uint64, lc net.ListenConfig, ipv6 bool) (*Pod, error) {
	ns, err := podnet.Open(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	pod := &Pod{UID: uid, NetNS: netnsPath, Cookie: cookie, ns: ns}
	open := func(dst *[]net.Listener, network, addr string) error {
		ln, err := podnet.Listen(ctx, netnsPath, lc, network, addr)
		if err != nil {
			return fmt.Errorf("proxy: listen %s in %s: %w", addr, netnsPath, err)
		}
		*dst = append(*dst, ln)
		return nil
	}
	err = errors.Join(
		open(&pod.outbound, "tcp4", fmt.Sprintf("127.0.0.1:%d", OutboundPort)),
		open(&pod.Inbound, "tcp4", fmt.Sprintf("0.0.0.0:%d", InboundPort)),
		open(&pod.hboneLns, "tcp4", fmt.Sprintf("0.0.0.0:%d", HBONEPort)),
	)
	if err == nil && ipv6 { // "tcp6" listeners are IPv6-only, beside the IPv4 ones
		err = errors.Join(
			open(&pod.outbound, "tcp6", fmt.Sprintf("[::1]:%d", OutboundPort)),
			open(&pod.Inbound, "tcp6", fmt.Sprintf("[::]:%d", InboundPort)),
			open(&pod.hboneLns, "tcp6", fmt.Sprintf("[::]:%d", HBONEPort)),
		)
	}
	if err != nil {
		pod.closeListeners()
		ns.Close()
		return nil, err
	}
	return pod, nil
}

func (pod *Pod) closeListeners() {
	for _, lns := range [][]net.Listener{pod.outbound, pod.Inbound, pod.hboneLns} {
		for _, ln := range lns {
			ln.Close()
		}
	}
}

// Serve starts serving pod until StopPod.
func (p *Proxy) Serve(pod *Pod) {
	ctx, cancel := context.WithCancel(context.Background())
	pod.cancel = cancel
	p.mu.Lock()
	p.pods[pod.UID] = pod
	p.mu.Unlock()
	snap := p.d.Store.Load()
	w, _ := snap.WorkloadByUID(pod.UID)
	pod.hbone = &hbone.Server{
		Identity: w.Identity(),
		Certs:    p.d.Certs,
		Handler: func(ctx context.Context, in *hbone.Inbound) (net.Conn, int, error) {
			return p.inboundHBONE(ctx, pod, in)
		},
		StreamClosed: func(in *hbone.Inbound) {
			if f, ok := pod.streams.LoadAndDelete(in); ok {
				f.(func(toUpstream, toClient int64))(in.Counters.Received(), in.Counters.Sent())
			}
		},
		Logger: p.d.Logger,
	}
	for _, ln := range pod.outbound {
		p.acceptLoop(ctx, pod, ln, p.outbound)
	}
	for _, ln := range pod.Inbound {
		p.acceptLoop(ctx, pod, ln, p.inboundPlain)
	}
	for _, ln := range pod.hboneLns {
		pod.wg.Add(1)
		go func() {
			defer pod.wg.Done()
			_ = pod.hbone.Serve(ln)
		}()
	}
}

// StopPod stops serving pod and closes its listeners; live connections end with it.
func (p *Proxy) StopPod(pod *Pod) {
	p.mu.Lock()
	if p.pods[pod.UID] == pod {
		delete(p.pods, pod.UID)
	}
	p.mu.Unlock()
	if pod.cancel != nil {
		pod.cancel()
	}
	if pod.hbone != nil {
		_ = pod.hbone.Close()
	}
	pod.closeListeners()
	pod.wg.Wait()
	_ = pod.ns.Close() // connections still dialling fail with podnet.ErrClosed
}

func (p *Proxy) acceptLoop(ctx context.Context, pod *Pod, ln net.Listener, handle func(context.Context, *Pod, net.Conn)) {
	pod.wg.Add(1)
	go func() {
		defer pod.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(ctx, pod, c)
		}
	}()
}

// workload returns the current state of the pod's workload.
func (p *Proxy) workload(pod *Pod) (*state.Snapshot, *state.Workload, bool) {
	snap := p.d.Store.Load()
	w, ok := snap.WorkloadByUID(pod.UID)
	return snap, w, ok
}

func addrOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
