package hbone

import (
	"math"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The client side of a connection: stream slots for the pool, opening streams, responses.

// onResponse handles the response HEADERS of a client stream.
func (c *conn) onResponse(s *Stream, f *http2.MetaHeadersFrame) error {
	status := 0
	if v := f.PseudoValue("status"); len(v) == 3 {
		for _, d := range []byte(v) {
			if d < '0' || d > '9' {
				status = 0
				break
			}
			status = status*10 + int(d-'0')
		}
	}
	if status < 100 {
		c.resetStream(s.id, http2.ErrCodeProtocol)
		return nil
	}
	if status < 200 {
		if f.StreamEnded() {
			c.resetStream(s.id, http2.ErrCodeProtocol)
		}
		return nil // informational
	}
	c.mu.Lock()
	if s.forgotten || s.respErr != nil { // closed or reset meanwhile
		c.mu.Unlock()
		return nil
	}
	s.responded = true
	s.status = status
	close(s.respReady)
	c.mu.Unlock()
	if f.StreamEnded() {
		c.endRemote(s)
	}
	return nil
}

func (c *conn) sawSettingsLocked() {
	if !c.settingsSeen {
		c.settingsSeen = true
		close(c.settingsCh)
	}
}

// reserve takes a stream slot on a client connection if it has one free below limit and the
// peer's SETTINGS_MAX_CONCURRENT_STREAMS. Until the peer's SETTINGS have arrived, which happens
// at once on a new connection, the limit is unknown: one stream may start, and reserve returns
// a channel to wait on for the others, so that no stream beyond the server's limit is opened
// (and refused).
func (c *conn) reserve(limit int) (ok bool, wait <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining || c.closed {
		return false, nil
	}
	if !c.settingsSeen {
		limit = 1
	} else if l := int64(c.peerMaxStreams); l < int64(limit) {
		limit = int(l)
	}
	if c.inFlightLocked() >= limit {
		if !c.settingsSeen {
			return false, c.settingsCh
		}
		return false, nil
	}
	c.reserved++
	c.stopIdleLocked()
	return true, nil
}

// unusable reports whether the connection takes no new streams and has none left.
func (c *conn) unusable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed || (c.draining && c.inFlightLocked() == 0)
}

// open starts a client stream with the request header fields, using a reserved slot.
func (c *conn) open(fields []hpack.HeaderField) (*Stream, error) {
	c.lockWrite()
	defer c.unlockWrite()
	c.mu.Lock()
	c.reserved--
	if c.closed || c.draining || c.werr != nil {
		err := c.err
		if err == nil {
			err = errStreamRefused
		}
		c.checkIdleLocked()
		c.mu.Unlock()
		return nil, err
	}
	id := c.nextStreamID
	c.nextStreamID += 2
	if c.nextStreamID > math.MaxInt32 {
		c.draining = true // stream IDs exhausted
	}
	s := c.newStreamLocked(id)
	c.mu.Unlock()
	if err := c.writeHeadersLocked(id, fields, false); err != nil {
		return nil, err
	}
	return s, nil
}
