package xds

import (
	"fmt"
	"time"
)

// The transitions of a Source: its status, and one log line each. Per-response success is
// logged at debug level only.

// connected records that a stream delivered its first response.
func (s *Source) connected(held int) {
	s.mu.Lock()
	s.status.Disconnected = false
	s.failed = ""
	s.mu.Unlock()
	s.log.Info("xds connected", "node", s.opts.Node, "resources_held", held)
}

// disconnected records that a stream broke, or could not be opened, for err.
func (s *Source) disconnected(err error, retryIn time.Duration, applied bool) {
	keep := "; the last good configuration stays in force"
	if !applied {
		keep = "; no configuration received yet"
	}
	lastErr := fmt.Errorf("xds: %s: %w%s", s.target, err, keep)

	s.mu.Lock()
	wasConnected := !s.status.Disconnected
	s.status.Disconnected = true
	s.status.LastError, s.status.Rejected, s.status.Failed = lastErr, "", time.Now()
	repeated := !wasConnected && s.failed == err.Error()
	s.failed = err.Error()
	s.mu.Unlock()

	switch {
	case wasConnected:
		s.log.Warn("xds disconnected; retrying", "err", err, "retry_in", retryIn)
	case !repeated:
		s.log.Warn("xds cannot connect; retrying", "err", err, "retry_in", retryIn)
	default:
		s.log.Debug("xds cannot connect; retrying", "err", err, "retry_in", retryIn)
	}
}

// accepted records an ACKed response. settled tells that no rejected response is left
// unsettled, so that the configuration in force is the server's.
func (s *Source) accepted(version string, d delta, settled, first bool) {
	s.mu.Lock()
	if d.snap != nil {
		s.status.Version, s.status.Applied = version, time.Now()
	}
	if settled {
		s.status.LastError, s.status.Rejected, s.status.Failed = nil, "", time.Time{}
	}
	inForce := s.status.Version
	s.mu.Unlock()

	level := s.log.Debug
	if first {
		level = s.log.Info // the first sync of a stream
	}
	if d.snap != nil {
		level("xds config applied", "version", version, "updated", d.updated, "removed", d.removed,
			"workloads", len(d.snap.Workloads()), "services", len(d.snap.Services()))
	} else {
		level("xds config unchanged", "version", version, "in_force", inForce)
	}
}

// rejected records a NACKed response.
func (s *Source) rejected(version, nonce string, err error) {
	s.mu.Lock()
	inForce := s.status.Version
	s.status.LastError = fmt.Errorf("xds: version %s: %w", version, err)
	s.status.Rejected, s.status.Failed = version, time.Now()
	s.mu.Unlock()
	if inForce == "" {
		inForce = "none"
	}
	s.log.Warn("xds config rejected (NACK)", "version", version, "nonce", nonce, "in_force", inForce, "err", err)
}
