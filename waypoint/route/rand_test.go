package route

import "sync"

// seqRand returns 0, 1, 2, ... modulo n: deterministic and evenly spread.
type seqRand struct {
	mu sync.Mutex
	i  uint64
}

func (s *seqRand) Uint64N(n uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.i % n
	s.i++
	return v
}

// fixedRand always returns v modulo n.
type fixedRand uint64

func (f fixedRand) Uint64N(n uint64) uint64 { return uint64(f) % n }
