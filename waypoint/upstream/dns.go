package upstream

import (
	"context"
	"net/netip"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// startDNS resolves the cluster's hostnames now and every dns_refresh_rate, until drain.
// Requests wait for the first resolution (Envoy's cluster warming).
func (c *Cluster) startDNS(r Resolver) {
	c.resolved = make(chan struct{})
	c.stop = make(chan struct{})
	go c.resolveLoop(r, c.stop)
}

func (c *Cluster) resolveLoop(r Resolver, stop chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-stop
		cancel()
	}()
	last := map[string][]netip.Addr{} // a name's last good answer, kept when a lookup fails
	first := true
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-stop:
			if first {
				close(c.resolved)
			}
			return
		case <-t.C:
		}
		var specs []endpointSpec
		for _, s := range c.cfg.static {
			if s.host == "" {
				specs = append(specs, s)
				continue
			}
			addrs, err := lookup(ctx, r, c.cfg.dnsFamily, s.host)
			if err != nil || len(addrs) == 0 {
				if ctx.Err() != nil {
					break
				}
				c.log.Warn("dns resolution failed; keeping the previous addresses", "host", s.host, "error", err)
				addrs = last[s.host]
			} else {
				last[s.host] = addrs
			}
			if c.cfg.discovery == discoveryLogicalDNS && len(addrs) > 1 {
				addrs = addrs[:1]
			}
			for _, a := range addrs {
				x := s
				x.ep.Addr = netip.AddrPortFrom(a.Unmap(), s.port)
				specs = append(specs, x)
			}
		}
		if ctx.Err() == nil {
			c.setEndpoints(specs)
		}
		if first {
			first = false
			close(c.resolved)
		}
		t.Reset(c.cfg.dnsRefresh)
	}
}

// lookup resolves host with Envoy's dns_lookup_family: AUTO prefers IPv6 and falls back
// to IPv4, V4_PREFERRED the reverse, ALL takes both.
func lookup(ctx context.Context, r Resolver, family clusterv3.Cluster_DnsLookupFamily, host string) ([]netip.Addr, error) {
	try := func(networks ...string) ([]netip.Addr, error) {
		var err error
		for _, n := range networks {
			var addrs []netip.Addr
			addrs, err = r.LookupNetIP(ctx, n, host)
			if err == nil && len(addrs) > 0 {
				return addrs, nil
			}
		}
		return nil, err
	}
	switch family {
	case clusterv3.Cluster_V4_ONLY:
		return try("ip4")
	case clusterv3.Cluster_V6_ONLY:
		return try("ip6")
	case clusterv3.Cluster_V4_PREFERRED:
		return try("ip4", "ip6")
	case clusterv3.Cluster_ALL:
		return try("ip")
	default:
		return try("ip6", "ip4")
	}
}
