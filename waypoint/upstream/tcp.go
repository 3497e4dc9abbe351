package upstream

import (
	"context"
	"fmt"
	"net"
	"sync"
)

// DialTCP opens a raw connection to an endpoint of the cluster chosen by its load balancer,
// as Envoy's tcp_proxy does: one upstream connection per downstream connection, never
// pooled or reused. The connection counts against max_connections until it is closed; the
// caller must Close it. The endpoint is returned with the connection, and on error when one
// was chosen.
//
// Circuit breaking: when max_connections connections of the cluster are open, a new one is
// refused with an *OverflowError (Limit "max_connections", upstream_cx_overflow) unless the
// chosen host has no connection at all, which always gets one (Envoy's guarantee). Envoy
// would queue such a stream as pending until a connection closes; the waypoint refuses it at
// once, so the client sees a reset instead of a stall (max_pending_requests does not apply).
//
// Outlier detection: a failed or timed-out dial (connect_timeout) is a connect failure (a
// gateway error, or a local-origin failure with split_external_local_origin_errors); a
// successful dial is a success (Envoy's LocalOriginConnectSuccessFinal, which tcp_proxy
// reports), resetting the host's consecutive-failure counts. The caller's context bounds the
// dial too; its cancellation is not counted.
//
// Errors: *OverflowError, ErrNoHealthyUpstream (wrapped), ErrClosed, *ConnectError, or the
// context's error.
func (c *Cluster) DialTCP(ctx context.Context, p Pick) (net.Conn, *Endpoint, error) {
	if c.resolved != nil {
		select {
		case <-c.resolved:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	h, err := c.pick(&p)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	if c.closed {
		h.active--
		c.mu.Unlock()
		return nil, h.ep, ErrClosed
	}
	if c.conns >= c.cfg.maxConnections {
		c.stats.connectionOverflows++
		if h.tcpConns > 0 || len(h.conns) > 0 || h.connecting > 0 {
			h.active--
			c.mu.Unlock()
			return nil, h.ep, &OverflowError{Cluster: c.cfg.name, Limit: "max_connections", Max: c.cfg.maxConnections}
		}
	}
	c.conns++
	h.connecting++
	c.mu.Unlock()

	dctx, cancel := context.WithTimeout(context.WithValue(ctx, hostKey{}, h), c.cfg.connectTimeout)
	conn, err := c.dialContext(dctx, "tcp", h.ep.Addr.String())
	cancel()

	c.mu.Lock()
	defer c.mu.Unlock()
	h.connecting--
	if err != nil {
		c.conns--
		h.active--
		if ctx.Err() != nil {
			return nil, h.ep, ctx.Err() // the client left: not the endpoint's failure
		}
		c.stats.connectFailures++
		c.recordConnectLocked(h, false)
		c.log.Debug("upstream connect failed", "endpoint", h.ep.String(), "error", err)
		return nil, h.ep, &ConnectError{Cluster: c.cfg.name, Endpoint: h.ep, Err: err}
	}
	c.stats.connectionsTotal++
	c.stats.requestsTotal++
	h.tcpConns++
	if o := c.cfg.outlier; o != nil && !h.removed {
		if o.split {
			c.recordLocalOriginLocked(h, true)
		} else {
			c.recordHTTPLocked(h, 200)
		}
	}
	return &tcpConn{Conn: conn, c: c, h: h}, h.ep, nil
}

// tcpConn is a connection opened by DialTCP; Close releases its circuit-breaker slot.
type tcpConn struct {
	net.Conn
	c    *Cluster
	h    *host
	once sync.Once
}

func (t *tcpConn) Close() error {
	err := t.Conn.Close()
	t.once.Do(func() {
		t.c.mu.Lock()
		t.c.conns--
		t.h.active--
		t.h.tcpConns--
		t.h.lastUsed = t.c.now()
		t.c.mu.Unlock()
	})
	return err
}

// CloseWrite half-closes the connection when the dialled connection can (*net.TCPConn, an
// HBONE stream), so a relay propagates the client's EOF.
func (t *tcpConn) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("upstream connection to %s cannot half-close", t.h.ep)
}
