package proxy

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestAbortResets: a refused client sees "connection reset", not an orderly end of stream.
func TestAbortResets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			abort(c)
		}
	}()
	// The reset may already be seen when the dial completes, or at the first read.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err == nil {
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%v, want connection reset", err)
	}
}
