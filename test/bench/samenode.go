package bench

import "fmt"

// SameNodeWorkloads returns the IDs of the plan's workloads that the same-node scenarios run,
// in plan order: 1000 rps, connection per request and one bulk stream.
func SameNodeWorkloads(p Plan) []string {
	return p.IDs(func(w Workload) bool {
		switch w.ID {
		case "http-1000rps", "http-newconn", "tcp-1stream":
			return true
		}
		return false
	})
}

// SameNodeScenarios returns the same-node pair, to be interleaved with the others:
// NoMeshSameNodeScenario (the namespace unenrolled) and WeftSameNodeScenario (enrolled), both
// loading same (Targets.SameNode) with SameNodeWorkloads, both with NoMeshSameNodeScenario as
// their baseline.
//
// They switch with sw, whose checks load sw.Target, the cross-node target: enrolment is per
// namespace, so that check proves the state of the same-node pods too, whereas a same-node
// connection could not prove it (the client's agent hands it over itself and counts it only as
// its source, never as a destination).
func SameNodeScenarios(same Target, p Plan, sw *MeshSwitch) []Scenario {
	ids := SameNodeWorkloads(p)
	return []Scenario{{
		Name: NoMeshSameNodeScenario,
		Description: fmt.Sprintf("plain pod→pod on one node (%s): pod veth, node bridge, pod veth; "+
			"Weft's node agents run, namespace not enrolled (no capture); only the workloads %v", same.ClientNode, ids),
		Target:    same,
		Enter:     sw.Unenroll,
		Workloads: ids,
		Path:      PathNone,
		Baseline:  NoMeshSameNodeScenario,
	}, {
		Name: WeftSameNodeScenario,
		Description: fmt.Sprintf("Weft L4 on one node (%s): namespace labelled istio.io/dataplane-mode=ambient; eBPF redirects the client's "+
			"connect() to the node's agent, which, the server pod being on its own node, hands the connection to the server's app itself "+
			"(no HBONE stream, no TLS; the same identity and policy checks), connecting with the client's address; no underlay hop; "+
			"ratios to %s; only the workloads %v", same.ClientNode, NoMeshSameNodeScenario, ids),
		Target:    same,
		Enter:     sw.Enroll,
		Workloads: ids,
		Path:      PathAgents,
		Baseline:  NoMeshSameNodeScenario,
	}}
}
