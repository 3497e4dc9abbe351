package config

import (
	"context"
	"time"

	"github.com/weftmesh/weft/nodeagent/state"
)

// Source delivers the agent's configuration.
type Source interface {
	// Run delivers a full snapshot to apply at start and each time the configuration changes,
	// until ctx is done; it then returns nil. apply returning an error means the agent rejects
	// the snapshot (a NACK): the source reports the reason, the last good snapshot stays in
	// force, and the source delivers again only when the configuration changes. Run returns an
	// error when it cannot start.
	Run(ctx context.Context, apply func(*state.Snapshot) error) error
}

// StatusReporter is a Source that tells where its configuration stands, for the admin page
// and the readiness check.
type StatusReporter interface {
	Status() Status
}

// Status is where a source's configuration stands.
type Status struct {
	// Source names the source, e.g. "file:/etc/weft/mesh.yaml".
	Source string
	// Version is the version of the last snapshot applied, "" before the first.
	Version string
	// Applied is when that snapshot was applied.
	Applied time.Time
	// LastError is why the newest configuration is not in force: it could not be read, it is
	// invalid, or the agent rejected it. It is nil when the newest configuration is applied.
	LastError error
	// Rejected is the version of the configuration that LastError is about, when it could be
	// read.
	Rejected string
	// Failed is when LastError happened.
	Failed time.Time
	// Disconnected is set by a source that streams its configuration from a server (the
	// controller's xDS) while it has no working stream: from its start until a stream delivers
	// its first response, and from a stream's end until the next one does. LastError then says
	// why (once a connection attempt has failed), and the last good configuration stays in
	// force. A local file source never sets it.
	Disconnected bool
}
