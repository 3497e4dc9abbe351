package hbone

import (
	"context"
	"errors"
	"io"

	"golang.org/x/net/http2"
)

// Reading: readLoop reads every frame and dispatches it. It never blocks on the socket's
// writing side nor on the application: received data goes to the stream's buffer, which flow
// control bounds, and frames to send in answer are queued.

// readLoop reads and dispatches frames until the connection fails.
func (c *conn) readLoop() {
	err := c.readFrames()
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		c.cfg.log.Debug("HTTP/2 connection error", "remote", c.remote, "err", err)
		c.fail(http2.ErrCode(ce), err)
		return
	}
	if errors.Is(err, io.EOF) {
		err = errConnClosed
	}
	c.close(err)
}

func (c *conn) readFrames() error {
	for {
		fh, err := c.fr.ReadFrameHeader()
		if errors.Is(err, http2.ErrFrameTooLarge) {
			return http2.ConnectionError(http2.ErrCodeFrameSize)
		}
		if err != nil {
			return err
		}
		c.framesRead.Add(1)
		if fh.Type == http2.FrameData {
			if err := c.onData(fh); err != nil {
				return err
			}
			continue
		}
		f, err := c.fr.ReadFrameForHeader(fh)
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.resetStream(se.StreamID, se.Code)
				continue
			}
			return err
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			err = c.onHeaders(f)
		case *http2.SettingsFrame:
			err = c.onSettings(f)
		case *http2.WindowUpdateFrame:
			err = c.onWindowUpdate(f)
		case *http2.PingFrame:
			if !f.IsAck() {
				c.queue(ctrlFrame{typ: http2.FramePing, ack: true, ping: f.Data})
				c.signal()
			}
		case *http2.RSTStreamFrame:
			c.onReset(f)
		case *http2.GoAwayFrame:
			c.onGoAway(f)
		case *http2.PushPromiseFrame:
			err = http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if err != nil {
			return err
		}
	}
}

// resetStream resets stream id with code (a stream error found while reading).
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	s := c.streams[id]
	if c.cfg.server && id > c.lastPeerStream {
		c.lastPeerStream = id
	}
	if s != nil {
		c.forgetLocked(s)
	}
	c.queue(ctrlFrame{typ: http2.FrameRSTStream, stream: id, val: uint32(code)})
	c.mu.Unlock()
	c.signal()
	if s != nil {
		s.fail(resetError{code: code})
	}
}

// knownStreamLocked reports whether id is a stream that was opened at some point.
func (c *conn) knownStreamLocked(id uint32) bool {
	if c.cfg.server {
		return id%2 == 1 && id <= c.lastPeerStream
	}
	return id%2 == 1 && id < c.nextStreamID
}

