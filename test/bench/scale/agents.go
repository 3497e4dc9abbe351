package scale

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/nodeagent/state"
	"github.com/weftmesh/weft/nodeagent/xds"
)

// Agent is one simulated node agent: the node agent's workload-discovery client, with an
// apply function that records when each snapshot was applied. The Source ACKs a snapshot as
// soon as apply returns.
type Agent struct {
	Node string

	conn   *grpc.ClientConn
	source *xds.Source

	mu      sync.Mutex
	snap    *state.Snapshot // the last snapshot applied
	applies int
	watch   *watch
}

// watch waits for an agent to apply a snapshot that meets a condition.
type watch struct {
	met     func(*state.Snapshot) bool // nil: the agent must apply nothing
	applies int                        // snapshots applied while the watch was set
	at      time.Time                  // when the first snapshot that met it was applied
	done    chan struct{}              // closed at that moment
	early   bool                       // the last snapshot met it already when it was set
}

// AgentOptions says how simulated agents reach the controller.
type AgentOptions struct {
	Target     string // host:port of the controller
	ServerName string // the name the controller's certificate must carry
	RootFile   string // PEM roots of the controller's certificate
	Logger     *slog.Logger
}

// NewAgent dials the controller for node with the token in tokenFile.
func NewAgent(node, tokenFile string, o AgentOptions) (*Agent, error) {
	conn, err := identity.Dial(identity.DialOptions{Target: o.Target, ServerName: o.ServerName, RootFile: o.RootFile,
		PerRPC: identity.TokenCredentials{File: tokenFile}})
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", node, err)
	}
	a := &Agent{Node: node, conn: conn}
	a.source = xds.NewSource(conn, o.Target, xds.Options{Node: node, Logger: o.Logger})
	return a, nil
}

// Run runs the agent's source until ctx is done.
func (a *Agent) Run(ctx context.Context) error { return a.source.Run(ctx, a.apply) }

// Close closes the agent's connection.
func (a *Agent) Close() error { return a.conn.Close() }

// Status is the source's status (connection, last version, last error).
func (a *Agent) Status() string { return fmt.Sprintf("%+v", a.source.Status()) }

func (a *Agent) apply(snap *state.Snapshot) error {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.snap = snap
	a.applies++
	if w := a.watch; w != nil {
		w.applies++
		if w.met != nil && w.at.IsZero() && w.met(snap) {
			w.at = now
			close(w.done)
		}
	}
	return nil
}

// Snapshot returns the last snapshot applied and the number of snapshots applied.
func (a *Agent) Snapshot() (*state.Snapshot, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.snap, a.applies
}

// Watch starts watching for a snapshot that meets met (nil: count applies only). When the
// last snapshot applied meets it already, the watch is marked early and done at once.
func (a *Agent) Watch(met func(*state.Snapshot) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := &watch{met: met, done: make(chan struct{})}
	if met != nil && a.snap != nil && met(a.snap) {
		w.early, w.at = true, time.Now()
		close(w.done)
	}
	a.watch = w
}

// Done is closed when the watch is met; nil when no watch is set.
func (a *Agent) Done() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.watch == nil || a.watch.met == nil {
		return nil
	}
	return a.watch.done
}

// WatchResult is the outcome of a watch.
type WatchResult struct {
	At      time.Time // zero when not met
	Applies int
	Early   bool
}

// Unwatch ends the watch and returns its outcome.
func (a *Agent) Unwatch() WatchResult {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.watch
	a.watch = nil
	if w == nil {
		return WatchResult{}
	}
	return WatchResult{At: w.at, Applies: w.applies, Early: w.early}
}
