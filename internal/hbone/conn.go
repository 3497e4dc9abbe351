package hbone

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

var (
	// errStreamRefused means the stream was not processed by the server (REFUSED_STREAM, or
	// beyond the last stream of a GOAWAY, or the connection stopped taking streams): it is safe
	// to retry it on another connection.
	errStreamRefused = errors.New("hbone: stream refused")
	// errPeerClosed is returned by Write once the peer has stopped accepting data on the stream.
	errPeerClosed       = errors.New("hbone: stream closed by peer")
	errWriteAfterEnd    = errors.New("hbone: write after CloseWrite")
	errKeepAliveTimeout = errors.New("hbone: keep-alive timeout: peer did not answer PING")
	errGoAway           = errors.New("hbone: connection drained after GOAWAY")
	errConnClosed       = errors.New("hbone: connection closed")
)

// resetError is the error of a stream that was reset (RST_STREAM), by the peer when remote.
type resetError struct {
	code   http2.ErrCode
	remote bool
}

func (e resetError) Error() string {
	if e.remote {
		return fmt.Sprintf("hbone: stream reset by peer: %v", e.code)
	}
	return fmt.Sprintf("hbone: stream reset: %v", e.code)
}

// connConfig are the parameters of one HTTP/2 connection.
type connConfig struct {
	server            bool
	maxStreams        uint32 // server: SETTINGS_MAX_CONCURRENT_STREAMS we announce and enforce
	maxHeaderListSize uint32 // largest header list we accept
	keepAliveInterval time.Duration
	keepAliveTimeout  time.Duration
	idleTimeout       time.Duration // client: close after this long without streams
	log               *slog.Logger
	// onStream (server) receives every new stream with its request header fields.
	onStream func(s *Stream, fields []hpack.HeaderField, truncated bool)
	// onClose is called once, after the connection closed.
	onClose func(c *conn)
	// drainGrace (server) is how long a connection that drained after GOAWAY waits for the
	// client to close it.
	drainGrace time.Duration
}

// conn is one HTTP/2 connection over TLS, either side. It carries CONNECT streams and knows
// nothing of HTTP semantics beyond what HBONE needs: header blocks, DATA, flow control,
// SETTINGS, PING, RST_STREAM and GOAWAY. Each direction of a stream ends independently
// (END_STREAM), as TCP half-close does.
//
// One goroutine reads frames (readLoop) and never writes to the socket, so it never waits for
// the peer to read; frames it must send (WINDOW_UPDATE, PING and SETTINGS acknowledgements,
// RST_STREAM) are queued and written by writeLoop or by the next stream that writes. Streams
// write their DATA frames themselves under wmu, straight from the caller's buffer into a
// buffered writer that is flushed by the last writer in line, so concurrent writers share
// flushes and a lone writer flushes at once.
type conn struct {
	cfg      connConfig
	nc       net.Conn // the TLS connection
	raw      net.Conn // the TCP connection under it
	tlsState tls.ConnectionState
	local    net.Addr
	remote   net.Addr
	fr       *http2.Framer // reads in readLoop only; writes under wmu

	// Writing, under wmu.
	wmu     sync.Mutex
	writers atomic.Int32 // goroutines holding or waiting for wmu
	bw      *bufio.Writer
	batch   *batchConn // the TCP connection, when it batches TLS records
	henc    *hpack.Encoder
	hbuf    bytes.Buffer
	hdr     [9]byte
	werr    error
	encSize uint32 // the hpack table size limit applied to henc

	// Queued control frames, under cmu (a leaf lock).
	cmu        sync.Mutex
	ctrl       []ctrlFrame
	ctrlSpare  []ctrlFrame
	ctrlQueued atomic.Bool
	wake       chan struct{} // tells writeLoop that ctrl has frames

	// Connection state, under mu.
	mu              sync.Mutex
	streams         map[uint32]*Stream
	sendWindow      int64 // what the peer lets us send on the connection
	recvAvail       int64 // what the peer may still send on the connection
	recvUnacked     int64 // consumed but not yet returned with WINDOW_UPDATE
	peerInitWindow  int64
	peerMaxFrame    int
	peerMaxStreams  uint32
	peerTableSize   uint32
	windowCh        chan struct{} // closed and replaced when a send window grows or a stream ends
	reserved        int           // client: slots reserved by the pool, not yet opened
	nextStreamID    uint32        // client
	lastPeerStream  uint32        // server: highest stream the peer opened
	draining        bool          // no new streams: GOAWAY sent or received, idle, IDs exhausted
	goAwaySent      bool
	closed          bool
	err             error
	idleTimer       *time.Timer
	drainCloseArmed bool
	settingsSeen    bool
	settingsCh      chan struct{} // closed once the peer's first SETTINGS arrived (or on close)

	framesRead atomic.Uint64 // for keep-alive
	kaMu       sync.Mutex
	kaSeen     uint64
	kaPinged   bool
	kaTimer    *time.Timer

	baseCtx   context.Context // server: parent of stream contexts
	cancelCtx context.CancelFunc
	closeOnce sync.Once
	done      chan struct{}
}

