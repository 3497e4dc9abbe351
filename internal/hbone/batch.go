package hbone

import (
	"net"
	"sync"
)

// batchConn is the TCP connection under the TLS connection. crypto/tls writes each record of at
// most 16 KiB with its own write call, so a 256 KiB write of a bulk stream would cost 16
// system calls and 16 trips through the network stack. While the HTTP/2 writer holds its lock
// (begin … end), batchConn collects the records and end writes them with one call; outside
// that window (the handshake, alerts) every write goes straight through.
type batchConn struct {
	net.Conn
	mu       sync.Mutex // serialises Write and end; crypto/tls may write from its reader
	batching bool
	buf      *[]byte // pooled while batching
}

// maxBatch bounds what batchConn holds before it writes: a full copy buffer (largeBufSize) of
// records with their framing.
const maxBatch = largeBufSize + 32<<10

// batchBufs caches batch buffers; it is a cache only and holds no observable state.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, maxBatch); return &b }}

func newBatchConn(c net.Conn) *batchConn { return &batchConn{Conn: c} }

// Write implements net.Conn: it queues p while batching (writing at once when maxBatch is
// reached) and writes it otherwise.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.batching {
		return b.Conn.Write(p)
	}
	if b.buf == nil {
		b.buf = batchBufs.Get().(*[]byte)
	}
	if len(*b.buf)+len(p) > maxBatch {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > maxBatch {
			return b.Conn.Write(p)
		}
	}
	*b.buf = append(*b.buf, p...)
	return len(p), nil
}

// begin starts collecting records.
func (b *batchConn) begin() {
	b.mu.Lock()
	b.batching = true
	b.mu.Unlock()
}

// end writes what was collected and stops collecting.
func (b *batchConn) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	err := b.flushLocked()
	if b.buf != nil {
		batchBufs.Put(b.buf)
		b.buf = nil
	}
	return err
}

func (b *batchConn) flushLocked() error {
	if b.buf == nil || len(*b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(*b.buf)
	*b.buf = (*b.buf)[:0]
	return err
}
