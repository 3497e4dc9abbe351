package datapath

import (
	"fmt"
	"strconv"
)

// Stat names one of the data path's counters (enum weft_stat in bpf/include/weft.h).
type Stat uint32

// The counters. Connect counters come from the outbound programs on the node's cgroup, inbound
// ones from the sk_lookup programs of enrolled pods.
const (
	StatConnectSeen           Stat = iota // TCP connect() calls below the node's cgroup
	StatConnectEnrolled                   // of those, from an enrolled network namespace
	StatConnectRedirected                 // rewritten to the agent's outbound listener
	StatConnectExemptAgent                // not redirected: the agent's own socket (SO_MARK)
	StatConnectExemptLoopback             // not redirected: loopback or unspecified destination
	StatConnectExemptPort                 // not redirected: excluded destination port
	StatConnectExemptDisabled             // not redirected: the pod's outbound capture is off
	StatConnectRejected                   // refused: the original destination could not be stored
	StatConnectTracked                    // original destination re-keyed for OriginalDst
	StatConnectTrackFailed                // re-keying failed: OriginalDst will not find it
	StatUpstreamTracked                   // agent upstream connections registered for inbound
	StatUpstreamTrackFailed               // registering failed: the connection will be steered
	StatInboundSeen                       // TCP connection lookups in enrolled namespaces
	StatInboundSteered                    // given to the agent's inbound listener
	StatInboundExemptDisabled             // not steered: the pod's inbound capture is off
	StatInboundExemptAgent                // not steered: the agent's own upstream connection
	StatInboundExemptNotPod               // not steered: to an address that is not the pod's
	StatInboundExemptHBONE                // not steered: to the HBONE port
	StatInboundExemptPort                 // not steered: excluded port
	StatInboundExemptProbe                // not steered: from a probe source (kubelet)
	StatInboundNoListener                 // refused: the agent has no listener in the pod
	StatInboundAssignFailed               // refused: the kernel did not accept the listener
	numStats
)

var statNames = [numStats]string{
	"connect_seen", "connect_enrolled", "connect_redirected", "connect_exempt_agent",
	"connect_exempt_loopback", "connect_exempt_port", "connect_exempt_disabled",
	"connect_rejected", "connect_tracked", "connect_track_failed",
	"upstream_tracked", "upstream_track_failed",
	"inbound_seen", "inbound_steered", "inbound_exempt_disabled", "inbound_exempt_agent",
	"inbound_exempt_not_pod", "inbound_exempt_hbone", "inbound_exempt_port",
	"inbound_exempt_probe", "inbound_no_listener", "inbound_assign_failed",
}

// String returns the counter's name in snake case, suitable as a metric label.
func (s Stat) String() string {
	if s < numStats {
		return statNames[s]
	}
	return "stat_" + strconv.Itoa(int(s))
}

// Stats holds every counter, indexed by Stat.
type Stats [numStats]uint64

// AllStats lists every Stat in order, for exporting them.
func AllStats() []Stat {
	all := make([]Stat, numStats)
	for i := range all {
		all[i] = Stat(i)
	}
	return all
}

// Stats reads every counter, summed over CPUs.
func (d *Datapath) Stats() (Stats, error) {
	var st Stats
	var perCPU []uint64
	for s := range numStats {
		if err := d.conn.Stats.Lookup(uint32(s), &perCPU); err != nil {
			return Stats{}, fmt.Errorf("datapath: read counter %v: %w", s, err)
		}
		for _, v := range perCPU {
			st[s] += v
		}
	}
	return st, nil
}
