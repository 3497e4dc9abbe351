package status

import (
	"context"
	"sync"
	"time"
)

// coalescer hands the newest desired state to a sync function in the background: Update
// never blocks, rounds are at least interval apart (what arrives meanwhile is written in one
// round), and after a failed round the next waits longer, up to maxBackoff.
type coalescer[T any] struct {
	interval, maxBackoff time.Duration
	wake                 chan struct{}

	mu      sync.Mutex
	desired T
}

func newCoalescer[T any](interval, maxBackoff time.Duration) *coalescer[T] {
	if interval <= 0 {
		interval = time.Second
	}
	if maxBackoff <= 0 {
		maxBackoff = time.Minute
	}
	return &coalescer[T]{interval: interval, maxBackoff: maxBackoff, wake: make(chan struct{}, 1)}
}

// update makes v the desired state; a later update replaces one not yet synced.
func (c *coalescer[T]) update(v T) {
	c.mu.Lock()
	c.desired = v
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// run calls sync with the desired state after each update until ctx is done; sync reports
// whether everything was written.
func (c *coalescer[T]) run(ctx context.Context, sync func(context.Context, T) bool) {
	delay := c.interval
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		for {
			c.mu.Lock()
			desired := c.desired
			c.mu.Unlock()
			ok := sync(ctx, desired)
			if ok {
				delay = c.interval
			} else {
				delay = min(2*delay, c.maxBackoff)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			if ok {
				break
			}
			select { // retrying covers a newer update too
			case <-c.wake:
			default:
			}
		}
	}
}
