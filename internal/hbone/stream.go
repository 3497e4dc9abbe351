package hbone

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"
)

// Stream is one CONNECT stream as a net.Conn: Pool.Dial returns it, and the server relays each
// accepted stream to its upstream with it. Read returns the bytes the peer sends, Write sends
// bytes, CloseWrite ends the sending direction with END_STREAM while reading goes on until the
// peer ends its own direction, and Close ends both, resetting the stream (RST_STREAM) if it has
// not finished. Each direction ends independently, as TCP half-close does. Deadlines are
// supported in both directions. A Stream must be closed; until both directions have ended it
// holds a stream slot of its connection.
type Stream struct {
	c        *conn
	id       uint32
	local    net.Addr
	remote   net.Addr
	peer     spiffeid.ID
	counters Counters

	// Server streams: the context handed to the Handler, ended with the stream.
	ctx    context.Context
	cancel context.CancelFunc

	// Under c.mu.
	sendWindow  int64 // what the peer lets us send
	recvAvail   int64 // what the peer may still send
	recvUnacked int64 // read but not yet returned with WINDOW_UPDATE
	localEnded  bool  // END_STREAM sent (or queued)
	remoteEnded bool  // END_STREAM received
	forgotten   bool  // no longer on the connection: ended both ways, or reset
	sendErr     error // why writing is over, when it is
	responded   bool  // client: response HEADERS received
	status      int
	respErr     error
	respReady   chan struct{} // client: closed when status or respErr is set

	// Under mu: what was received.
	mu       sync.Mutex
	buf      recvBuffer
	eof      bool  // the peer ended its direction
	recvErr  error // the stream failed: reads return it once buf is empty
	discard  bool  // closed: received data is dropped
	readable chan struct{}

	rmu sync.Mutex // serialises reads
	wmu sync.Mutex // serialises writes

	rd, wd deadline

	closeOnce sync.Once
	done      chan struct{}
}

var _ net.Conn = (*Stream)(nil)

// PeerID returns the identity the server presented.
func (s *Stream) PeerID() spiffeid.ID { return s.peer }

// Counters returns the stream's byte counters: Sent is what was written, Received what was read.
func (s *Stream) Counters() *Counters { return &s.counters }

// LocalAddr returns the local address of the TCP connection that carries the stream.
func (s *Stream) LocalAddr() net.Addr { return s.local }

// RemoteAddr returns, for a stream from Pool.Dial, the :authority of the stream: the
// destination the server connects to; for a server stream, the client's address.
func (s *Stream) RemoteAddr() net.Addr { return s.remote }

// notify wakes a reader waiting for data.
func (s *Stream) notify() {
	select {
	case s.readable <- struct{}{}:
	default:
	}
}

// fail ends the stream with err: writes fail at once, and reads return err once what was
// received has been read. After the peer ended its direction, reads end with EOF instead, so a
// complete response stays readable when the peer resets the stream with NO_ERROR to stop our
// sending (RFC 9113 §8.1).
func (s *Stream) fail(err error) {
	c := s.c
	c.mu.Lock()
	if s.sendErr == nil {
		var re resetError
		if errors.As(err, &re) && re.code == http2.ErrCodeNo {
			s.sendErr = errPeerClosed
		} else {
			s.sendErr = err
		}
	}
	if s.respReady != nil && !s.responded && s.respErr == nil {
		s.respErr = err
		close(s.respReady)
	}
	c.broadcastLocked()
	c.mu.Unlock()
	s.mu.Lock()
	if !s.eof && s.recvErr == nil {
		s.recvErr = err
	}
	s.mu.Unlock()
	s.notify()
}

// Read reads bytes the peer sent. It returns io.EOF after the peer ended its direction.
func (s *Stream) Read(p []byte) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	return s.read(p)
}

// read is Read without the lock.
func (s *Stream) read(p []byte) (int, error) {
	for {
		if isClosed(s.done) {
			return 0, net.ErrClosed
		}
		s.mu.Lock()
		n := s.buf.read(p)
		eof, err := s.eof, s.recvErr
		s.mu.Unlock()
		if n > 0 {
			s.counters.received.Add(int64(n))
			s.c.consumed(s, n)
			return n, nil
		}
		if err != nil {
			return 0, s.opErr("read", err)
		}
		if eof {
			return 0, io.EOF
		}
		select {
		case <-s.readable:
		case <-s.rd.wait():
			return 0, os.ErrDeadlineExceeded
		case <-s.done:
			return 0, net.ErrClosed
		}
	}
}

// WriteTo copies what the peer sends to w until EOF, with pooled buffers that are held only
// while there is data to move. It is what io.Copy uses when copying from a Stream.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	var (
		b       copyBuf
		written int64
	)
	defer b.release()
	for {
		buf := b.get()
		nr, rerr := s.read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			written += int64(nw)
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
		if nr < len(buf) {
			b.release() // hold no buffer while waiting for the next data
		}
	}
}