// onData handles a DATA frame whose header has been read. The payload is read here rather than
// by the Framer, straight into the pooled blocks of the stream's receive buffer: one copy, and
// no frame-sized buffer kept per connection.
func (c *conn) onData(fh http2.FrameHeader) error {
	if fh.StreamID == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	n := int64(fh.Length)
	dataLen := int(fh.Length)
	padLen := 0
	if fh.Flags.Has(http2.FlagDataPadded) {
		var b [1]byte
		if n == 0 {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if _, err := io.ReadFull(c.nc, b[:]); err != nil {
			return err
		}
		padLen = int(b[0])
		dataLen -= 1 + padLen
		if dataLen < 0 {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
	}

	c.mu.Lock()
	if n > c.recvAvail {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvAvail -= n
	s := c.streams[fh.StreamID]
	var streamErr http2.ErrCode
	switch {
	case s == nil:
		if !c.knownStreamLocked(fh.StreamID) {
			c.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
	case s.remoteEnded:
		streamErr = http2.ErrCodeStreamClosed // DATA after END_STREAM
	case n > s.recvAvail:
		streamErr = http2.ErrCodeFlowControl
	}
	if s == nil || streamErr != 0 {
		// A stream we reset or forgot, or one that broke the rules: drop the payload and
		// return its credit to the connection.
		c.creditConnLocked(n)
		c.mu.Unlock()
		c.signal()
		if err := c.discardPayload(dataLen + padLen); err != nil {
			return err
		}
		if streamErr != 0 {
			c.resetStream(fh.StreamID, streamErr)
		}
		return nil
	}
	s.recvAvail -= n
	if pad := n - int64(dataLen); pad > 0 {
		// Padding is never read: return its credit now.
		c.creditConnLocked(pad)
		s.creditLocked(pad)
	}
	c.mu.Unlock()

	if err := c.readPayload(s, dataLen); err != nil {
		return err
	}
	if err := c.discardPayload(padLen); err != nil {
		return err
	}
	if fh.Flags.Has(http2.FlagDataEndStream) {
		c.endRemote(s)
	}
	c.signal()
	return nil
}

// readPayload reads k bytes of DATA payload into s's receive buffer. Pieces of at least half a
// block are read into blocks of their own, which join the buffer as they are; smaller ones are
// read into a temporary block and appended, so that small frames share blocks.
func (c *conn) readPayload(s *Stream, k int) error {
	for k > 0 {
		m := min(k, recvChunkSize)
		ch := recvChunks.Get().(*recvChunk)
		ch.r, ch.w = 0, 0
		if _, err := io.ReadFull(c.nc, ch.buf[:m]); err != nil {
			recvChunks.Put(ch)
			return err
		}
		k -= m
		s.mu.Lock()
		switch {
		case s.discard:
			s.mu.Unlock()
			recvChunks.Put(ch)
			c.consumed(nil, m)
			continue
		case m >= recvChunkSize/2:
			ch.w = m
			s.buf.appendChunk(ch)
		default:
			s.buf.write(ch.buf[:m])
			recvChunks.Put(ch)
		}
		s.mu.Unlock()
		s.notify()
	}
	return nil
}

// discardPayload reads and drops k bytes of payload.
func (c *conn) discardPayload(k int) error {
	if k == 0 {
		return nil
	}
	ch := recvChunks.Get().(*recvChunk)
	defer recvChunks.Put(ch)
	for k > 0 {
		m := min(k, recvChunkSize)
		if _, err := io.ReadFull(c.nc, ch.buf[:m]); err != nil {
			return err
		}
		k -= m
	}
	return nil
}

// creditConnLocked returns n consumed bytes of connection window, sending WINDOW_UPDATE once
// enough has accumulated; mu is held, the caller signals.
func (c *conn) creditConnLocked(n int64) {
	c.recvUnacked += n
	if c.recvUnacked >= connUpdateThreshold {
		c.queue(ctrlFrame{typ: http2.FrameWindowUpdate, val: uint32(c.recvUnacked)})
		c.recvAvail += c.recvUnacked
		c.recvUnacked = 0
	}
}

// consumed returns the credit of n bytes the application read from s (nil: a stream that is
// gone, whose data only counts for the connection).
func (c *conn) consumed(s *Stream, n int) {
	c.mu.Lock()
	c.creditConnLocked(int64(n))
	if s != nil {
		s.creditLocked(int64(n))
	}
	c.mu.Unlock()
	c.signal()
}

// endRemote records the peer's END_STREAM on s.
func (c *conn) endRemote(s *Stream) {
	s.mu.Lock()
	s.eof = true
	s.mu.Unlock()
	s.notify()
	c.mu.Lock()
	s.remoteEnded = true
	if s.localEnded {
		c.forgetLocked(s)
	}
	c.mu.Unlock()
}

func (c *conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	c.mu.Lock()
	s := c.streams[id]
	if s != nil {
		c.mu.Unlock()
		if !c.cfg.server && !s.responded {
			return c.onResponse(s, f)
		}
		// Trailers: they end the stream.
		if !f.StreamEnded() {
			c.resetStream(id, http2.ErrCodeProtocol)
			return nil
		}
		c.endRemote(s)
		return nil
	}
	if !c.cfg.server {
		known := c.knownStreamLocked(id)
		c.mu.Unlock()
		if !known {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil // a stream we reset
	}
	if id%2 == 0 || id <= c.lastPeerStream {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.lastPeerStream = id
	if c.draining || uint32(len(c.streams)) >= c.cfg.maxStreams {
		c.queue(ctrlFrame{typ: http2.FrameRSTStream, stream: id, val: uint32(http2.ErrCodeRefusedStream)})
		c.mu.Unlock()
		c.signal()
		return nil
	}
	s = c.newStreamLocked(id)
	s.ctx, s.cancel = context.WithCancel(c.baseCtx)
	if f.StreamEnded() {
		s.remoteEnded = true
		s.eof = true
	}
	c.mu.Unlock()
	go c.cfg.onStream(s, f.Fields, f.Truncated)
	return nil
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.mu.Lock()
	err := f.ForeachSetting(func(st http2.Setting) error {
		if err := st.Valid(); err != nil {
			return err
		}
		switch st.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(st.Val) - c.peerInitWindow
			c.peerInitWindow = int64(st.Val)
			for _, s := range c.streams {
				s.sendWindow += delta
				if s.sendWindow > maxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = int(st.Val)
		case http2.SettingMaxConcurrentStreams:
			c.peerMaxStreams = st.Val
		case http2.SettingHeaderTableSize:
			c.peerTableSize = min(st.Val, 4096)
		}
		return nil
	})
	if err == nil {
		c.queue(ctrlFrame{typ: http2.FrameSettings, ack: true})
		c.broadcastLocked()
		c.sawSettingsLocked()
	}
	c.mu.Unlock()
	c.signal()
	return err
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		c.sendWindow += inc
		if c.sendWindow > maxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.broadcastLocked()
		return nil
	}
	s := c.streams[f.StreamID]
	if s == nil {
		return nil
	}
	s.sendWindow += inc
	if s.sendWindow > maxWindow {
		c.forgetLocked(s)
		c.queue(ctrlFrame{typ: http2.FrameRSTStream, stream: s.id, val: uint32(http2.ErrCodeFlowControl)})
		go func() {
			c.signal()
			s.fail(resetError{code: http2.ErrCodeFlowControl})
		}()
		return nil
	}
	c.broadcastLocked()
	return nil
}

func (c *conn) onReset(f *http2.RSTStreamFrame) {
	c.mu.Lock()
	s := c.streams[f.StreamID]
	if s == nil {
		c.mu.Unlock()
		return
	}
	c.forgetLocked(s)
	c.mu.Unlock()
	// RST_STREAM(NO_ERROR) after a complete response asks us to stop sending, without error
	// (RFC 9113 §8.1): what was received stays readable (see Stream.fail).
	s.fail(resetError{code: f.ErrCode, remote: true})
}

func (c *conn) onGoAway(f *http2.GoAwayFrame) {
	if f.ErrCode != http2.ErrCodeNo {
		c.cfg.log.Debug("GOAWAY received", "remote", c.remote, "code", f.ErrCode, "debug", string(f.DebugData()))
	}
	c.mu.Lock()
	c.draining = true
	var refused []*Stream
	if !c.cfg.server {
		for id, s := range c.streams {
			if id > f.LastStreamID {
				refused = append(refused, s)
			}
		}
		for _, s := range refused {
			c.forgetLocked(s)
		}
	}
	c.checkIdleLocked()
	c.mu.Unlock()
	for _, s := range refused {
		s.fail(errStreamRefused)
	}
}
