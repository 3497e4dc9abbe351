package hbone

import (
	"math"
	"sync"
)

// Flow control. Each side announces StreamWindow for every stream and ConnectionWindow for the
// connection, and returns credit (WINDOW_UPDATE) as the application consumes data, once a
// quarter of the window has been consumed: a slow reader holds back its own stream (and at most
// its share of the connection window), never the read loop. Sending waits for the peer's
// windows and never exceeds its SETTINGS_MAX_FRAME_SIZE.
const (
	streamUpdateThreshold = StreamWindow / 4
	connUpdateThreshold   = ConnectionWindow / 4

	initialWindow  = 65535         // RFC 9113 §6.9.2: every window starts here
	maxWindow      = math.MaxInt32 // RFC 9113 §6.9.1
	minFrameSize   = 16 << 10      // RFC 9113 §4.2: the default and smallest SETTINGS_MAX_FRAME_SIZE
	maxHeaderTable = 4096          // our hpack decoder's table, the default
)

// recvChunkSize is the size of the pooled blocks that received data is kept in until read.
const recvChunkSize = 32 << 10

type recvChunk struct {
	buf  [recvChunkSize]byte
	r, w int
}

// recvChunks caches receive blocks; it is a cache only and holds no observable state.
var recvChunks = sync.Pool{New: func() any { return new(recvChunk) }}

// recvBuffer queues the data received on a stream until the application reads it. It holds at
// most the stream window, in pooled blocks that go back to the pool as soon as they are read,
// so an idle stream holds no memory and steady-state transfer allocates nothing.
type recvBuffer struct {
	chunks []*recvChunk
	size   int
}

// write appends p.
func (b *recvBuffer) write(p []byte) {
	b.size += len(p)
	for len(p) > 0 {
		var last *recvChunk
		if n := len(b.chunks); n > 0 && b.chunks[n-1].w < recvChunkSize {
			last = b.chunks[n-1]
		} else {
			last = recvChunks.Get().(*recvChunk)
			last.r, last.w = 0, 0
			b.chunks = append(b.chunks, last)
		}
		n := copy(last.buf[last.w:], p)
		last.w += n
		p = p[n:]
	}
}

// appendChunk appends a block filled from r to w.
func (b *recvBuffer) appendChunk(c *recvChunk) {
	b.chunks = append(b.chunks, c)
	b.size += c.w - c.r
}

// read moves up to len(p) bytes into p.
func (b *recvBuffer) read(p []byte) int {
	var n int
	for n < len(p) && len(b.chunks) > 0 {
		c := b.chunks[0]
		k := copy(p[n:], c.buf[c.r:c.w])
		c.r += k
		n += k
		if c.r == c.w {
			b.popFront()
		}
	}
	b.size -= n
	return n
}

func (b *recvBuffer) popFront() {
	recvChunks.Put(b.chunks[0])
	copy(b.chunks, b.chunks[1:])
	b.chunks[len(b.chunks)-1] = nil
	b.chunks = b.chunks[:len(b.chunks)-1]
}

// reset drops everything and returns the number of bytes dropped.
func (b *recvBuffer) reset() int {
	n := b.size
	for len(b.chunks) > 0 {
		b.popFront()
	}
	b.chunks = nil
	b.size = 0
	return n
}
