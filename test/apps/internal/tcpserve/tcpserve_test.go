package tcpserve

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

func TestServeShutdown(t *testing.T) {
	tests := []struct {
		name     string
		idle     bool // client keeps its connection open during shutdown
		grace    time.Duration
		maxTotal time.Duration
	}{
		{"no connections", false, time.Second, 2 * time.Second},
		{"idle connection force-closed after grace", true, 50 * time.Millisecond, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lc net.ListenConfig
			ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			handled := make(chan struct{}, 1)
			done := make(chan error, 1)
			go func() {
				done <- Serve(ctx, ln, tt.grace, func(c net.Conn) {
					handled <- struct{}{}
					_, _ = io.Copy(io.Discard, c)
				})
			}()
			if tt.idle {
				var d net.Dialer
				c, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				<-handled
			}
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(tt.maxTotal):
				t.Fatal("Serve did not return")
			}
			if el := time.Since(start); tt.idle && el < tt.grace {
				t.Errorf("returned after %v, before grace %v", el, tt.grace)
			}
		})
	}
}