// opErr wraps err for callers: deadline and Close errors stay as they are.
func (s *Stream) opErr(op string, err error) error {
	if err == nil || err == os.ErrDeadlineExceeded || err == net.ErrClosed {
		return err
	}
	if isClosed(s.done) {
		return net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "hbone", Source: s.local, Addr: s.remote, Err: err}
}

// Write sends p to the peer. It blocks while HTTP/2 flow control holds the data back.
func (s *Stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var n int
	for len(p) > 0 {
		k, err := s.awaitSend(len(p))
		if err == nil {
			err = s.c.writeData(s.id, p[:k])
		}
		if err != nil {
			return n, s.opErr("write", err)
		}
		s.counters.sent.Add(int64(k))
		n += k
		p = p[k:]
	}
	return n, nil
}

// awaitSend waits until the stream and the connection windows allow sending, and takes up to
// want bytes of both (never more than the peer's largest frame).
func (s *Stream) awaitSend(want int) (int, error) {
	c := s.c
	for {
		if isClosed(s.done) {
			return 0, net.ErrClosed
		}
		c.mu.Lock()
		var err error
		switch {
		case s.localEnded:
			err = errWriteAfterEnd
		case s.sendErr != nil:
			err = s.sendErr
		case c.closed:
			err = c.err
		case s.forgotten:
			err = errPeerClosed
		}
		if err != nil {
			c.mu.Unlock()
			return 0, err
		}
		n := min(int64(want), s.sendWindow, c.sendWindow, int64(c.peerMaxFrame))
		if n > 0 {
			s.sendWindow -= n
			c.sendWindow -= n
			c.mu.Unlock()
			return int(n), nil
		}
		ch := c.windowCh
		c.mu.Unlock()
		select {
		case <-ch:
		case <-s.wd.wait():
			return 0, os.ErrDeadlineExceeded
		case <-s.done:
			return 0, net.ErrClosed
		}
	}
}

// ReadFrom copies r to the stream until EOF with pooled buffers. It is what io.Copy uses when
// copying to a Stream; it does not half-close the stream at the end.
func (s *Stream) ReadFrom(r io.Reader) (int64, error) {
	return copyBuffered(writerOnly{s}, r, nil)
}

// writerOnly hides ReadFrom so copyBuffered does not recurse.
type writerOnly struct{ io.Writer }

// CloseWrite ends the sending direction with END_STREAM: the peer reads EOF (the server then
// half-closes its upstream). Reads continue until the peer ends its direction.
func (s *Stream) CloseWrite() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if isClosed(s.done) {
		return net.ErrClosed
	}
	c := s.c
	c.mu.Lock()
	if s.localEnded || s.forgotten {
		err := s.sendErr
		c.mu.Unlock()
		return err
	}
	s.localEnded = true
	c.queue(ctrlFrame{typ: http2.FrameData, stream: s.id})
	if s.remoteEnded {
		c.forgetLocked(s)
	}
	c.mu.Unlock()
	c.signal()
	return nil
}

// Close ends the stream in both directions. A stream that has not finished is reset
// (RST_STREAM CANCEL), which closes the upstream connection on the server.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		c := s.c
		c.mu.Lock()
		if !s.forgotten {
			c.queue(ctrlFrame{typ: http2.FrameRSTStream, stream: s.id, val: uint32(http2.ErrCodeCancel)})
			c.forgetLocked(s)
		}
		if s.respReady != nil && !s.responded && s.respErr == nil {
			s.respErr = net.ErrClosed
			close(s.respReady)
		}
		c.mu.Unlock()
		s.mu.Lock()
		s.discard = true
		dropped := s.buf.reset()
		s.mu.Unlock()
		c.consumed(nil, dropped)
		c.signal()
		s.rd.set(time.Time{})
		s.wd.set(time.Time{})
	})
	return nil
}

// SetDeadline sets the read and write deadlines.
func (s *Stream) SetDeadline(t time.Time) error {
	s.rd.set(t)
	s.wd.set(t)
	return nil
}

// SetReadDeadline sets the deadline for Read and WriteTo; it applies to calls in progress.
func (s *Stream) SetReadDeadline(t time.Time) error {
	s.rd.set(t)
	return nil
}

// SetWriteDeadline sets the deadline for Write; it applies to calls in progress.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.wd.set(t)
	return nil
}

// deadline is a settable deadline: wait returns a channel closed once it has passed.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{}
}

func makeDeadline() deadline { return deadline{cancel: make(chan struct{})} }

// set arms the deadline at t; the zero time disarms it.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait until it has closed cancel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// creditLocked returns the stream window of n bytes read, sending WINDOW_UPDATE once enough
// has accumulated; c.mu is held, the caller signals. A stream whose peer has ended its
// direction needs no more window.
func (s *Stream) creditLocked(n int64) {
	if s.remoteEnded || s.forgotten {
		return
	}
	s.recvUnacked += n
	if s.recvUnacked >= streamUpdateThreshold {
		s.c.queue(ctrlFrame{typ: http2.FrameWindowUpdate, stream: s.id, val: uint32(s.recvUnacked)})
		s.recvAvail += s.recvUnacked
		s.recvUnacked = 0
	}
}
