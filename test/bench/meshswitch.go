package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/mesh"
)

// MeshSwitch moves the benchmark's namespace in and out of Weft's data path between load points,
// the way a user would: the namespace label istio.io/dataplane-mode=ambient, which the controller
// pushes to the agents. The pods keep running; unenrolled, their
// traffic is plain again. After each switch it checks with a request from the client pod and the
// server node agent's metrics that the path is the one asked for.
type MeshSwitch struct {
	Cluster *harness.Cluster
	// Target is what the checks load: a cross-node target, whose connections the server
	// node's agent counts as their destination (a same-node connection is counted only by its
	// source). Enrolment is per namespace, so the checks hold for every target in it.
	Target Target
	Fortio string // host path of fortio, for the check request
	// Settle is the wait after changing the label before the first check.
	Settle time.Duration
	// Timeout bounds the checks of one switch.
	Timeout time.Duration
}

// Tunnel metrics of the node agents (package nodeagent/admin).
const (
	connsOpenedMetric = "istio_tcp_connections_opened_total"
	mutualTLS         = `connection_security_policy="mutual_tls"`
)

// Enroll labels the namespace ambient (without istio.io/use-waypoint) and waits until a new
// connection from the client pod to the server arrives at the server node's agent over mTLS.
func (m *MeshSwitch) Enroll(ctx context.Context) error {
	if err := mesh.SetNamespaceLabel(ctx, m.Cluster, m.Target.Namespace, api.LabelUseWaypoint, ""); err != nil {
		return fmt.Errorf("enroll %s: %w", m.Target.Namespace, err)
	}
	if err := mesh.SetAmbient(ctx, m.Cluster, m.Target.Namespace, true); err != nil {
		return fmt.Errorf("enroll %s: %w", m.Target.Namespace, err)
	}
	if sleep(ctx, m.Settle); ctx.Err() != nil {
		return fmt.Errorf("enroll %s: %w", m.Target.Namespace, ctx.Err())
	}
	if err := m.check(ctx, true); err != nil {
		return fmt.Errorf("enroll %s: %w", m.Target.Namespace, err)
	}
	return nil
}

// Unenroll removes the namespace's labels (ambient and istio.io/use-waypoint) and waits until a
// new connection from the client pod reaches the server without passing the server node's agent.
func (m *MeshSwitch) Unenroll(ctx context.Context) error {
	if err := mesh.SetNamespaceLabel(ctx, m.Cluster, m.Target.Namespace, api.LabelUseWaypoint, ""); err != nil {
		return fmt.Errorf("unenroll %s: %w", m.Target.Namespace, err)
	}
	if err := mesh.SetAmbient(ctx, m.Cluster, m.Target.Namespace, false); err != nil {
		return fmt.Errorf("unenroll %s: %w", m.Target.Namespace, err)
	}
	if sleep(ctx, m.Settle); ctx.Err() != nil {
		return fmt.Errorf("unenroll %s: %w", m.Target.Namespace, ctx.Err())
	}
	if err := m.check(ctx, false); err != nil {
		return fmt.Errorf("unenroll %s: %w", m.Target.Namespace, err)
	}
	return nil
}

