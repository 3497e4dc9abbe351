package harness

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Progress writes one line per step with the time elapsed since it was created:
// "[  4.2s] starting control plane".
type Progress struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

// NewProgress returns a Progress writing to w (nil discards).
func NewProgress(w io.Writer) *Progress {
	if w == nil {
		w = io.Discard
	}
	return &Progress{w: w, start: time.Now()}
}

// Step prints one progress line.
func (p *Progress) Step(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "[%6.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// Write lets a Progress be the progress writer of other packages: each line is passed through
// with the elapsed-time prefix unless it already has one.
func (p *Progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(b) > 0 && b[0] == '[' {
		return p.w.Write(b)
	}
	fmt.Fprintf(p.w, "[%6.1fs] %s", time.Since(p.start).Seconds(), b)
	return len(b), nil
}
