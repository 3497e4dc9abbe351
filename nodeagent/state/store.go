package state

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// emptySnapshot is what a Store serves before its first Replace. It is never modified.
var emptySnapshot = NewSnapshot("", nil, nil)

// Store holds the snapshot in force. Readers call [Store.Load], an atomic load that never
// waits for a writer; [Store.Replace] swaps in a new snapshot. The zero Store is ready to use
// and serves an empty snapshot until the first Replace.
type Store struct {
	cur     atomic.Pointer[Snapshot]
	changed atomic.Pointer[chan struct{}] // closed by the next Replace
	mu      sync.Mutex                    // serialises Replace
}

// Load returns the snapshot in force: the empty snapshot (version "") before the first
// successful Replace. It never returns nil.
func (s *Store) Load() *Snapshot {
	if snap := s.cur.Load(); snap != nil {
		return snap
	}
	return emptySnapshot
}

// Applied reports whether a snapshot has been put in force.
func (s *Store) Applied() bool { return s.cur.Load() != nil }

// Replace puts snap in force. It refuses, with an error and no change, a nil snapshot and a
// snapshot that does not validate; the snapshot in force stays.
func (s *Store) Replace(snap *Snapshot) error {
	if snap == nil {
		return errors.New("state: nil snapshot")
	}
	if err := snap.Validate(); err != nil {
		return fmt.Errorf("state: snapshot %q is invalid: %w", snap.Version(), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur.Store(snap)
	if ch := s.changed.Swap(nil); ch != nil {
		close(*ch)
	}
	return nil
}

// Changed returns a channel that is closed when a later Replace puts a new snapshot in force.
// To follow changes, call Changed before Load:
//
//	for {
//		changed := store.Changed()
//		use(store.Load())
//		select {
//		case <-changed:
//		case <-ctx.Done():
//			return
//		}
//	}
func (s *Store) Changed() <-chan struct{} {
	for {
		if ch := s.changed.Load(); ch != nil {
			return *ch
		}
		ch := make(chan struct{})
		if s.changed.CompareAndSwap(nil, &ch) {
			return ch
		}
	}
}
