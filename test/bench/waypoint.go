package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/mesh"
)

// WaypointName is the name of the benchmark's waypoint: its Gateway, Deployment and the value
// of the istio.io/use-waypoint label that sends the namespace's service traffic through it.
const WaypointName = "waypoint"

// DeployWaypoint deploys the waypoint of namespace ns (see mesh.DeployWaypoint) and returns its
// pod with its node and cgroup, for a WaypointMeter.
func DeployWaypoint(ctx context.Context, c *harness.Cluster, ns string) (Agent, error) {
	if err := mesh.DeployWaypoint(ctx, c, ns, WaypointName, deployWait); err != nil {
		return Agent{}, err
	}
	pods, err := mesh.WaypointPods(ctx, c, ns, WaypointName)
	if err != nil {
		return Agent{}, err
	}
	if len(pods) != 1 {
		return Agent{}, fmt.Errorf("waypoint: %d ready pods, want 1", len(pods))
	}
	dir, err := c.PodCgroupDir(&pods[0])
	if err != nil {
		return Agent{}, fmt.Errorf("waypoint: %w", err)
	}
	return Agent{Node: pods[0].Spec.NodeName, Pod: pods[0].Namespace + "/" + pods[0].Name, Cgroup: dir}, nil
}

// ServiceURL returns http://<cluster IP>:<first port>/ of a Service: traffic addressed to the
// Service's VIP, which a waypoint (istio.io/waypoint-for: service, the default) handles.
func ServiceURL(ctx context.Context, c *harness.Cluster, ns, name string) (string, error) {
	svc, err := c.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("service %s/%s: %w", ns, name, err)
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone || len(svc.Spec.Ports) == 0 {
		return "", fmt.Errorf("service %s/%s: no cluster IP or no port", ns, name)
	}
	return fmt.Sprintf("http://%s/", net.JoinHostPort(svc.Spec.ClusterIP, fmt.Sprint(svc.Spec.Ports[0].Port))), nil
}

// WaypointMeter accounts a waypoint pod's resources exactly as AgentMeter accounts a node
// agent's (CPU from the pod's cgroup, peak RSS from VmHWM of its processes, reset when the
// window starts), under the Waypoint* metrics.
type WaypointMeter struct {
	Waypoint Agent
	// Proc is the proc filesystem ("" is /proc); tests point it at a fixture.
	Proc string
	// Now is the clock of the window (nil is time.Now).
	Now func() time.Time
}

// Start implements Meter.
func (m *WaypointMeter) Start() (func() (Sample, error), error) {
	am := &AgentMeter{Agents: []Agent{m.Waypoint}, Proc: m.Proc, Now: m.Now}
	stop, err := am.Start()
	if err != nil {
		return nil, fmt.Errorf("waypoint meter: %w", err)
	}
	return func() (Sample, error) {
		s, err := stop()
		if err != nil {
			return nil, fmt.Errorf("waypoint meter: %w", err)
		}
		return Sample{WaypointCPU: s[AgentCPU], WaypointVCPU: s[AgentVCPU], WaypointRSS: s[AgentRSS]}, nil
	}, nil
}

// Meters measures with every meter at once; the sample joins theirs. It fails when any fails.
type Meters []Meter

// Start implements Meter.
func (ms Meters) Start() (func() (Sample, error), error) {
	stops := make([]func() (Sample, error), 0, len(ms))
	for _, m := range ms {
		stop, err := m.Start()
		if err != nil {
			return nil, err
		}
		stops = append(stops, stop)
	}
	return func() (Sample, error) {
		out := Sample{}
		var errs []error
		for _, stop := range stops {
			s, err := stop()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for k, v := range s {
				out[k] = v
			}
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		return out, nil
	}, nil
}
