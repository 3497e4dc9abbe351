package harness

import (
	"fmt"
	"io"
	"strings"
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

// Write lets a Progress be the progress writer of other packages: each line gets the
// elapsed-time prefix, replacing the writer's own "[  1.2s] " prefix if it has one, so that all
// steps share one timeline.
func (p *Progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			if _, rest, ok := strings.Cut(line, "s] "); ok {
				line = rest
			}
		}
		fmt.Fprintf(p.w, "[%6.1fs] %s", time.Since(p.start).Seconds(), line)
	}
	return len(b), nil
}
