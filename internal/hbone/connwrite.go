package hbone

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Writing: DATA and HEADERS frames are written by the goroutine that sends them, under wmu,
// into a buffered writer flushed by the last writer in line; every other frame is queued and
// written by writeLoop (or by the next writer), so the read loop never writes to the socket.

// lockWrite takes the write lock; unlockWrite releases it, writing queued control frames first
// and flushing when no other writer is waiting. The TLS records written in between go to the
// socket together, at the flush (batchConn).
func (c *conn) lockWrite() {
	c.writers.Add(1)
	c.wmu.Lock()
	if c.batch != nil {
		c.batch.begin()
	}
}

func (c *conn) unlockWrite() {
	c.writeControlLocked()
	if c.writers.Add(-1) == 0 && c.werr == nil {
		if c.bw.Buffered() > 0 {
			if err := c.bw.Flush(); err != nil {
				c.setWriteErrLocked(err)
			}
		}
		if c.batch != nil {
			if err := c.batch.end(); err != nil {
				c.setWriteErrLocked(err)
			}
		}
	}
	c.wmu.Unlock()
}

func (c *conn) setWriteErrLocked(err error) {
	if c.werr == nil {
		c.werr = fmt.Errorf("hbone: write: %w", err)
		go c.close(c.werr)
	}
}

// queue adds a control frame for writeLoop; callers call signal once their locks are released.
func (c *conn) queue(f ctrlFrame) {
	c.cmu.Lock()
	c.ctrl = append(c.ctrl, f)
	c.cmu.Unlock()
	c.ctrlQueued.Store(true)
}

// signal wakes writeLoop if control frames are queued.
func (c *conn) signal() {
	if !c.ctrlQueued.Load() {
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writeControlLocked writes the queued control frames; wmu is held.
func (c *conn) writeControlLocked() {
	if !c.ctrlQueued.Load() {
		return
	}
	c.cmu.Lock()
	q := c.ctrl
	c.ctrl, c.ctrlSpare = c.ctrlSpare[:0], nil
	c.ctrlQueued.Store(false)
	c.cmu.Unlock()
	if len(q) == 0 {
		c.cmu.Lock()
		c.ctrlSpare = q
		c.cmu.Unlock()
		return
	}
	for i := range q {
		if c.werr != nil {
			break
		}
		f := &q[i]
		var err error
		switch f.typ {
		case http2.FrameWindowUpdate:
			err = c.fr.WriteWindowUpdate(f.stream, f.val)
		case http2.FrameRSTStream:
			err = c.fr.WriteRSTStream(f.stream, http2.ErrCode(f.val))
		case http2.FramePing:
			err = c.fr.WritePing(f.ack, f.ping)
		case http2.FrameSettings:
			err = c.fr.WriteSettingsAck()
		case http2.FrameGoAway:
			err = c.fr.WriteGoAway(f.last, http2.ErrCode(f.val), nil)
		case http2.FrameData: // END_STREAM
			err = c.writeDataFrameLocked(f.stream, nil, true)
		}
		if err != nil {
			c.setWriteErrLocked(err)
		}
	}
	c.cmu.Lock()
	c.ctrlSpare = q[:0]
	c.cmu.Unlock()
}

// writeLoop writes queued control frames when no stream is writing.
func (c *conn) writeLoop() {
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
			c.lockWrite()
			c.unlockWrite()
		}
	}
}

// writeDataFrameLocked writes one DATA frame without copying p into the framer's buffer.
func (c *conn) writeDataFrameLocked(id uint32, p []byte, end bool) error {
	h := c.hdr[:]
	h[0], h[1], h[2] = byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
	h[3] = byte(http2.FrameData)
	h[4] = 0
	if end {
		h[4] = byte(http2.FlagDataEndStream)
	}
	binary.BigEndian.PutUint32(h[5:], id)
	if _, err := c.bw.Write(h); err != nil {
		return err
	}
	_, err := c.bw.Write(p)
	return err
}

// writeData sends p on stream id; the caller has taken flow-control credit for it.
func (c *conn) writeData(id uint32, p []byte) error {
	c.lockWrite()
	defer c.unlockWrite()
	if c.werr != nil {
		return c.werr
	}
	if err := c.writeDataFrameLocked(id, p, false); err != nil {
		c.setWriteErrLocked(err)
		return c.werr
	}
	return nil
}

// writeHeadersLocked encodes fields and writes them as HEADERS (and CONTINUATION) frames.
func (c *conn) writeHeadersLocked(id uint32, fields []hpack.HeaderField, end bool) error {
	if c.werr != nil {
		return c.werr
	}
	c.mu.Lock()
	tableSize, maxFrame := c.peerTableSize, c.peerMaxFrame
	c.mu.Unlock()
	if tableSize != c.encSize {
		c.henc.SetMaxDynamicTableSizeLimit(tableSize)
		c.encSize = tableSize
	}
	c.hbuf.Reset()
	for _, f := range fields {
		if err := c.henc.WriteField(f); err != nil {
			return err
		}
	}
	block := c.hbuf.Bytes()
	first := true
	for first || len(block) > 0 {
		frag := block[:min(len(block), maxFrame)]
		block = block[len(frag):]
		var err error
		if first {
			err = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = c.fr.WriteContinuation(id, len(block) == 0, frag)
		}
		if err != nil {
			c.setWriteErrLocked(err)
			return c.werr
		}
	}
	return nil
}
