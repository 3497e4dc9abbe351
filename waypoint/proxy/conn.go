package proxy

import (
	"context"
	"io"
	"net"
	"sync"
	"time"

	"github.com/weftmesh/weft/internal/hbone"
)

// tunnelConn is an HBONE stream served as an HTTP connection. Its RemoteAddr is the original
// client (see clientAddr), and Close ends the stream the way a TCP close
// with lingering does: our direction ends (END_STREAM) at once, what the client still sends is
// read and dropped for a moment, and only then is the stream released, so a client that has not
// yet read its last response is not reset.
type tunnelConn struct {
	net.Conn
	in     *hbone.Inbound
	remote net.Addr
	closed chan struct{}
	once   sync.Once
}

// lingerTimeout bounds how long a closed connection waits for the client to end its direction.
const lingerTimeout = 2 * time.Second

func newTunnelConn(st net.Conn, in *hbone.Inbound) *tunnelConn {
	return &tunnelConn{Conn: st, in: in, remote: net.TCPAddrFromAddrPort(clientAddr(in)), closed: make(chan struct{})}
}

func (c *tunnelConn) RemoteAddr() net.Addr { return c.remote }

func (c *tunnelConn) Close() error {
	c.once.Do(func() {
		go func() {
			defer close(c.closed)
			if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
				_, _ = io.Copy(io.Discard, c.Conn)
			}
			_ = c.Conn.Close()
		}()
	})
	return nil
}

// streamListener hands terminated HBONE streams to an http.Server.
type streamListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newStreamListener(addr net.Addr) *streamListener {
	return &streamListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// serve offers c to the HTTP server and waits until the server has closed it (the HBONE server
// counts the stream until then), or until ctx ends.
func (l *streamListener) serve(ctx context.Context, c *tunnelConn) {
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	case <-ctx.Done():
		_ = c.Close()
	}
	<-c.closed
}

func (l *streamListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *streamListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *streamListener) Addr() net.Addr { return l.addr }
