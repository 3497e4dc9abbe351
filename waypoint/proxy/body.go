package proxy

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// recorder streams a request body to the upstream while keeping what has been read, up to a
// limit, so that a retry or a mirror can send it again — as Envoy buffers a request for retries
// while forwarding it. Forwarding never waits for the whole body: a gRPC stream or a long upload
// flows as it arrives. Once more than the limit has been read, nothing is kept and the request
// can no longer be replayed.
type recorder struct {
	src   io.ReadCloser
	limit int64

	readMu sync.Mutex // one reader of src at a time; held while a read blocks
	mu     sync.Mutex // the fields below; never held while src blocks
	buf    []byte
	total  int64 // bytes read from src
	over   bool  // more than limit was read: buf is dropped
	eof    bool
	err    error         // src's error other than EOF
	done   chan struct{} // closed when the body is complete, too large to keep, or failed
}

func newRecorder(src io.ReadCloser, limit int64) *recorder {
	return &recorder{src: src, limit: limit, done: make(chan struct{})}
}

// errAttemptOver is what the body of an abandoned attempt reads (a retry took over).
var errAttemptOver = errors.New("waypoint: the attempt was abandoned for a retry")

// body returns the body of one attempt: what was recorded, then the rest of the source.
func (r *recorder) body() *attemptBody { return &attemptBody{r: r} }

// replayable reports whether everything read so far is still kept.
func (r *recorder) replayable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.over && r.err == nil
}

// size is the number of body bytes read so far.
func (r *recorder) size() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// complete returns the whole body once it has been read, or false when it was too large to
// keep or failed.
func (r *recorder) complete() ([]byte, bool) {
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf, r.eof && !r.over
}

func (r *recorder) read(off *int64, p []byte) (int, error) {
	if n, err, done := r.fromBuffer(off, p); done {
		return n, err
	}
	r.readMu.Lock()
	defer r.readMu.Unlock()
	// Another attempt may have read meanwhile: serve that from the buffer first.
	if n, err, done := r.fromBuffer(off, p); done {
		return n, err
	}
	n, err := r.src.Read(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	if n > 0 {
		r.total += int64(n)
		*off += int64(n)
		if !r.over {
			if r.total > r.limit {
				r.over, r.buf = true, nil
				close(r.done)
			} else {
				r.buf = append(r.buf, p[:n]...)
			}
		}
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			r.eof = true
		} else {
			r.err = err
		}
		if !r.over {
			close(r.done)
		}
	}
	return n, err
}

// fromBuffer serves a read at *off from what was recorded; done is false when the reader is
// at the end of it and must read the source.
func (r *recorder) fromBuffer(off *int64, p []byte) (int, error, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case *off < r.total && r.over:
		return 0, errAttemptOver, true // only the first attempt can read past the kept bytes
	case *off < r.total:
		n := copy(p, r.buf[*off:])
		*off += int64(n)
		return n, nil, true
	case r.eof:
		return 0, io.EOF, true
	case r.err != nil:
		return 0, r.err, true
	}
	return 0, nil, false
}

// attemptBody is one attempt's view of the recorded body.
type attemptBody struct {
	r      *recorder
	off    int64
	closed atomic.Bool
}

func (b *attemptBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errAttemptOver
	}
	return b.r.read(&b.off, p)
}

func (b *attemptBody) Close() error {
	b.closed.Store(true)
	return nil
}