// writeBufferSize is one TLS record: small frames written together share records, and large
// DATA frames go through with at most one record copied.
const writeBufferSize = 16 << 10

// ctrlFrame is a frame queued for writeLoop.
type ctrlFrame struct {
	typ    http2.FrameType
	stream uint32
	val    uint32 // WINDOW_UPDATE increment, RST_STREAM/GOAWAY code
	last   uint32 // GOAWAY last stream ID
	ack    bool   // PING and SETTINGS
	ping   [8]byte
}

func newConn(nc net.Conn, cfg connConfig) *conn {
	c := &conn{
		cfg:            cfg,
		nc:             nc,
		local:          nc.LocalAddr(),
		remote:         nc.RemoteAddr(),
		bw:             bufio.NewWriterSize(nc, writeBufferSize),
		wake:           make(chan struct{}, 1),
		streams:        make(map[uint32]*Stream),
		sendWindow:     initialWindow,
		recvAvail:      initialWindow,
		peerInitWindow: initialWindow,
		peerMaxFrame:   minFrameSize,
		peerMaxStreams: math.MaxUint32, // unlimited until the peer's SETTINGS say otherwise
		peerTableSize:  4096,
		encSize:        4096,
		windowCh:       make(chan struct{}),
		settingsCh:     make(chan struct{}),
		nextStreamID:   1,
		done:           make(chan struct{}),
	}
	c.raw = nc
	if tc, ok := nc.(*tls.Conn); ok {
		c.tlsState = tc.ConnectionState()
		c.raw = tc.NetConn()
		c.batch, _ = c.raw.(*batchConn)
		c.local = c.raw.LocalAddr()
		c.remote = c.raw.RemoteAddr()
	}
	c.baseCtx, c.cancelCtx = context.WithCancel(context.Background())
	// tls.Conn keeps the decrypted record, so reads need no buffer of their own.
	c.fr = http2.NewFramer(c.bw, nc)
	c.fr.SetMaxReadFrameSize(MaxFrameSize)
	c.fr.SetReuseFrames()
	c.fr.ReadMetaHeaders = hpack.NewDecoder(maxHeaderTable, nil)
	c.fr.MaxHeaderListSize = cfg.maxHeaderListSize
	c.henc = hpack.NewEncoder(&c.hbuf)
	return c
}

// start sends our connection preface (the client's magic string first), SETTINGS and the
// connection window, then runs the read and write loops. It returns once the preface is written.
func (c *conn) start() error {
	c.lockWrite()
	if !c.cfg.server {
		_, _ = c.bw.WriteString(http2.ClientPreface)
	}
	settings := []http2.Setting{
		{ID: http2.SettingInitialWindowSize, Val: StreamWindow},
		{ID: http2.SettingMaxFrameSize, Val: MaxFrameSize},
		{ID: http2.SettingMaxHeaderListSize, Val: c.cfg.maxHeaderListSize},
	}
	if c.cfg.server {
		settings = append(settings, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.cfg.maxStreams})
	} else {
		settings = append(settings, http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	}
	_ = c.fr.WriteSettings(settings...)
	_ = c.fr.WriteWindowUpdate(0, ConnectionWindow-initialWindow)
	c.mu.Lock()
	c.recvAvail = ConnectionWindow
	c.mu.Unlock()
	err := c.bw.Flush()
	if err != nil {
		c.werr = err
	}
	c.unlockWrite()
	if err != nil {
		c.close(fmt.Errorf("hbone: write preface: %w", err))
		return err
	}
	c.kaMu.Lock()
	c.kaTimer = time.AfterFunc(c.cfg.keepAliveInterval, c.keepAlive)
	c.kaMu.Unlock()
	c.mu.Lock()
	c.checkIdleLocked() // a connection that never carries a stream is released too
	c.mu.Unlock()
	go c.writeLoop()
	go c.readLoop()
	return nil
}

// newStreamLocked registers a stream with id; mu is held.
func (c *conn) newStreamLocked(id uint32) *Stream {
	s := &Stream{
		c:          c,
		id:         id,
		local:      c.local,
		remote:     c.remote,
		sendWindow: c.peerInitWindow,
		recvAvail:  StreamWindow,
		readable:   make(chan struct{}, 1),
		rd:         makeDeadline(),
		wd:         makeDeadline(),
		done:       make(chan struct{}),
	}
	if !c.cfg.server {
		s.respReady = make(chan struct{})
	}
	c.streams[id] = s
	c.stopIdleLocked()
	return s
}

// forgetLocked removes a stream that has ended in both directions or was reset; mu is held.
func (c *conn) forgetLocked(s *Stream) {
	if s.forgotten {
		return
	}
	s.forgotten = true
	if c.streams[s.id] == s {
		delete(c.streams, s.id)
	}
	if s.cancel != nil {
		s.cancel()
	}
	c.broadcastLocked()
	c.checkIdleLocked()
}

