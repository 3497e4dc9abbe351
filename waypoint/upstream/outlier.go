package upstream

import (
	"context"
	"errors"
	"math"
	"time"
)

const (
	externalOrigin = 0
	localOrigin    = 1
)

// hostOutlier is a host's outlier detection state; guarded by Cluster.mu.
type hostOutlier struct {
	consec5xx, consecGateway, consecLocal uint32
	ejected                               bool
	ejectUntil                            time.Time
	numEjections                          uint32
	// requests and successes of the current interval, by origin (external: the upstream's
	// responses; local: connect failures, resets, timeouts — only when split).
	bucket [2]struct{ total, success uint64 }
}

type trigger int

const (
	trigger5xx trigger = iota
	triggerGateway
	triggerLocal
)

// recordHTTPLocked is Envoy's putHttpResponseCode: 5xx count towards consecutive_5xx,
// 502/503/504 towards consecutive_gateway_failure; any other code resets both.
func (c *Cluster) recordHTTPLocked(h *host, code int) {
	o := c.cfg.outlier
	if o == nil || h.removed {
		return
	}
	b := &h.od.bucket[externalOrigin]
	b.total++
	if code < 500 || code > 599 {
		b.success++
		h.od.consec5xx, h.od.consecGateway = 0, 0
		return
	}
	if code == 502 || code == 503 || code == 504 {
		h.od.consecGateway++
		if h.od.consecGateway == o.consecutiveGateway {
			c.tripLocked(h, triggerGateway)
		}
	} else {
		h.od.consecGateway = 0
	}
	h.od.consec5xx++
	if h.od.consec5xx == o.consecutive5xx {
		c.tripLocked(h, trigger5xx)
	}
}

// recordConnectLocked reports a connection attempt. Without split_external_local_origin_errors
// a connect failure counts as a 503 (a gateway error), and a success as nothing.
func (c *Cluster) recordConnectLocked(h *host, ok bool) {
	o := c.cfg.outlier
	if o == nil || h.removed {
		return
	}
	if !o.split {
		if !ok {
			c.recordHTTPLocked(h, 503)
		}
		return
	}
	c.recordLocalOriginLocked(h, ok)
}

// recordLocalLocked reports a request that failed after its connection was obtained:
// ctxErr is the request context's error. A deadline (the router's timeout) counts as a 504,
// a reset as a 503; a cancelled request (the client left) counts as nothing.
func (c *Cluster) recordLocalLocked(h *host, ctxErr error) {
	o := c.cfg.outlier
	if o == nil || h.removed || errors.Is(ctxErr, context.Canceled) {
		return
	}
	if o.split {
		c.recordLocalOriginLocked(h, false)
		return
	}
	if errors.Is(ctxErr, context.DeadlineExceeded) {
		c.recordHTTPLocked(h, 504)
	} else {
		c.recordHTTPLocked(h, 503)
	}
}

func (c *Cluster) recordLocalOriginLocked(h *host, ok bool) {
	b := &h.od.bucket[localOrigin]
	b.total++
	if ok {
		b.success++
		h.od.consecLocal = 0
		return
	}
	h.od.consecLocal++
	if h.od.consecLocal == c.cfg.outlier.consecutiveLocal {
		c.tripLocked(h, triggerLocal)
	}
}

// tripLocked handles a consecutive-errors detection: the host is ejected with the
// enforcing_* probability, and the counter that fired restarts.
func (c *Cluster) tripLocked(h *host, t trigger) {
	o := c.cfg.outlier
	var enforcing uint32
	switch t {
	case trigger5xx:
		enforcing = o.enf5xx
		h.od.consec5xx = 0
	case triggerGateway:
		enforcing = o.enfGateway
		h.od.consecGateway = 0
	case triggerLocal:
		enforcing = o.enfLocal
		h.od.consecLocal = 0
	}
	if !h.od.ejected && c.rollLocked(enforcing) {
		c.ejectLocked(h, c.now(), t)
	}
}

func (c *Cluster) rollLocked(percent uint32) bool {
	return percent >= 100 || (percent > 0 && c.rng.Uint32N(100) < percent)
}

// ejectLocked ejects h unless that would put more than max_ejection_percent of the
// cluster's hosts out (the first ejection is always allowed with always_eject_one_host).
// The ejection lasts base_ejection_time × the times it was ejected, at most
// max_ejection_time, plus a jitter up to max_ejection_time_jitter.
func (c *Cluster) ejectLocked(h *host, now time.Time, why any) {
	o := c.cfg.outlier
	total := len(c.hosts)
	if total == 0 {
		return
	}
	pct := 100 * float64(c.ejected+1) / float64(total)
	if pct > float64(o.maxEjectPercent) && !(o.alwaysEjectOne && c.ejected == 0) {
		return
	}
	h.od.numEjections++
	d := o.baseEjection * time.Duration(h.od.numEjections)
	if d > o.maxEjection || d/time.Duration(h.od.numEjections) != o.baseEjection {
		d = o.maxEjection
		h.od.numEjections-- // no longer grows once capped
	}
	if o.jitter > 0 {
		d += time.Duration(c.rng.Int64N(int64(o.jitter)))
	}
	h.od.ejected, h.od.ejectUntil = true, now.Add(d)
	c.ejected++
	c.stats.ejectionsTotal++
	c.version++
	c.log.Info("outlier detection ejected an endpoint", "endpoint", h.ep.String(), "reason", reason(why), "for", d)
}

