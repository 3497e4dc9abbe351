package hbone_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/hbone"
)

// pipeUpstream is a handler whose upstream is in memory and discards what it reads, so stream
// setup is measured without a TCP connect.
func pipeUpstream(context.Context, *hbone.Inbound) (net.Conn, int, error) {
	a, b := net.Pipe()
	go func() {
		_, _ = io.Copy(io.Discard, b)
		_ = b.Close()
	}()
	return a, 0, nil
}

// BenchmarkStreamSetup measures Dial and Close of a stream on a warm pool: one CONNECT round
// trip on an established connection, then a reset.
func BenchmarkStreamSetup(b *testing.B) {
	e := newEnv(b, pipeUpstream)
	req := e.request(mustAddrPort("127.0.0.1:8080"))
	ctx := context.Background()
	warm, err := e.pool.Dial(ctx, req)
	if err != nil {
		b.Fatal(err)
	}
	defer warm.Close() // keeps the connection in use

	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c, err := e.pool.Dial(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			_ = c.Close()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c, err := e.pool.Dial(ctx, req)
				if err != nil {
					b.Error(err)
					return
				}
				_ = c.Close()
			}
		})
	})
	b.ReportMetric(float64(e.ln.accepted.Load()), "conns")
}

const benchChunk = 256 << 10

// BenchmarkThroughput measures bulk transfer through one stream over loopback TLS, to a TCP
// upstream that discards (upload) or from one that sends without pause (download).
func BenchmarkThroughput(b *testing.B) {
	chunk := make([]byte, benchChunk)
	b.Run("upload", func(b *testing.B) {
		e := newEnv(b, nil)
		got := make(chan int64, 1)
		up := upstream(b, discard(got))
		s := e.dial(b, up)
		b.SetBytes(benchChunk)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		_ = s.CloseWrite()
		select {
		case n := <-got:
			if n != int64(b.N)*benchChunk {
				b.Fatalf("upstream got %d bytes, want %d", n, int64(b.N)*benchChunk)
			}
		case <-time.After(30 * time.Second):
			b.Fatal("upstream did not finish")
		}
	})
	b.Run("download", func(b *testing.B) {
		e := newEnv(b, nil)
		up := upstream(b, func(c *net.TCPConn) {
			for {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		})
		s := e.dial(b, up)
		buf := make([]byte, benchChunk)
		b.SetBytes(benchChunk)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := io.ReadFull(s, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tcp-baseline", func(b *testing.B) {
		got := make(chan int64, 1)
		up := upstream(b, discard(got))
		c, err := net.Dial("tcp", up.String())
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(benchChunk)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		_ = c.(*net.TCPConn).CloseWrite()
		<-got
		_ = c.Close()
	})
}
