package hbone

import (
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The server side of a connection: answering streams.

// respond sends the response HEADERS of a server stream; end also ends the server's direction.
func (c *conn) respond(s *Stream, status int, end bool) error {
	fields := [1]hpack.HeaderField{{Name: ":status", Value: statusText(status)}}
	c.lockWrite()
	c.mu.Lock()
	gone := s.forgotten
	c.mu.Unlock()
	var err error
	if gone {
		err = errPeerClosed
	} else {
		err = c.writeHeadersLocked(s.id, fields[:], end)
	}
	c.unlockWrite()
	if err != nil || !end {
		return err
	}
	c.mu.Lock()
	s.localEnded = true
	if !s.remoteEnded {
		// The request is refused: ask the client to stop sending (RFC 9113 §8.1).
		c.queue(ctrlFrame{typ: http2.FrameRSTStream, stream: s.id, val: uint32(http2.ErrCodeNo)})
	}
	c.forgetLocked(s)
	c.mu.Unlock()
	c.signal()
	return nil
}

func statusText(code int) string {
	if code >= 100 && code <= 999 {
		return string([]byte{byte('0' + code/100), byte('0' + code/10%10), byte('0' + code%10)})
	}
	return "500"
}
