// Package backoff is the jittered exponential back-off between attempts that the node agent's
// and the waypoint's xDS clients share: the n-th wait in a row is drawn from [d/2, d] with
// d = Min·2^(n-1), capped at Max.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff counts consecutive failures. The zero value waits 0; set Min and Max.
type Backoff struct {
	Min, Max time.Duration
	failures int // waits since the last Reset
}

// Next returns the wait before the next attempt and counts it.
func (b *Backoff) Next() time.Duration {
	b.failures++
	d := b.Min
	for i := 1; i < b.failures && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	half := d / 2
	return half + rand.N(d-half+1)
}

// Reset starts over from Min.
func (b *Backoff) Reset() { b.failures = 0 }
