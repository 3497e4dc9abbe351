// Package testlog helps tests of the test apps' main packages read the JSON
// log lines those apps write.
package testlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"
)

// Buffer is an io.Writer safe for concurrent use that keeps what was
// written.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Records returns the JSON log records written so far; other lines are
// skipped.
func (b *Buffer) Records() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewBufferString(b.String()))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

// WaitAttr polls b for up to 5 seconds for a record with the given msg and
// returns its string attribute key, failing the test on timeout.
func (b *Buffer) WaitAttr(t testing.TB, msg, key string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, rec := range b.Records() {
			if rec["msg"] == msg {
				if v, ok := rec[key].(string); ok {
					return v
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no log record %q with %q; log:\n%s", msg, key, b.String())
	return ""
}
