package upstream

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
)

// lbCache is the load-balancing set derived from the hosts and their health, rebuilt when
// Cluster.version changes.
type lbCache struct {
	valid   bool
	version uint64
	hosts   []*host // candidates: the healthy hosts, or every host in panic mode
	panic   bool
	ring    []ringEntry // RING_HASH
	maglev  []int32     // MAGLEV: index into hosts
}

type ringEntry struct {
	hash uint64
	host int // index into hosts
}

// setLocked returns the current load-balancing set. Following Envoy's panic threshold,
// when the share of healthy hosts is below healthy_panic_threshold, every host is a
// candidate, ejected and unhealthy ones included.
func (c *Cluster) setLocked() *lbCache {
	lc := &c.lbCache
	if lc.valid && lc.version == c.version {
		return lc
	}
	*lc = lbCache{valid: true, version: c.version}
	healthy := make([]*host, 0, len(c.hosts))
	for _, h := range c.hosts {
		if !h.unhealthy && !h.od.ejected {
			healthy = append(healthy, h)
		}
	}
	total := len(c.hosts)
	if total > 0 && 100*float64(len(healthy))/float64(total) < c.cfg.panicThreshold {
		lc.panic = true
		lc.hosts = c.hosts
	} else {
		lc.hosts = healthy
	}
	switch c.cfg.lb {
	case lbRingHash:
		lc.ring = buildRing(lc.hosts, c.cfg.ringMin, c.cfg.ringMax)
	case lbMaglev:
		lc.maglev = buildMaglev(lc.hosts, c.cfg.maglevSize)
	}
	return lc
}

// pick chooses the host of a request and counts it as active on that host.
func (c *Cluster) pick(p *Pick) (*host, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	now := c.now()
	if c.cfg.discovery == discoveryOriginalDst {
		if p.OriginalDst == nil || !p.OriginalDst.Addr.IsValid() {
			return nil, fmt.Errorf("cluster %s: %w: the ORIGINAL_DST cluster got no original destination", c.cfg.name, ErrNoHealthyUpstream)
		}
		h := c.byKey[*p.OriginalDst]
		if h == nil {
			h = &host{ep: new(Endpoint)}
			*h.ep = *p.OriginalDst
			c.byKey[*h.ep] = h
		}
		h.lastUsed = now
		h.active++
		return h, nil
	}
	if c.ejected > 0 {
		c.unejectExpiredLocked(now)
	}
	set := c.setLocked()
	if len(set.hosts) == 0 {
		return nil, fmt.Errorf("cluster %s: %w", c.cfg.name, ErrNoHealthyUpstream)
	}
	excluded := func(h *host) bool {
		for _, e := range p.Exclude {
			if e != nil && *e == *h.ep {
				return true
			}
		}
		return false
	}
	var h *host
	switch c.cfg.lb {
	case lbRingHash, lbMaglev:
		key := c.rng.Uint64()
		if p.HasHash {
			key = p.HashKey
		}
		// As Envoy's host selection retries: the next positions after the hash.
		for attempt := 0; attempt <= len(set.hosts); attempt++ {
			cand := set.hashPick(key, attempt)
			if h == nil {
				h = cand
			}
			if !excluded(cand) {
				h = cand
				break
			}
		}
	default:
		cands := set.hosts
		if len(p.Exclude) > 0 {
			var rest []*host
			for _, x := range cands {
				if !excluded(x) {
					rest = append(rest, x)
				}
			}
			if len(rest) > 0 {
				cands = rest
			}
		}
		switch c.cfg.lb {
		case lbRoundRobin:
			h = cands[c.rr%uint64(len(cands))]
			c.rr++
		case lbRandom:
			h = cands[c.rng.IntN(len(cands))]
		default: // LEAST_REQUEST: the best of choice_count random hosts
			for range c.cfg.choiceCount {
				x := cands[c.rng.IntN(len(cands))]
				if h == nil || x.active < h.active {
					h = x
				}
			}
		}
	}
	h.lastUsed = now
	h.active++
	return h, nil
}

func (lc *lbCache) hashPick(key uint64, attempt int) *host {
	if lc.maglev != nil {
		return lc.hosts[lc.maglev[(key+uint64(attempt))%uint64(len(lc.maglev))]]
	}
	r := lc.ring
	i, _ := slices.BinarySearchFunc(r, key, func(e ringEntry, k uint64) int {
		switch {
		case e.hash < k:
			return -1
		case e.hash > k:
			return 1
		}
		return 0
	})
	return lc.hosts[r[(i+attempt)%len(r)].host]
}

// hash64 is FNV-1a with a final mix (splitmix64), so that nearby strings spread over the
// whole ring.
func hash64(s string) uint64 {
	f := fnv.New64a()
	f.Write([]byte(s))
	z := f.Sum64()
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// buildRing places each host ceil(min/n) times (at most max in all) on the ring, at the
// hashes of "<address>_<i>", as Envoy's ring hash does.
func buildRing(hosts []*host, minSize, maxSize uint64) []ringEntry {
	n := uint64(len(hosts))
	if n == 0 {
		return nil
	}
	per := (minSize + n - 1) / n
	if per*n > maxSize {
		per = max(1, maxSize/n)
	}
	ring := make([]ringEntry, 0, per*n)
	for i, h := range hosts {
		addr := h.ep.Addr.String()
		for j := range per {
			ring = append(ring, ringEntry{hash: hash64(addr + "_" + strconv.FormatUint(j, 10)), host: i})
		}
	}
	slices.SortFunc(ring, func(a, b ringEntry) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return a.host - b.host
	})
	return ring
}

// buildMaglev fills a Maglev lookup table of size m (a prime): each host walks its own
// permutation (offset, skip from its address) and takes the next free slot, in turns.
func buildMaglev(hosts []*host, m uint64) []int32 {
	n := len(hosts)
	if n == 0 {
		return nil
	}
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	for i, h := range hosts {
		addr := h.ep.Addr.String()
		offset[i] = hash64(addr) % m
		skip[i] = hash64(addr+"#skip")%(m-1) + 1
	}
	table := make([]int32, m)
	for i := range table {
		table[i] = -1
	}
	var filled uint64
	for filled < m {
		for i := 0; i < n && filled < m; i++ {
			c := (offset[i] + next[i]*skip[i]) % m
			for table[c] >= 0 {
				next[i]++
				c = (offset[i] + next[i]*skip[i]) % m
			}
			table[c] = int32(i)
			next[i]++
			filled++
		}
	}
	return table
}
