package hbone

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// Copy buffers come from two pools. A copy starts with a small buffer and moves to a large one
// when a read fills the small one (bulk transfer), and back when a read returns less than a
// small buffer holds, so idle or interactive streams keep little memory and bulk streams make
// few large reads and writes. Steady-state copying allocates nothing.
const (
	smallBufSize = 16 << 10
	largeBufSize = 256 << 10
)

// bufPools caches copy buffers; it is a cache only and holds no observable state.
var bufPools = [2]sync.Pool{
	{New: func() any { b := make([]byte, smallBufSize); return &b }},
	{New: func() any { b := make([]byte, largeBufSize); return &b }},
}

// copyBuf is a pooled buffer that adapts its size to the traffic.
type copyBuf struct {
	p     *[]byte
	large bool
}

func (b *copyBuf) get() []byte {
	if b.p == nil {
		b.p = bufPools[b.tier()].Get().(*[]byte)
	}
	return *b.p
}

// release returns the buffer to its pool; the next get takes a new one.
func (b *copyBuf) release() {
	if b.p != nil {
		bufPools[b.tier()].Put(b.p)
		b.p = nil
	}
}

// adapt switches tiers after a read of n bytes into a buffer of size size.
func (b *copyBuf) adapt(n, size int) {
	switch {
	case !b.large && n == size:
		b.release()
		b.large = true
	case b.large && n < smallBufSize:
		b.release()
		b.large = false
	}
}

func (b *copyBuf) tier() int {
	if b.large {
		return 1
	}
	return 0
}

// copyBuffered copies src to dst until EOF (which it does not return) or an error, adding the
// bytes written to count when count is not nil.
func copyBuffered(dst io.Writer, src io.Reader, count *atomic.Int64) (int64, error) {
	var b copyBuf
	defer b.release()
	var written int64
	for {
		buf := b.get()
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			if nw > 0 {
				written += int64(nw)
				if count != nil {
					count.Add(int64(nw))
				}
			}
			if werr != nil {
				return written, werr
			}
			if nw != nr {
				return written, io.ErrShortWrite
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return written, nil
			}
			return written, rerr
		}
		b.adapt(nr, len(buf))
	}
}

// closeWriter is implemented by connections that can half-close (*net.TCPConn, *tls.Conn,
// *Stream).
type closeWriter interface {
	CloseWrite() error
}

// closeWrite half-closes c when it can, and reports whether it did.
func closeWrite(c io.Closer) bool {
	if cw, ok := c.(closeWriter); ok {
		return cw.CloseWrite() == nil
	}
	return false
}

// Relay copies a to b and b to a until both directions have finished, then closes both. When
// one direction reaches EOF, the other side's write half is closed (CloseWrite) if it can be,
// so half-close propagates; a side that cannot half-close is closed once both directions end.
// An error in either direction closes both connections at once. Relay returns the bytes copied
// each way and the first error other than EOF.
func Relay(a, b net.Conn) (aToB, bToA int64, err error) {
	type result struct {
		n   int64
		err error
	}
	res := make(chan result, 1)
	go func() {
		n, err := copyBuffered(b, a, nil)
		if err != nil || !closeWrite(b) {
			abortIf(err, a, b)
		}
		res <- result{n, err}
	}()
	bToA, err = copyBuffered(a, b, nil)
	if err != nil || !closeWrite(a) {
		abortIf(err, a, b)
	}
	r := <-res
	_ = a.Close()
	_ = b.Close()
	return r.n, bToA, errors.Join(r.err, err)
}

// abortIf closes both connections when err is not nil.
func abortIf(err error, a, b io.Closer) {
	if err != nil {
		_ = a.Close()
		_ = b.Close()
	}
}
