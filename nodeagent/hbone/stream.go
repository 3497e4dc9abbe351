package hbone

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// errPeerClosed is returned by Write once the server has stopped accepting data on the stream.
var errPeerClosed = errors.New("hbone: stream closed by peer")

// Stream is one CONNECT stream, returned by Pool.Dial as a net.Conn. Read returns the bytes the
// server sends (the response body), Write sends bytes (the request body), CloseWrite ends the
// sending direction with END_STREAM, and Close ends both, resetting the stream if it has not
// finished. Deadlines are supported in both directions. A Stream must be closed; until then it
// holds a stream slot of its pooled connection (unless both directions have ended).
type Stream struct {
	body     io.ReadCloser // the response body
	req      *bodyPipe     // the request body
	cancel   context.CancelFunc
	local    net.Addr
	remote   net.Addr
	peer     spiffeid.ID
	counters Counters

	rmu      sync.Mutex    // serialises reads
	ready    chan struct{} // the reader goroutine saw data (or the end) in body
	consumed chan struct{} // a read has taken what ready announced
	final    chan struct{} // closed when body has ended: reads go straight to it
	startRd  sync.Once

	wmu sync.Mutex // serialises writes

	rd, wd deadline

	closeOnce sync.Once
	done      chan struct{}
}

var _ net.Conn = (*Stream)(nil)

func newStream(resp *http.Response, req *bodyPipe, cancel context.CancelFunc, local, remote net.Addr) *Stream {
	s := &Stream{
		body:     resp.Body,
		req:      req,
		cancel:   cancel,
		local:    local,
		remote:   remote,
		ready:    make(chan struct{}),
		consumed: make(chan struct{}, 1),
		final:    make(chan struct{}),
		rd:       makeDeadline(),
		wd:       makeDeadline(),
		done:     make(chan struct{}),
	}
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		s.peer, _ = x509svid.IDFromCert(resp.TLS.PeerCertificates[0])
	}
	return s
}

// PeerID returns the identity the server presented.
func (s *Stream) PeerID() spiffeid.ID { return s.peer }

// Counters returns the stream's byte counters: Sent is what was written, Received what was read.
func (s *Stream) Counters() *Counters { return &s.counters }

// LocalAddr returns the local address of the TCP connection that carries the stream.
func (s *Stream) LocalAddr() net.Addr { return s.local }

// RemoteAddr returns the :authority of the stream: the destination the server connects to.
func (s *Stream) RemoteAddr() net.Addr { return s.remote }

// Read reads bytes the server sent. It returns io.EOF after the server ended its direction.
func (s *Stream) Read(p []byte) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	announced, err := s.waitReadable()
	if err != nil {
		return 0, err
	}
	n, err := s.body.Read(p)
	s.afterRead(announced)
	s.counters.received.Add(int64(n))
	return n, s.readErr(err)
}

// WriteTo copies what the server sends to w until EOF, with pooled buffers that are held only
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
		announced, err := s.waitReadable()
		if err != nil {
			return written, err
		}
		buf := b.get()
		nr, rerr := s.body.Read(buf)
		s.afterRead(announced)
		if nr > 0 {
			s.counters.received.Add(int64(nr))
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
			return written, s.readErr(rerr)
		}
		b.adapt(nr, len(buf))
		b.release() // hold no buffer while waiting for the next data
	}
}

// waitReadable waits until a read of the body will not block, honouring the read deadline and
// Close. The body (net/http's HTTP/2 response body) cannot be interrupted, so a goroutine waits
// for data with zero-length reads, which block until data or the end of the stream arrives
// without consuming anything, and the actual read happens here. It reports whether a readiness
// announcement was taken, which afterRead acknowledges.
func (s *Stream) waitReadable() (bool, error) {
	s.startRd.Do(func() { go s.readiness() })
	select {
	case <-s.done:
		return false, net.ErrClosed
	default:
	}
	select {
	case <-s.final:
		return false, nil
	case <-s.ready:
		return true, nil
	case <-s.rd.wait():
		return false, os.ErrDeadlineExceeded
	case <-s.done:
		return false, net.ErrClosed
	}
}

func (s *Stream) afterRead(announced bool) {
	if announced {
		s.consumed <- struct{}{}
	}
}

