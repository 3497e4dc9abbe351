package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// ErrMismatch reports that the receiver's count or digest differs from
// what was sent.
var ErrMismatch = errors.New("digest mismatch")

// DefaultChunk is the default write size.
const DefaultChunk = 256 << 10

// SendOptions configures Send.
type SendOptions struct {
	// Bytes is the number of bytes sent on each stream.
	Bytes int64
	// Streams is the number of parallel connections (default 1).
	Streams int
	// Seed selects the pseudo-random content; stream i uses Seed+i.
	Seed uint64
	// Marker, if set, is stamped into the stream every MarkerInterval bytes.
	Marker string
	// Chunk is the write size (default DefaultChunk).
	Chunk int
}

// StreamResult describes one sent stream.
type StreamResult struct {
	Stream         int     `json:"stream"`
	Bytes          int64   `json:"bytes"`
	Seconds        float64 `json:"seconds"`
	Gbps           float64 `json:"gbps"`
	ReceivedBytes  int64   `json:"received_bytes"`
	SentSHA256     string  `json:"sent_sha256"`
	ReceivedSHA256 string  `json:"received_sha256"`
	Match          bool    `json:"match"`
	Error          string  `json:"error,omitempty"`
}

// SendReport describes a whole Send.
type SendReport struct {
	To      string         `json:"to"`
	Streams []StreamResult `json:"streams"`
	// Bytes is the total sent over all streams.
	Bytes int64 `json:"bytes"`
	// Seconds is the wall time from the first dial to the last trailer.
	Seconds float64 `json:"seconds"`
	// Gbps is the total throughput, Bytes over Seconds, in Gbit/s.
	Gbps float64 `json:"gbps"`
	// Match is true when every stream completed and matched.
	Match bool `json:"match"`
}

// Summary returns a one-line human-readable summary.
func (r SendReport) Summary() string {
	var b strings.Builder
	verdict := "digest match"
	if !r.Match {
		verdict = "DIGEST MISMATCH OR ERROR"
	}
	fmt.Fprintf(&b, "bulk send to %s: %d streams, %s in %.3fs, %.3f Gbit/s total, %s",
		r.To, len(r.Streams), FormatSize(r.Bytes), r.Seconds, r.Gbps, verdict)
	for _, s := range r.Streams {
		state := "ok"
		switch {
		case s.Error != "":
			state = s.Error
		case !s.Match:
			state = "mismatch"
		}
		fmt.Fprintf(&b, "; stream %d: %s %.3f Gbit/s %s", s.Stream, FormatSize(s.Bytes), s.Gbps, state)
	}
	return b.String()
}

// Send opens opts.Streams connections to addr, sends opts.Bytes on each,
// half-closes, reads the receiver's trailer and verifies it. The report is
// complete even when the returned error is non-nil; the error wraps
// ErrMismatch when a stream's count or digest differed.
func Send(ctx context.Context, addr string, opts SendOptions) (SendReport, error) {
	streams := max(opts.Streams, 1)
	rep := SendReport{To: addr, Streams: make([]StreamResult, streams)}
	errs := make([]error, streams)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range streams {
		wg.Go(func() {
			rep.Streams[i], errs[i] = sendOne(ctx, addr, i, opts)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	rep.Seconds = elapsed.Seconds()
	rep.Match = true
	for _, s := range rep.Streams {
		rep.Bytes += s.Bytes
		rep.Match = rep.Match && s.Match
	}
	rep.Gbps = gbps(rep.Bytes, elapsed)
	return rep, errors.Join(errs...)
}

func sendOne(ctx context.Context, addr string, i int, opts SendOptions) (res StreamResult, err error) {
	res.Stream = i
	defer func() {
		if err != nil {
			err = fmt.Errorf("send: stream %d: %w", i, err)
			res.Error = err.Error()
		}
	}()
	src, err := NewSource(opts.Seed+uint64(i), opts.Marker)
	if err != nil {
		return res, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	return SendStream(ctx, conn, src, opts.Bytes, opts.Chunk, res)
}

// halfCloser is implemented by *net.TCPConn and *net.UnixConn.
type halfCloser interface{ CloseWrite() error }

// SendStream writes n bytes from src to conn in chunks of chunk bytes
// (DefaultChunk if <= 0), half-closes conn, reads the receiver's trailer
// and compares it with the count and SHA-256 of what was written. res
// supplies the stream number; the filled-in result is returned.
func SendStream(ctx context.Context, conn net.Conn, src io.Reader, n int64, chunk int, res StreamResult) (StreamResult, error) {
	hc, ok := conn.(halfCloser)
	if !ok {
		return res, fmt.Errorf("connection %T cannot half-close", conn)
	}
	if chunk <= 0 {
		chunk = DefaultChunk
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	h := sha256.New()
	buf := make([]byte, chunk)
	start := time.Now()
	for res.Bytes < n {
		b := buf[:min(int64(len(buf)), n-res.Bytes)]
		if _, err := io.ReadFull(src, b); err != nil {
			return res, fmt.Errorf("read source: %w", err)
		}
		h.Write(b)
		w, err := conn.Write(b)
		res.Bytes += int64(w)
		if err != nil {
			return res, fmt.Errorf("write after %d bytes: %w", res.Bytes, err)
		}
	}
	if err := hc.CloseWrite(); err != nil {
		return res, fmt.Errorf("half-close: %w", err)
	}
	var trailer [TrailerSize]byte
	if _, err := io.ReadFull(conn, trailer[:]); err != nil {
		return res, fmt.Errorf("read trailer: %w", err)
	}
	elapsed := time.Since(start)
	res.Seconds = elapsed.Seconds()
	res.Gbps = gbps(res.Bytes, elapsed)
	res.SentSHA256 = hex.EncodeToString(h.Sum(nil))
	res.ReceivedBytes = int64(binary.BigEndian.Uint64(trailer[:8]))
	res.ReceivedSHA256 = hex.EncodeToString(trailer[8:])
	res.Match = res.ReceivedBytes == res.Bytes && res.ReceivedSHA256 == res.SentSHA256
	if !res.Match {
		return res, fmt.Errorf("%w: sent %d bytes sha256 %s, receiver got %d bytes sha256 %s",
			ErrMismatch, res.Bytes, res.SentSHA256, res.ReceivedBytes, res.ReceivedSHA256)
	}
	return res, nil
}