func reason(why any) string {
	switch why {
	case trigger5xx:
		return "consecutive_5xx"
	case triggerGateway:
		return "consecutive_gateway_failure"
	case triggerLocal:
		return "consecutive_local_origin_failure"
	}
	if s, ok := why.(string); ok {
		return s
	}
	return "unknown"
}

// unejectExpiredLocked brings back the hosts whose ejection time is over.
func (c *Cluster) unejectExpiredLocked(now time.Time) {
	for _, h := range c.hosts {
		if h.od.ejected && !now.Before(h.od.ejectUntil) {
			h.od.ejected = false
			c.ejected--
			c.version++
			c.log.Info("outlier detection re-admitted an endpoint", "endpoint", h.ep.String())
		}
	}
}

// outlierIntervalLocked is the interval sweep: re-admission, decay of the ejection
// multiplier of hosts that stayed in, success-rate and failure-percentage detection over
// the interval's requests.
func (c *Cluster) outlierIntervalLocked(now time.Time) {
	o := c.cfg.outlier
	c.unejectExpiredLocked(now)
	for _, h := range c.hosts {
		if !h.od.ejected && h.od.numEjections > 0 && !h.od.ejectUntil.After(now.Add(-o.interval)) {
			h.od.numEjections--
		}
	}
	origins := []int{externalOrigin}
	if o.split {
		origins = append(origins, localOrigin)
	}
	for _, origin := range origins {
		enfSR, enfFP := o.enfSR, o.enfFP
		if origin == localOrigin {
			enfSR, enfFP = o.enfLocalSR, o.enfLocalFP
		}
		c.successRateLocked(now, origin, enfSR)
		c.failurePercentageLocked(now, origin, enfFP)
	}
	for _, h := range c.hosts {
		h.od.bucket = [2]struct{ total, success uint64 }{}
	}
}

// successRateLocked ejects the hosts whose success rate is below mean − stdev ×
// success_rate_stdev_factor/1000, among the hosts with success_rate_request_volume
// requests, when there are success_rate_minimum_hosts of them.
func (c *Cluster) successRateLocked(now time.Time, origin int, enforcing uint32) {
	o := c.cfg.outlier
	if enforcing == 0 {
		return
	}
	type rate struct {
		h  *host
		sr float64
	}
	var rates []rate
	var sum float64
	for _, h := range c.hosts {
		b := h.od.bucket[origin]
		if h.od.ejected || b.total < uint64(o.srVolume) || b.total == 0 {
			continue
		}
		sr := 100 * float64(b.success) / float64(b.total)
		rates = append(rates, rate{h, sr})
		sum += sr
	}
	if len(rates) == 0 || len(rates) < int(o.srMinHosts) {
		return
	}
	mean := sum / float64(len(rates))
	var v float64
	for _, r := range rates {
		v += (r.sr - mean) * (r.sr - mean)
	}
	stdev := math.Sqrt(v / float64(len(rates)))
	threshold := mean - stdev*float64(o.srStdevFactor)/1000
	for _, r := range rates {
		if r.sr < threshold && !r.h.od.ejected && c.rollLocked(enforcing) {
			c.ejectLocked(r.h, now, "success_rate")
		}
	}
}

// failurePercentageLocked ejects the hosts whose failure percentage reaches
// failure_percentage_threshold, among the hosts with failure_percentage_request_volume
// requests, when there are failure_percentage_minimum_hosts of them.
func (c *Cluster) failurePercentageLocked(now time.Time, origin int, enforcing uint32) {
	o := c.cfg.outlier
	if enforcing == 0 {
		return
	}
	var eligible []*host
	for _, h := range c.hosts {
		b := h.od.bucket[origin]
		if !h.od.ejected && b.total >= uint64(o.fpVolume) && b.total > 0 {
			eligible = append(eligible, h)
		}
	}
	if len(eligible) < int(o.fpMinHosts) {
		return
	}
	for _, h := range eligible {
		b := h.od.bucket[origin]
		fp := 100 * float64(b.total-b.success) / float64(b.total)
		if fp >= float64(o.fpThreshold) && !h.od.ejected && c.rollLocked(enforcing) {
			c.ejectLocked(h, now, "failure_percentage")
		}
	}
}