// readiness announces each time the body has something to read. Should a zero-length read ever
// return at once without data, the read that follows blocks in the body as an ordinary read
// would: data stays correct, only the read deadline is no longer honoured.
func (s *Stream) readiness() {
	for {
		_, err := s.body.Read(nil)
		select {
		case s.ready <- struct{}{}:
		case <-s.done:
			return
		}
		select {
		case <-s.consumed:
		case <-s.done:
			return
		}
		if err != nil {
			close(s.final)
			return
		}
	}
}

// readErr translates body errors: EOF stays EOF, a read after Close is net.ErrClosed.
func (s *Stream) readErr(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	select {
	case <-s.done:
		return net.ErrClosed
	default:
	}
	return &net.OpError{Op: "read", Net: "hbone", Source: s.local, Addr: s.remote, Err: err}
}

// Write sends p to the server. It blocks while HTTP/2 flow control holds the data back.
func (s *Stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	n, err := s.req.write(p, s.done, &s.wd)
	s.counters.sent.Add(int64(n))
	if err != nil && err != os.ErrDeadlineExceeded && err != net.ErrClosed {
		err = &net.OpError{Op: "write", Net: "hbone", Source: s.local, Addr: s.remote, Err: err}
	}
	return n, err
}

// ReadFrom copies r to the stream until EOF with pooled buffers. It is what io.Copy uses when
// copying to a Stream; it does not half-close the stream at the end.
func (s *Stream) ReadFrom(r io.Reader) (int64, error) {
	return copyBuffered(writerOnly{s}, r, nil)
}

// writerOnly hides ReadFrom so copyBuffered does not recurse.
type writerOnly struct{ io.Writer }

// CloseWrite ends the sending direction: the server reads EOF and half-closes its upstream.
// Reads continue until the server ends its direction.
func (s *Stream) CloseWrite() error {
	s.req.closeWrite()
	return nil
}

// Close ends the stream in both directions. A stream that has not finished is reset
// (RST_STREAM), which closes the upstream connection on the server.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		_ = s.body.Close()
		s.cancel()
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

// bodyPipe is the request body of a stream: Write hands bytes straight to the HTTP/2 transport's
// read, without an intermediate buffer, as net.Pipe does.
type bodyPipe struct {
	wrCh      chan []byte   // a write offers its bytes
	rdCh      chan int      // the transport answers how many it took
	eof       chan struct{} // CloseWrite
	eofOnce   sync.Once
	rclosed   chan struct{} // the transport closed the body: it reads no more
	rcloseOne sync.Once
	done      <-chan struct{} // the stream was closed
}

func newBodyPipe(done <-chan struct{}) *bodyPipe {
	return &bodyPipe{
		wrCh:    make(chan []byte),
		rdCh:    make(chan int),
		eof:     make(chan struct{}),
		rclosed: make(chan struct{}),
		done:    done,
	}
}

// Read is called by the HTTP/2 transport.
func (p *bodyPipe) Read(b []byte) (int, error) {
	select {
	case <-p.done:
		return 0, net.ErrClosed
	default:
	}
	select {
	case w := <-p.wrCh:
		n := copy(b, w)
		p.rdCh <- n
		return n, nil
	case <-p.eof:
		return 0, io.EOF
	case <-p.done:
		return 0, net.ErrClosed
	case <-p.rclosed:
		// The transport closes the body to unblock this read when the stream is aborted.
		return 0, net.ErrClosed
	}
}

// Close is called by the HTTP/2 transport when it stops reading the body.
func (p *bodyPipe) Close() error {
	p.rcloseOne.Do(func() { close(p.rclosed) })
	return nil
}

func (p *bodyPipe) closeWrite() {
	p.eofOnce.Do(func() { close(p.eof) })
}

func (p *bodyPipe) write(b []byte, done <-chan struct{}, d *deadline) (int, error) {
	if isClosed(done) {
		return 0, net.ErrClosed
	}
	select {
	case <-p.eof:
		return 0, errors.New("hbone: write after CloseWrite")
	case <-p.rclosed:
		return 0, errPeerClosed
	case <-d.wait():
		return 0, os.ErrDeadlineExceeded
	default:
	}
	var n int
	for len(b) > 0 {
		select {
		case p.wrCh <- b:
			nw := <-p.rdCh
			b = b[nw:]
			n += nw
		case <-p.rclosed:
			return n, errPeerClosed
		case <-done:
			return n, net.ErrClosed
		case <-d.wait():
			return n, os.ErrDeadlineExceeded
		}
	}
	return n, nil
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
