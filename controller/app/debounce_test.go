package app

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// TestDebounce: changes in a burst give one push once they settle; a stream of changes is
// pushed after at most max; a kick pushes at once.
func TestDebounce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed, kick := make(chan struct{}, 1), make(chan struct{}, 1)
	pushes := make(chan time.Time, 16)
	const d, max = 50 * time.Millisecond, 200 * time.Millisecond
	go func() { _ = debounce(ctx, changed, kick, d, max, func() { pushes <- time.Now() }) }()

	start := time.Now()
	for range 5 { // a burst
		notify(changed)
		time.Sleep(5 * time.Millisecond)
	}
	if at := (<-pushes).Sub(start); at < d {
		t.Errorf("burst pushed after %v, before settling for %v", at, d)
	}
	select {
	case <-pushes:
		t.Fatal("a burst gave two pushes")
	case <-time.After(3 * d):
	}

	start = time.Now()
	stop := time.After(3 * max)
	go func() { // a change every 20 ms, never quiet for d
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				notify(changed)
			}
		}
	}()
	if at := (<-pushes).Sub(start); at > max+d {
		t.Errorf("a stream of changes was first pushed after %v, want at most about %v", at, max)
	}
	<-stop
	for len(pushes) > 0 {
		<-pushes
	}
	time.Sleep(2 * max)
	for len(pushes) > 0 {
		<-pushes
	}

	start = time.Now()
	notify(kick)
	if at := (<-pushes).Sub(start); at > d {
		t.Errorf("a kick pushed after %v", at)
	}
}

func TestLogNewLogsEachProblemOnce(t *testing.T) {
	var n int
	log := slog.New(countHandler{&n})
	a, b := errors.New("a"), errors.New("b")
	seen := logNew(log, nil, []error{a})
	seen = logNew(log, seen, []error{a, b})
	seen = logNew(log, seen, []error{b})
	logNew(log, seen, []error{a})
	if n != 3 { // a, b, then a again after it had gone
		t.Fatalf("logged %d times, want 3", n)
	}
}

type countHandler struct{ n *int }

func (h countHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (h countHandler) Handle(context.Context, slog.Record) error { *h.n++; return nil }
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h countHandler) WithGroup(string) slog.Handler             { return h }