// broadcastLocked wakes every writer waiting for flow-control credit or a state change.
func (c *conn) broadcastLocked() {
	close(c.windowCh)
	c.windowCh = make(chan struct{})
}

// inFlightLocked counts the streams that occupy a slot.
func (c *conn) inFlightLocked() int { return len(c.streams) + c.reserved }

// checkIdleLocked starts the idle timer of a client connection, or closes a draining one,
// once it carries no stream.
func (c *conn) checkIdleLocked() {
	if c.inFlightLocked() > 0 || c.closed {
		return
	}
	if c.draining {
		if !c.drainCloseArmed {
			c.drainCloseArmed = true
			go c.closeDrained()
		}
		return
	}
	if c.cfg.idleTimeout > 0 {
		if c.idleTimer == nil {
			c.idleTimer = time.AfterFunc(c.cfg.idleTimeout, c.closeIfIdle)
		} else {
			c.idleTimer.Reset(c.cfg.idleTimeout)
		}
	}
}

func (c *conn) stopIdleLocked() {
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
}

func (c *conn) closeIfIdle() {
	c.mu.Lock()
	idle := c.inFlightLocked() == 0 && !c.draining
	if idle {
		c.draining = true
	}
	c.mu.Unlock()
	if idle {
		c.cfg.log.Debug("closing idle connection", "remote", c.remote)
		c.close(errConnClosed)
	}
}

// closeDrained closes a connection that drained after GOAWAY. The server gives the client a
// moment to close first, so that nothing the client sent in the meantime turns into a TCP
// reset that could hide the GOAWAY from it.
func (c *conn) closeDrained() {
	if c.cfg.server && c.cfg.drainGrace > 0 {
		t := time.NewTimer(c.cfg.drainGrace)
		defer t.Stop()
		select {
		case <-c.done:
		case <-t.C:
		}
	}
	c.close(errGoAway)
}

// goAway stops the connection from taking new streams: GOAWAY with the last stream the peer
// opened, then the connection closes once its streams have ended.
func (c *conn) goAway(code http2.ErrCode) {
	c.mu.Lock()
	if c.goAwaySent || c.closed {
		c.mu.Unlock()
		return
	}
	c.goAwaySent = true
	c.draining = true
	c.queue(ctrlFrame{typ: http2.FrameGoAway, last: c.lastPeerStream, val: uint32(code)})
	c.checkIdleLocked()
	c.mu.Unlock()
	c.signal()
}

// close ends the connection and every stream on it.
func (c *conn) close(err error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.draining = true
		c.err = err
		streams := make([]*Stream, 0, len(c.streams))
		for _, s := range c.streams {
			streams = append(streams, s)
		}
		for _, s := range streams {
			c.forgetLocked(s)
		}
		c.stopIdleLocked()
		c.broadcastLocked()
		c.sawSettingsLocked()
		c.mu.Unlock()
		close(c.done)
		c.cancelCtx()
		// The TCP connection, not the TLS one: tls.Conn.Close sends close_notify and can block
		// for seconds on a peer that stopped reading. GOAWAY is HTTP/2's orderly close.
		_ = c.raw.Close()
		c.kaMu.Lock()
		if c.kaTimer != nil {
			c.kaTimer.Stop()
		}
		c.kaMu.Unlock()
		for _, s := range streams {
			s.fail(fmt.Errorf("%w: %w", errConnClosed, err))
		}
		if c.cfg.onClose != nil {
			c.cfg.onClose(c)
		}
	})
}

// isClosed reports whether the connection has ended.
func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// keepAlive runs every keep-alive interval: when no frame arrived since the last run it sends a
// PING, and when none arrived within the timeout after a PING, it closes the connection. It
// never waits for the socket, so a peer that stopped reading is detected too.
func (c *conn) keepAlive() {
	c.kaMu.Lock()
	defer c.kaMu.Unlock()
	if isClosed(c.done) {
		return
	}
	n := c.framesRead.Load()
	switch {
	case n != c.kaSeen:
		c.kaSeen, c.kaPinged = n, false
		c.kaTimer.Reset(c.cfg.keepAliveInterval)
	case c.kaPinged:
		c.cfg.log.Debug("peer did not answer PING", "remote", c.remote)
		go c.close(errKeepAliveTimeout)
	default:
		c.kaPinged = true
		var data [8]byte
		binary.BigEndian.PutUint64(data[:], n)
		c.queue(ctrlFrame{typ: http2.FramePing, ping: data})
		c.signal()
		c.kaTimer.Reset(c.cfg.keepAliveTimeout)
	}
}

// fail sends GOAWAY with code, best effort, and closes the connection.
func (c *conn) fail(code http2.ErrCode, err error) {
	c.mu.Lock()
	c.draining = true
	c.queue(ctrlFrame{typ: http2.FrameGoAway, last: c.lastPeerStream, val: uint32(code)})
	c.mu.Unlock()
	t := time.AfterFunc(time.Second, func() { c.close(err) })
	c.lockWrite()
	c.unlockWrite()
	t.Stop()
	c.close(err)
}
