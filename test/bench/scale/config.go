package scale

import (
	"errors"
	"fmt"
	"time"
)

// Size is the shape of the simulated cluster.
type Size struct {
	// Nodes is the number of nodes, and of simulated node agents (one per node).
	Nodes int `json:"nodes"`
	// Namespaces holds the services, ServicesPerNamespace each; every AmbientEvery-th
	// namespace (1-based) is NOT labelled istio.io/dataplane-mode=ambient, the others are.
	Namespaces           int `json:"namespaces"`
	ServicesPerNamespace int `json:"servicesPerNamespace"`
	// PodsPerService pods back each service; pods are spread over the nodes round-robin.
	PodsPerService int `json:"podsPerService"`
	AmbientEvery   int `json:"ambientEvery"`
}

// Services is the number of services.
func (s Size) Services() int { return s.Namespaces * s.ServicesPerNamespace }

// Pods is the number of application pods (the agents' own pods excluded).
func (s Size) Pods() int { return s.Services() * s.PodsPerService }

// Ambient reports whether namespace i (0-based) is labelled ambient.
func (s Size) Ambient(i int) bool { return s.AmbientEvery <= 0 || (i+1)%s.AmbientEvery != 0 }

// AmbientNamespaces is the number of namespaces labelled ambient.
func (s Size) AmbientNamespaces() int {
	n := 0
	for i := range s.Namespaces {
		if s.Ambient(i) {
			n++
		}
	}
	return n
}

// Plan is what a run does.
type Plan struct {
	Mode string `json:"mode"` // "full" or "quick"
	Size Size   `json:"size"`
	// ChangesPerKind is how many changes of each kind are measured; kinds take turns.
	ChangesPerKind int `json:"changesPerKind"`
	// Settle is the pause after a change is complete before the next one starts; agents
	// that apply anything during it are counted as spurious.
	Settle Duration `json:"settle"`
	// ChangeTimeout bounds the wait for one change to reach every affected agent.
	ChangeTimeout Duration `json:"changeTimeout"`
	// SyncTimeout bounds the initial sync of all agents.
	SyncTimeout Duration `json:"syncTimeout"`
	// Idle is how long the idle controller's CPU is measured after the initial sync.
	Idle Duration `json:"idle"`
	// Seed seeds the choice of pods, services and namespaces to change.
	Seed int64 `json:"seed"`
}

// Modes.
const (
	Full  = "full"
	Quick = "quick"
)

// NewPlan returns the plan of a mode: full is 100 nodes (agents), 1,000 services and 10,000
// pods in 50 namespaces (40 ambient), 30 changes of each kind; quick is 20 nodes, 100
// services and 1,000 pods in 10 namespaces (8 ambient), 10 changes of each kind.
func NewPlan(mode string) (Plan, error) {
	p := Plan{
		Mode: mode, ChangesPerKind: 30, Settle: Duration(300 * time.Millisecond),
		ChangeTimeout: Duration(60 * time.Second), SyncTimeout: Duration(5 * time.Minute),
		Idle: Duration(5 * time.Second), Seed: 1,
	}
	switch mode {
	case Full:
		p.Size = Size{Nodes: 100, Namespaces: 50, ServicesPerNamespace: 20, PodsPerService: 10, AmbientEvery: 5}
	case Quick:
		p.Size = Size{Nodes: 20, Namespaces: 10, ServicesPerNamespace: 10, PodsPerService: 10, AmbientEvery: 5}
		p.ChangesPerKind = 10
		p.SyncTimeout = Duration(2 * time.Minute)
		p.Idle = Duration(2 * time.Second)
	default:
		return p, fmt.Errorf("mode %q: want %q or %q", mode, Full, Quick)
	}
	return p, nil
}

// Validate checks a plan (after flags changed it).
func (p Plan) Validate() error {
	s := p.Size
	switch {
	case s.Nodes < 1 || s.Namespaces < 1 || s.ServicesPerNamespace < 1 || s.PodsPerService < 1:
		return errors.New("plan: nodes, namespaces, services per namespace and pods per service must be at least 1")
	case s.AmbientNamespaces() == 0:
		return errors.New("plan: no namespace would be ambient; raise AmbientEvery")
	case s.Pods()+p.ChangesPerKind > 60000:
		return errors.New("plan: more than 60,000 pods do not fit the pod range 198.18.0.0/16")
	case s.Services() > 60000:
		return errors.New("plan: more than 60,000 services do not fit the service range 198.19.0.0/16")
	case p.ChangesPerKind < 1:
		return errors.New("plan: at least one change per kind")
	}
	return nil
}

// Duration is a time.Duration that is a string ("300ms") in JSON.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}
