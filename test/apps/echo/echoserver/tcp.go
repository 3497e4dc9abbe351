package echoserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/weftmesh/weft/test/apps/internal/tcpserve"
)

// ServeTCPEcho accepts connections on ln and echoes every byte back until
// the peer closes. When ctx is done it closes ln, waits up to grace for open
// connections to finish and then closes them. It returns nil after a
// shutdown and the accept error otherwise.
func ServeTCPEcho(ctx context.Context, ln net.Listener, grace time.Duration, logger *slog.Logger) error {
	err := tcpserve.Serve(ctx, ln, grace, func(c net.Conn) {
		n, err := io.Copy(c, c)
		logger.Debug("tcp echo done", "remote", c.RemoteAddr().String(), "bytes", n, "err", err)
	})
	if err != nil {
		return fmt.Errorf("tcp echo: %w", err)
	}
	return nil
}
