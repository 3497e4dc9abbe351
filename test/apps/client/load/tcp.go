package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/weftmesh/weft/test/apps/client/report"
)

// maxLine bounds the reply line read from a TCP echo server.
const maxLine = 64 << 10

// TCPOptions configures TCP echo exchanges.
type TCPOptions struct {
	Send    string // line to send; a trailing newline is added if missing
	Timeout time.Duration
}

// TCP returns a Func that connects to addr, sends one line, reads one line
// back and closes. The exchange is OK when the reply equals the line sent;
// otherwise the error kind is "mismatch". The reply (without newline) is
// in Sample.Reply and the Status is "ok" or "mismatch".
func TCP(addr string, o TCPOptions) Func {
	line := o.Send
	if !strings.HasSuffix(line, "\n") {
		line += "\n"
	}
	return func(ctx context.Context) report.Sample {
		if o.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, o.Timeout)
			defer cancel()
		}
		reply, err := Exchange(ctx, addr, line)
		s := report.Sample{Reply: strings.TrimSuffix(reply, "\n")}
		switch {
		case err != nil:
			s.Err = err
		case reply != line:
			s.Status = "mismatch"
			s.Err = &report.KindError{Kind: "mismatch", Err: fmt.Errorf("tcp: sent %q, got %q", line, reply)}
		default:
			s.Status = "ok"
			s.OK = true
		}
		return s
	}
}

// Exchange dials addr, writes line, reads one line back (up to and
// including '\n') and closes the connection. ctx bounds the whole exchange.
func Exchange(ctx context.Context, addr, line string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("tcp: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write([]byte(line)); err != nil {
		return "", fmt.Errorf("tcp: write: %w", ctxErr(ctx, err))
	}
	r := bufio.NewReaderSize(conn, 4096)
	var b strings.Builder
	for b.Len() < maxLine {
		frag, err := r.ReadSlice('\n')
		b.Write(frag)
		if err == nil {
			return b.String(), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return b.String(), fmt.Errorf("tcp: read: %w", ctxErr(ctx, err))
		}
	}
	return b.String(), fmt.Errorf("tcp: reply longer than %d bytes", maxLine)
}

// ctxErr prefers the context's error over the deadline error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}
