package xds

import (
	"maps"
	"slices"
	"time"
)

// NodeStatus is where the configuration of one node agent or one waypoint pod stands.
type NodeStatus struct {
	Node string `json:"node"`
	// Waypoint is "<namespace>/<gateway>" for a waypoint pod, empty for a node agent.
	Waypoint string `json:"waypoint,omitempty"`
	// Streams is the number of open xDS streams from the node's agent.
	Streams int `json:"streams"`
	// ConnectedSince is when the oldest open stream opened.
	ConnectedSince time.Time `json:"connectedSince,omitzero"`
	// Pushed is the version of the newest snapshot for the node, and when it was set.
	Pushed    string    `json:"pushed,omitempty"`
	PushedAt  time.Time `json:"pushedAt,omitzero"`
	Resources int       `json:"resources"`
	// Sent is the version last sent to the agent.
	Sent   string    `json:"sent,omitempty"`
	SentAt time.Time `json:"sentAt,omitzero"`
	// Acked is the version the agent last accepted.
	Acked   string    `json:"acked,omitempty"`
	AckedAt time.Time `json:"ackedAt,omitzero"`
	// Nacked is the version the agent last rejected, with the type of the rejected response
	// and the reason; cleared by a later ACK of that type.
	Nacked    string    `json:"nacked,omitempty"`
	NackType  string    `json:"nackType,omitempty"`
	NackError string    `json:"nackError,omitempty"`
	NackedAt  time.Time `json:"nackedAt,omitzero"`
}

// InSync reports whether the agent accepted the newest snapshot.
func (s NodeStatus) InSync() bool { return s.Pushed != "" && s.Acked == s.Pushed }

// sortedStatuses returns a copy of every node's status, sorted by node.
func sortedStatuses(m map[string]*NodeStatus) []NodeStatus {
	out := make([]NodeStatus, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, *m[k])
	}
	return out
}
