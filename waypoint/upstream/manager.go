package upstream

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
)

// Options configure a Manager; the zero value is usable.
type Options struct {
	// Logger receives ejections, re-admissions and DNS failures; slog.Default() if nil.
	Logger *slog.Logger
	// Now is the clock of outlier detection, idle timeouts and ORIGINAL_DST cleanup
	// (time.Now if nil); tests inject a fake one.
	Now func() time.Time
	// Resolver resolves STRICT_DNS and LOGICAL_DNS clusters; net.DefaultResolver if nil.
	Resolver Resolver
	// TickInterval is the period of the background sweep (outlier detection intervals,
	// idle connections); 100ms if zero, never if negative (tests call the sweep directly).
	TickInterval time.Duration
}

// Manager holds the upstream clusters of a waypoint and applies their updates.
type Manager struct {
	dialer Dialer
	opts   Options

	mu       sync.RWMutex
	clusters map[string]*Cluster
	closed   bool

	stop chan struct{}
	done chan struct{}
}

// NewManager returns a Manager whose connections are opened by d, with no cluster yet.
func NewManager(d Dialer, opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.TickInterval == 0 {
		opts.TickInterval = 100 * time.Millisecond
	}
	m := &Manager{dialer: d, opts: opts, clusters: map[string]*Cluster{}, stop: make(chan struct{}), done: make(chan struct{})}
	if opts.TickInterval > 0 {
		go m.run()
	} else {
		close(m.done)
	}
	return m
}

func (m *Manager) run() {
	defer close(m.done)
	t := time.NewTicker(m.opts.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.tick()
		}
	}
}

// tick runs every cluster's periodic work at the manager's clock.
func (m *Manager) tick() {
	now := m.opts.Now()
	m.mu.RLock()
	cs := slices.Collect(maps.Values(m.clusters))
	m.mu.RUnlock()
	for _, c := range cs {
		c.tick(now)
	}
}

// Update replaces the configuration with clusters and loads, the complete current set
// (state of the world): every cluster and load assignment is checked first, and on any
// error nothing changes and the error names the cluster and the field (the waypoint NACKs
// it). On success clusters whose configuration is unchanged keep their state (pools,
// circuit breaker counters, outlier detection), only their endpoints follow loads; changed
// clusters start afresh; removed and replaced clusters close their idle connections, and
// the others when their requests finish. An EDS cluster takes the load assignment named
// after its eds_cluster_config.service_name, or its own name; without one it has no
// endpoints. Load assignments no cluster uses are ignored.
func (m *Manager) Update(clusters []*clusterv3.Cluster, loads []*endpointv3.ClusterLoadAssignment) error {
	byName := make(map[string]*endpointv3.ClusterLoadAssignment, len(loads))
	for i, l := range loads {
		if l == nil || l.GetClusterName() == "" {
			return fmt.Errorf("load assignment %d: cluster_name is empty; name the cluster", i)
		}
		if byName[l.GetClusterName()] != nil {
			return fmt.Errorf("load assignment %q is given twice; send one", l.GetClusterName())
		}
		byName[l.GetClusterName()] = l
	}
	type compiled struct {
		pb  *clusterv3.Cluster
		cfg *config
		eps []endpointSpec
	}
	next := make(map[string]*compiled, len(clusters))
	for i, pb := range clusters {
		if pb == nil {
			return fmt.Errorf("cluster %d is nil", i)
		}
		cfg, err := compile(pb)
		if err != nil {
			return fmt.Errorf("cluster %q: %w", pb.GetName(), err)
		}
		if next[cfg.name] != nil {
			return fmt.Errorf("cluster %q is given twice; send one", cfg.name)
		}
		x := &compiled{pb: pb, cfg: cfg}
		switch cfg.discovery {
		case discoveryEDS:
			if cla := byName[cfg.edsName]; cla != nil {
				if x.eps, err = compileEndpoints(cla, "load_assignment", false); err != nil {
					return fmt.Errorf("cluster %q: load assignment %q: %w", cfg.name, cfg.edsName, err)
				}
			}
		case discoveryStatic:
			x.eps = cfg.static
		}
		next[cfg.name] = x
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errors.New("upstream manager is closed")
	}
	old := m.clusters
	out := make(map[string]*Cluster, len(next))
	var retired []*Cluster
	for name, x := range next {
		if c := old[name]; c != nil && proto.Equal(c.proto, x.pb) {
			if x.cfg.discovery == discoveryEDS || x.cfg.discovery == discoveryStatic {
				c.setEndpoints(x.eps)
			}
			out[name] = c
			continue
		}
		c := newCluster(x.cfg, proto.Clone(x.pb).(*clusterv3.Cluster), m.dialer, &m.opts)
		switch x.cfg.discovery {
		case discoveryEDS, discoveryStatic:
			c.setEndpoints(x.eps)
		case discoveryStrictDNS, discoveryLogicalDNS:
			c.startDNS(m.opts.Resolver)
		}
		out[name] = c
		if o := old[name]; o != nil {
			retired = append(retired, o)
		}
	}
	for name, c := range old {
		if out[name] == nil {
			retired = append(retired, c)
		}
	}
	m.clusters = out
	m.mu.Unlock()
	for _, c := range retired {
		c.drain(false)
	}
	return nil
}

// Cluster returns the cluster named name.
func (m *Manager) Cluster(name string) (*Cluster, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c, ok := m.clusters[name]
	return c, ok
}

// Clusters returns the current clusters sorted by name (for metrics and config dumps).
func (m *Manager) Clusters() []*Cluster {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := slices.Collect(maps.Values(m.clusters))
	slices.SortFunc(out, func(a, b *Cluster) int {
		if a.cfg.name < b.cfg.name {
			return -1
		}
		if a.cfg.name > b.cfg.name {
			return 1
		}
		return 0
	})
	return out
}

// Close stops the background sweep and the DNS resolvers, fails waiting requests, closes
// idle connections and the others when their requests finish. Later requests fail with
// ErrClosed.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	cs := m.clusters
	m.clusters = map[string]*Cluster{}
	m.mu.Unlock()
	close(m.stop)
	<-m.done
	for _, c := range cs {
		c.drain(true)
	}
	return nil
}
