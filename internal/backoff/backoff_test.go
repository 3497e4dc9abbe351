package backoff

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	wantMax := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for round := range 2 {
		for i, m := range wantMax {
			m *= time.Millisecond
			for range 20 {
				got := b.Next()
				if got < m/2 || got > m {
					t.Fatalf("round %d, wait %d: %v, want within [%v, %v]", round, i+1, got, m/2, m)
				}
				b.failures-- // draw the same wait again
			}
			b.failures++
		}
		b.Reset()
	}
}
