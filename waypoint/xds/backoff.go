package xds

import (
	"math/rand/v2"
	"time"
)

// backoff is the jittered exponential back-off between streams: the n-th wait in a row is
// drawn from [d/2, d] with d = min·2^(n-1), capped at max.
type backoff struct {
	min, max time.Duration
	failures int // waits since the last reset
}

// next returns the wait before the next attempt and counts it.
func (b *backoff) next() time.Duration {
	b.failures++
	d := b.min
	for i := 1; i < b.failures && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	half := d / 2
	return half + rand.N(d-half+1)
}

// reset starts over from min.
func (b *backoff) reset() { b.failures = 0 }
