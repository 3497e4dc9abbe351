// Package load runs test-client requests (HTTP, gRPC health, TCP echo) with
// bounded concurrency and records them in a report.Recorder.
package load

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/test/apps/client/report"
)

// Func performs one request and describes its outcome. Run fills in the
// Latency.
type Func func(ctx context.Context) report.Sample

// Run calls fn n times from c concurrent workers (c is clamped to 1..n) and
// records every sample in rec. It stops starting new calls when ctx is
// done and returns the wall time of the run.
func Run(ctx context.Context, n, c int, fn Func, rec *report.Recorder) time.Duration {
	c = max(1, min(c, n))
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			for ctx.Err() == nil && next.Add(1) <= int64(n) {
				t0 := time.Now()
				s := fn(ctx)
				s.Latency = time.Since(t0)
				rec.Add(s)
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}
