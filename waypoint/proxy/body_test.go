package proxy

import (
	"io"
	"strings"
	"testing"
)

func TestRecorder(t *testing.T) {
	t.Run("a retry replays what was read, then the rest", func(t *testing.T) {
		rec := newRecorder(io.NopCloser(strings.NewReader("hello world")), 64)
		first := rec.body()
		buf := make([]byte, 5)
		if n, _ := io.ReadFull(first, buf); string(buf[:n]) != "hello" {
			t.Fatalf("first attempt read %q", buf[:n])
		}
		_ = first.Close()
		if _, err := first.Read(buf); err != errAttemptOver {
			t.Errorf("abandoned attempt read error %v, want errAttemptOver", err)
		}
		if !rec.replayable() {
			t.Fatal("not replayable within the limit")
		}
		all, err := io.ReadAll(rec.body())
		if err != nil || string(all) != "hello world" {
			t.Errorf("second attempt read %q, %v", all, err)
		}
		if body, ok := rec.complete(); !ok || string(body) != "hello world" || rec.size() != 11 {
			t.Errorf("complete = %q, %v (size %d)", body, ok, rec.size())
		}
	})
	t.Run("past the limit nothing is kept: no replay, no mirror", func(t *testing.T) {
		rec := newRecorder(io.NopCloser(strings.NewReader(strings.Repeat("x", 100))), 10)
		all, err := io.ReadAll(rec.body())
		if err != nil || len(all) != 100 {
			t.Fatalf("first attempt read %d bytes, %v: a large body must still stream in full", len(all), err)
		}
		if rec.replayable() {
			t.Error("replayable past the limit")
		}
		if _, ok := rec.complete(); ok {
			t.Error("complete past the limit")
		}
		if _, err := rec.body().Read(make([]byte, 1)); err != errAttemptOver {
			t.Errorf("a replay past the limit read %v, want errAttemptOver", err)
		}
	})
}
