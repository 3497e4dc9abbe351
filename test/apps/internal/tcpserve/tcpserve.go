// Package tcpserve runs a TCP accept loop with bounded graceful shutdown.
package tcpserve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Serve accepts connections on ln and runs handle for each in its own
// goroutine; handle need not close the connection. When ctx is done, Serve
// closes ln, waits up to grace for running handlers, then closes their
// connections and waits for them to return. It returns nil after a
// shutdown and the accept error otherwise (ln is closed in both cases).
func Serve(ctx context.Context, ln net.Listener, grace time.Duration, handle func(net.Conn)) error {
	var (
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
		wg    sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()

	var acceptErr error
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				acceptErr = fmt.Errorf("tcpserve: accept: %w", err)
			}
			_ = ln.Close()
			break
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				_ = c.Close()
			}()
			handle(c)
		})
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		<-done
	}
	return acceptErr
}