// EnrollWaypoint returns the Enter of the L7 scenario: it labels the namespace ambient and
// istio.io/use-waypoint=WaypointName and waits until a request from the client pod to l7's
// HTTPURL (a Service VIP, which the waypoint handles) is counted by the waypoint
// (istio_requests_total).
func (m *MeshSwitch) EnrollWaypoint(l7 Target) func(context.Context) error {
	return func(ctx context.Context) error {
		ns := l7.Namespace
		if err := mesh.SetAmbient(ctx, m.Cluster, ns, true); err != nil {
			return fmt.Errorf("enroll %s with waypoint: %w", ns, err)
		}
		if err := mesh.SetNamespaceLabel(ctx, m.Cluster, ns, api.LabelUseWaypoint, WaypointName); err != nil {
			return fmt.Errorf("enroll %s with waypoint: %w", ns, err)
		}
		if sleep(ctx, m.Settle); ctx.Err() != nil {
			return fmt.Errorf("enroll %s with waypoint: %w", ns, ctx.Err())
		}
		err := harness.WaitFor(ctx, m.Timeout, "a request to "+l7.HTTPURL+" counted by the waypoint", func(ctx context.Context) (bool, error) {
			before, err := mesh.WaypointRequests(ctx, m.Cluster, ns, WaypointName)
			if err != nil {
				return false, err
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if _, err := m.Cluster.Exec(cctx, ns, l7.ClientPod, m.Fortio, "curl", "-loglevel", "Warning", l7.HTTPURL); err != nil {
				return false, err
			}
			after, err := mesh.WaypointRequests(ctx, m.Cluster, ns, WaypointName)
			if err != nil {
				return false, err
			}
			return after > before, nil
		})
		if err != nil {
			return fmt.Errorf("enroll %s with waypoint: %w", ns, err)
		}
		return nil
	}
}

// check sends requests from the client pod until one is counted as an mTLS connection by the
// server node's agent (tunnel) or one is not counted at all (!tunnel).
func (m *MeshSwitch) check(ctx context.Context, tunnel bool) error {
	node := m.Cluster.Node(m.Target.ServerNode)
	if node == nil {
		return fmt.Errorf("check: no node %q", m.Target.ServerNode)
	}
	want := "no connection counted by the server node's agent"
	if tunnel {
		want = "an mTLS connection counted by the server node's agent"
	}
	return harness.WaitFor(ctx, m.Timeout, want, func(ctx context.Context) (bool, error) {
		before, err := mesh.AgentMetrics(ctx, node)
		if err != nil {
			return false, err
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := m.Cluster.Exec(cctx, m.Target.Namespace, m.Target.ClientPod, m.Fortio, "curl", "-loglevel", "Warning", m.Target.HTTPURL); err != nil {
			return false, err
		}
		after, err := mesh.AgentMetrics(ctx, node)
		if err != nil {
			return false, err
		}
		opened, mtls := DestinationConns(before, after, m.Target.Namespace)
		if tunnel {
			return opened > 0 && mtls == opened, nil
		}
		return opened == 0, nil
	})
}

// DestinationConns compares two scrapes of a node agent's metrics: how many connections to
// workloads of namespace ns the agent accepted as their destination between them, and how many
// of those came over mTLS.
func DestinationConns(before, after, ns string) (opened, mtls float64) {
	parts := []string{`reporter="destination"`, `destination_workload_namespace="` + ns + `"`}
	opened = mesh.CounterSum(after, connsOpenedMetric, parts...) - mesh.CounterSum(before, connsOpenedMetric, parts...)
	parts = append(parts, mutualTLS)
	mtls = mesh.CounterSum(after, connsOpenedMetric, parts...) - mesh.CounterSum(before, connsOpenedMetric, parts...)
	return opened, mtls
}

// NodeAgents returns Weft's node agent pods (DaemonSet weft-system/weft-nodeagent) with their
// cgroups, ordered by node.
func NodeAgents(ctx context.Context, c *harness.Cluster) ([]Agent, error) {
	pods, err := c.Client.CoreV1().Pods("weft-system").List(ctx, metav1.ListOptions{LabelSelector: "app=weft-nodeagent"})
	if err != nil {
		return nil, fmt.Errorf("node agents: %w", err)
	}
	var agents []Agent
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || !mesh.PodReady(p) {
			continue
		}
		dir, err := c.PodCgroupDir(&p)
		if err != nil {
			return nil, fmt.Errorf("node agents: %w", err)
		}
		agents = append(agents, Agent{Node: p.Spec.NodeName, Pod: p.Namespace + "/" + p.Name, Cgroup: dir})
	}
	if len(agents) != len(c.Nodes) {
		return nil, fmt.Errorf("node agents: %d ready for %d nodes", len(agents), len(c.Nodes))
	}
	slices.SortFunc(agents, func(a, b Agent) int { return strings.Compare(a.Node, b.Node) })
	return agents, nil
}
