package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/weftmesh/weft/test/apps/internal/tcpserve"
)

// TrailerSize is the size of the receiver's answer: an 8-byte big-endian
// byte count followed by a 32-byte SHA-256 digest.
const TrailerSize = 8 + sha256.Size

const readBufSize = 256 << 10

// RecvResult describes one received stream.
type RecvResult struct {
	Remote  string  `json:"remote"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	Gbps    float64 `json:"gbps"`
	SHA256  string  `json:"sha256"`
}

// Receive reads conn until EOF, then writes the trailer (count and
// SHA-256 of the bytes read). ctx aborts the transfer.
func Receive(ctx context.Context, conn net.Conn) (RecvResult, error) {
	res := RecvResult{Remote: conn.RemoteAddr().String()}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	h := sha256.New()
	buf := make([]byte, readBufSize)
	start := time.Now()
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			res.Bytes += int64(n)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, fmt.Errorf("receive: read after %d bytes: %w", res.Bytes, err)
		}
	}
	elapsed := time.Since(start)
	res.Seconds = elapsed.Seconds()
	res.Gbps = gbps(res.Bytes, elapsed)

	var trailer [TrailerSize]byte
	binary.BigEndian.PutUint64(trailer[:8], uint64(res.Bytes))
	h.Sum(trailer[8:8])
	res.SHA256 = hex.EncodeToString(trailer[8:])
	if _, err := conn.Write(trailer[:]); err != nil {
		return res, fmt.Errorf("receive: write trailer: %w", err)
	}
	return res, nil
}

// Serve runs Receive for every connection accepted on ln and logs each
// result. When ctx is done it stops accepting, waits up to grace for
// transfers in progress, then aborts them.
func Serve(ctx context.Context, ln net.Listener, grace time.Duration, logger *slog.Logger) error {
	err := tcpserve.Serve(ctx, ln, grace, func(c net.Conn) {
		res, err := Receive(context.WithoutCancel(ctx), c)
		if err != nil {
			logger.Warn("receive failed", "remote", res.Remote, "bytes", res.Bytes, "err", err)
			return
		}
		logger.Info("received", "remote", res.Remote, "bytes", res.Bytes,
			"seconds", res.Seconds, "gbps", res.Gbps, "sha256", res.SHA256)
	})
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	return nil
}

func gbps(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) * 8 / d.Seconds() / 1e9
}
