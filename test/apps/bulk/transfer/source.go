// Package transfer implements the bulk-transfer protocol of the bulk test
// app: the sender streams deterministic pseudo-random bytes and half-closes;
// the receiver reads to EOF and answers with a trailer of the byte count
// (8 bytes, big endian) and the SHA-256 of everything it received (32
// bytes), which the sender compares with what it sent.
package transfer

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
)

const (
	// BlockSize is the period of a Source: one pseudo-random block is
	// generated per seed and repeated.
	BlockSize = 1 << 20
	// MarkerInterval is the distance between marker copies; every 1 KiB
	// window of the stream holds the start of one, so every packet of a
	// capture holds at least one whole marker of up to MaxMarker bytes.
	MarkerInterval = 1024
	// MaxMarker is the longest accepted marker.
	MaxMarker = 256
	// markerOffset is where, within each interval, a marker starts; it
	// keeps the block index at the start of each block intact.
	markerOffset = 512
)

// Source is a deterministic, seeded pseudo-random byte stream. It repeats a
// BlockSize block generated with ChaCha8 from the seed, stamps the block's
// sequence number into the first 8 bytes of each repetition (so dropped or
// duplicated blocks change the digest), and optionally stamps a plaintext
// marker every MarkerInterval bytes. Two Sources with the same seed and
// marker produce identical streams.
type Source struct {
	block []byte
	off   int
	seq   uint64
}

// NewSource returns the Source for seed and marker ("" for none).
func NewSource(seed uint64, marker string) (*Source, error) {
	if len(marker) > MaxMarker {
		return nil, fmt.Errorf("transfer: marker of %d bytes exceeds %d", len(marker), MaxMarker)
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	block := make([]byte, BlockSize)
	if _, err := rand.NewChaCha8(key).Read(block); err != nil {
		return nil, fmt.Errorf("transfer: generate block: %w", err)
	}
	if marker != "" {
		for off := markerOffset; off+len(marker) <= BlockSize; off += MarkerInterval {
			copy(block[off:], marker)
		}
	}
	s := &Source{block: block}
	s.stamp()
	return s, nil
}

func (s *Source) stamp() { binary.BigEndian.PutUint64(s.block, s.seq) }

// Read fills p with the next bytes of the stream; it never fails.
func (s *Source) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if s.off == BlockSize {
			s.off = 0
			s.seq++
			s.stamp()
		}
		c := copy(p[n:], s.block[s.off:])
		s.off += c
		n += c
	}
	return n, nil
}
