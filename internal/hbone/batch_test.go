package hbone

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// countingConn records the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes [][]byte
	err    error
}

func (c *countingConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func TestBatchConn(t *testing.T) {
	record := bytes.Repeat([]byte{'r'}, 16<<10+22) // a full TLS record with its overhead
	for _, tc := range []struct {
		name       string
		records    int
		batch      bool
		wantWrites int
	}{
		{"outside a batch every record is written", 3, false, 3},
		{"a batch is one write", 3, true, 1},
		{"a large batch is one write", 16, true, 1},
		{"beyond maxBatch the batch is written in parts", 24, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := &countingConn{}
			b := newBatchConn(raw)
			if tc.batch {
				b.begin()
			}
			for range tc.records {
				if n, err := b.Write(record); err != nil || n != len(record) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if tc.batch {
				if err := b.end(); err != nil {
					t.Fatal(err)
				}
			}
			if len(raw.writes) != tc.wantWrites {
				t.Errorf("%d writes reached the socket, want %d", len(raw.writes), tc.wantWrites)
			}
			if got := bytes.Join(raw.writes, nil); !bytes.Equal(got, bytes.Repeat(record, tc.records)) {
				t.Errorf("the socket got %d bytes, not the %d written in order", len(got), tc.records*len(record))
			}
			// After end, writes go straight through again.
			if _, err := b.Write([]byte("alert")); err != nil {
				t.Fatal(err)
			}
			if last := raw.writes[len(raw.writes)-1]; string(last) != "alert" {
				t.Errorf("write after end was held back")
			}
		})
	}
}

func TestBatchConnError(t *testing.T) {
	boom := errors.New("broken pipe")
	raw := &countingConn{err: boom}
	b := newBatchConn(raw)
	b.begin()
	if _, err := b.Write([]byte("record")); err != nil {
		t.Fatalf("a queued write failed: %v", err)
	}
	if err := b.end(); !errors.Is(err, boom) {
		t.Errorf("end = %v, want the socket's error", err)
	}
}
