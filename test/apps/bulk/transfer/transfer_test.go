package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func readN(t *testing.T, r io.Reader, n int, step int) []byte {
	t.Helper()
	out := make([]byte, 0, n)
	buf := make([]byte, step)
	for len(out) < n {
		m, err := r.Read(buf[:min(step, n-len(out))])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:m]...)
	}
	return out
}

func mustSource(t *testing.T, seed uint64, marker string) *Source {
	t.Helper()
	s, err := NewSource(seed, marker)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSourceDeterministic(t *testing.T) {
	const n = 3*BlockSize + 12345
	a := readN(t, mustSource(t, 7, ""), n, 4096)
	b := readN(t, mustSource(t, 7, ""), n, 99991) // different read sizes, same stream
	if !bytes.Equal(a, b) {
		t.Fatal("same seed produced different streams")
	}
	c := readN(t, mustSource(t, 8, ""), n, 4096)
	if bytes.Equal(a[:BlockSize], c[:BlockSize]) {
		t.Fatal("different seeds produced the same block")
	}
	// Repetitions differ in their sequence stamp only.
	if bytes.Equal(a[:BlockSize], a[BlockSize:2*BlockSize]) {
		t.Error("consecutive blocks are identical; sequence stamp missing")
	}
	if !bytes.Equal(a[8:BlockSize], a[BlockSize+8:2*BlockSize]) {
		t.Error("blocks differ beyond the sequence stamp")
	}
}

func TestSourceMarker(t *testing.T) {
	const marker = "WEFT-PLAINTEXT-MARKER"
	data := readN(t, mustSource(t, 1, marker), 2*BlockSize, 65536)
	if got, want := bytes.Count(data, []byte(marker)), 2*BlockSize/MarkerInterval; got != want {
		t.Errorf("marker count = %d, want %d", got, want)
	}
	// Every window of MarkerInterval+len(marker) bytes holds a whole marker.
	w := MarkerInterval + len(marker)
	for off := 0; off+w <= len(data); off += 997 {
		if !bytes.Contains(data[off:off+w], []byte(marker)) {
			t.Fatalf("window at %d lacks the marker", off)
		}
	}
	plain := readN(t, mustSource(t, 1, ""), 2*BlockSize, 65536)
	if bytes.Contains(plain, []byte(marker)) {
		t.Error("marker found in unmarked stream")
	}
	if _, err := NewSource(1, strings.Repeat("m", MaxMarker+1)); err == nil {
		t.Error("overlong marker accepted")
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "0", want: 0},
		{in: "10485760", want: 10485760},
		{in: "100M", want: 100e6},
		{in: "10MB", want: 10e6},
		{in: "1G", want: 1e9},
		{in: "64KiB", want: 64 << 10},
		{in: "1Mi", want: 1 << 20},
		{in: "2k", want: 2000},
		{in: " 3 T ", want: 3e12},
		{in: "", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "1.5G", wantErr: true},
		{in: "abc", wantErr: true},
		{in: "9999999999Ti", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	for _, tt := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {999, "999 B"}, {10e6, "10.0 MB"}, {104857600, "104.9 MB"}, {25e8, "2.5 GB"}} {
		if got := FormatSize(tt.n); got != tt.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// serveReceiver runs Serve on a loopback listener until the test ends.
func serveReceiver(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.NewJSONHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() { done <- Serve(ctx, ln, time.Second, logger) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func expectedDigest(t *testing.T, seed uint64, marker string, n int64) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(mustSource(t, seed, marker), n)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestSendReceiveLoopback(t *testing.T) {
	addr := serveReceiver(t)
	tests := []struct {
		name string
		opts SendOptions
	}{
		{"10MB one stream", SendOptions{Bytes: 10e6, Streams: 1, Seed: 42}},
		{"10MB two streams with marker", SendOptions{Bytes: 5e6, Streams: 2, Seed: 9, Marker: "SECRET-MARKER", Chunk: 64 << 10}},
		{"empty", SendOptions{Bytes: 0, Streams: 1}},
		{"odd size", SendOptions{Bytes: BlockSize + 1, Streams: 1, Seed: 3, Chunk: 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			rep, err := Send(ctx, addr, tt.opts)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if !rep.Match || len(rep.Streams) != tt.opts.Streams || rep.Bytes != tt.opts.Bytes*int64(tt.opts.Streams) {
				t.Fatalf("report: %+v", rep)
			}
			for i, s := range rep.Streams {
				want := expectedDigest(t, tt.opts.Seed+uint64(i), tt.opts.Marker, tt.opts.Bytes)
				if s.SentSHA256 != want || s.ReceivedSHA256 != want || s.ReceivedBytes != tt.opts.Bytes {
					t.Errorf("stream %d: sent %s received %s (%d bytes), want %s", i, s.SentSHA256, s.ReceivedSHA256, s.ReceivedBytes, want)
				}
				if tt.opts.Bytes > 0 && (s.Seconds <= 0 || s.Gbps <= 0) {
					t.Errorf("stream %d: seconds=%v gbps=%v", i, s.Seconds, s.Gbps)
				}
			}
			if !strings.Contains(rep.Summary(), "digest match") {
				t.Errorf("summary: %s", rep.Summary())
			}
		})
	}
}

// corruptingProxy forwards loopback connections to target, flipping one
// byte of the client->server direction at offset flipAt.
func corruptingProxy(t *testing.T, target string, flipAt int64) string {
	t.Helper()
	ln := listen(t)
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			var d net.Dialer
			out, err := d.DialContext(t.Context(), "tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			wg.Go(func() {
				defer in.Close()
				defer out.Close()
				relayed := make(chan struct{})
				go func() { _, _ = io.Copy(in, out); close(relayed) }()
				buf := make([]byte, 32<<10)
				var off int64
				for {
					n, err := in.Read(buf)
					if flipAt >= off && flipAt < off+int64(n) {
						buf[flipAt-off] ^= 0xff
					}
					off += int64(n)
					if n > 0 {
						if _, werr := out.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						_ = out.(*net.TCPConn).CloseWrite()
						break
					}
				}
				// Wait for the receiver's trailer to be relayed.
				select {
				case <-relayed:
				case <-time.After(10 * time.Second):
				}
			})
		}
	})
	return ln.Addr().String()
}

// fakeReceiver reads everything and answers with the given trailer bytes.
func fakeReceiver(t *testing.T, trailer func(n int64, sum []byte) []byte) string {
	t.Helper()
	ln := listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h := sha256.New()
				n, _ := io.Copy(h, c)
				_, _ = c.Write(trailer(n, h.Sum(nil)))
			}()
		}
	}()
	return ln.Addr().String()
}

func TestSendDetectsMismatch(t *testing.T) {
	real := serveReceiver(t)
	tests := []struct {
		name         string
		addr         string
		wantMismatch bool
	}{
		{"byte flipped on the wire", corruptingProxy(t, real, 5_000_000), true},
		{"short count", fakeReceiver(t, func(n int64, sum []byte) []byte {
			out := make([]byte, TrailerSize)
			putCount(out, n-1)
			copy(out[8:], sum)
			return out
		}), true},
		{"wrong digest", fakeReceiver(t, func(n int64, sum []byte) []byte {
			out := make([]byte, TrailerSize)
			putCount(out, n)
			copy(out[8:], sum)
			out[TrailerSize-1] ^= 1
			return out
		}), true},
		{"truncated trailer", fakeReceiver(t, func(n int64, sum []byte) []byte { return sum[:10] }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			rep, err := Send(ctx, tt.addr, SendOptions{Bytes: 10e6, Streams: 1, Seed: 5})
			if err == nil || rep.Match {
				t.Fatalf("Send succeeded: %+v", rep)
			}
			if got := errors.Is(err, ErrMismatch); got != tt.wantMismatch {
				t.Errorf("errors.Is(err, ErrMismatch) = %v, want %v (err %v)", got, tt.wantMismatch, err)
			}
			if rep.Streams[0].Error == "" {
				t.Error("stream error not recorded")
			}
		})
	}
}

func putCount(b []byte, n int64) {
	for i := range 8 {
		b[7-i] = byte(n >> (8 * i))
	}
}

func TestSendCanceled(t *testing.T) {
	// A receiver that never reads nor answers: the context bounds Send.
	ln := listen(t)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			<-t.Context().Done()
			_ = c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Send(ctx, ln.Addr().String(), SendOptions{Bytes: 1 << 30, Streams: 1})
	if err == nil {
		t.Fatal("Send succeeded")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Send took %v after cancel", el)
	}
}
