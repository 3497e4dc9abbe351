package translate

import (
	"cmp"
	"slices"

	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
)

// PeerAuthLevel is where a PeerAuthentication sits in Istio's precedence: workload (a selector
// matches the pod) over namespace (no selector) over mesh (no selector, in the root namespace).
type PeerAuthLevel string

// The levels of PeerAuthentication, most specific first, and the mesh default (no policy).
const (
	PeerAuthLevelWorkload  PeerAuthLevel = "workload"
	PeerAuthLevelNamespace PeerAuthLevel = "namespace"
	PeerAuthLevelMesh      PeerAuthLevel = "mesh"
	PeerAuthLevelDefault   PeerAuthLevel = "default"
)

// PeerAuthDecision is a mutual TLS mode and the PeerAuthentication that set it: Policy is its
// "<namespace>/<name>", empty for the mesh default (PERMISSIVE, Level PeerAuthLevelDefault).
type PeerAuthDecision struct {
	Mode   workloadv1.MTLSMode
	Policy string
	Level  PeerAuthLevel
}

// PeerAuthExplanation is how the effective PeerAuthentication of a pod was resolved.
type PeerAuthExplanation struct {
	// Default is the mode of every port without a port-level mode, and what decided it.
	Default PeerAuthDecision
	// Ports holds each port that the pod's workload policy names in portLevelMtls (also those
	// whose mode equals Default's: a port-level UNSET inherits Default, with its decider).
	Ports map[uint32]PeerAuthDecision
	// Considered lists the policies in force for the pod, most specific first, each with its
	// own mode: UNSET means it inherits from the next.
	Considered []PeerAuthDecision
	// Ignored names ("<namespace>/<name>") the policies that would apply at a level but lose
	// to an older one at the same level, as in Istio (which warns about them).
	Ignored []string
}

// ExplainPeerAuthentication resolves the PeerAuthentication of pod as Build does and tells
// what decided each mode. It does not look at enrollment: the agent applies the result only to
// pods in the mesh.
func ExplainPeerAuthentication(in Input, o Options, pod *corev1.Pod) PeerAuthExplanation {
	o = o.withDefaults()
	return newPeerAuthIndex(in.PeerAuthentications, o.RootNamespace).explain(pod)
}

// peerAuthIndex resolves the effective PeerAuthentication of a pod as Istio does: the oldest
// workload policy whose selector matches the pod, else the namespace's oldest policy without
// selector, else the root namespace's; a level whose mode is UNSET inherits from the next, and
// the mesh default is PERMISSIVE. Port-level modes count only in workload policies (they name
// the pod's ports).
type peerAuthIndex struct {
	root      string
	byNS      map[string][]*securityv1.PeerAuthentication // oldest first
	namespace map[string]*securityv1.PeerAuthentication   // namespace-wide policy per namespace
	// shadowed holds per namespace the newer namespace-wide policies, which lose to namespace.
	shadowed map[string][]*securityv1.PeerAuthentication
}

func newPeerAuthIndex(pas []*securityv1.PeerAuthentication, root string) *peerAuthIndex {
	x := &peerAuthIndex{root: root, byNS: map[string][]*securityv1.PeerAuthentication{},
		namespace: map[string]*securityv1.PeerAuthentication{}, shadowed: map[string][]*securityv1.PeerAuthentication{}}
	sorted := slices.Clone(pas)
	slices.SortFunc(sorted, func(a, b *securityv1.PeerAuthentication) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	for _, pa := range sorted {
		if len(pa.Spec.GetSelector().GetMatchLabels()) == 0 {
			if _, ok := x.namespace[pa.Namespace]; !ok {
				x.namespace[pa.Namespace] = pa
			} else {
				x.shadowed[pa.Namespace] = append(x.shadowed[pa.Namespace], pa)
			}
			continue
		}
		x.byNS[pa.Namespace] = append(x.byNS[pa.Namespace], pa)
	}
	return x
}

// resolve returns the effective policy of pod.
func (x *peerAuthIndex) resolve(pod *corev1.Pod) *workloadv1.PeerAuthentication {
	e := x.explain(pod)
	out := &workloadv1.PeerAuthentication{Mode: e.Default.Mode}
	for port, d := range e.Ports {
		if d.Mode == e.Default.Mode {
			continue
		}
		if out.PortLevel == nil {
			out.PortLevel = map[uint32]workloadv1.MTLSMode{}
		}
		out.PortLevel[port] = d.Mode
	}
	return out
}

// explain resolves the policy of pod (see peerAuthIndex) and records what decided.
func (x *peerAuthIndex) explain(pod *corev1.Pod) PeerAuthExplanation {
	var e PeerAuthExplanation
	e.Default = PeerAuthDecision{Mode: workloadv1.MTLSMode_PERMISSIVE, Level: PeerAuthLevelDefault}
	level := func(pa *securityv1.PeerAuthentication, l PeerAuthLevel) {
		if pa == nil {
			return
		}
		d := PeerAuthDecision{Mode: policyMode(pa), Policy: pa.Namespace + "/" + pa.Name, Level: l}
		e.Considered = append(e.Considered, d)
		if d.Mode != workloadv1.MTLSMode_UNSET {
			e.Default = d
		}
	}
	ignore := func(pas []*securityv1.PeerAuthentication) {
		for _, pa := range pas {
			e.Ignored = append(e.Ignored, pa.Namespace+"/"+pa.Name)
		}
	}
	level(x.namespace[x.root], PeerAuthLevelMesh)
	ignore(x.shadowed[x.root])
	if pod.Namespace != x.root {
		level(x.namespace[pod.Namespace], PeerAuthLevelNamespace)
		ignore(x.shadowed[pod.Namespace])
	}
	var workload *securityv1.PeerAuthentication
	for _, pa := range x.byNS[pod.Namespace] {
		if labels.SelectorFromSet(pa.Spec.GetSelector().GetMatchLabels()).Matches(labels.Set(pod.Labels)) {
			if workload == nil {
				workload = pa
			} else {
				ignore([]*securityv1.PeerAuthentication{pa})
			}
		}
	}
	level(workload, PeerAuthLevelWorkload)
	slices.Reverse(e.Considered) // most specific first
	if workload == nil {
		return e
	}
	for port, mtls := range workload.Spec.GetPortLevelMtls() {
		d := PeerAuthDecision{Mode: convertMode(mtls.GetMode()), Policy: workload.Namespace + "/" + workload.Name, Level: PeerAuthLevelWorkload}
		if d.Mode == workloadv1.MTLSMode_UNSET {
			d = e.Default
		}
		if e.Ports == nil {
			e.Ports = map[uint32]PeerAuthDecision{}
		}
		e.Ports[port] = d
	}
	return e
}

func policyMode(pa *securityv1.PeerAuthentication) workloadv1.MTLSMode {
	if pa == nil {
		return workloadv1.MTLSMode_UNSET
	}
	return convertMode(pa.Spec.GetMtls().GetMode())
}

func convertMode(m securityv1beta1.PeerAuthentication_MutualTLS_Mode) workloadv1.MTLSMode {
	switch m {
	case securityv1beta1.PeerAuthentication_MutualTLS_DISABLE:
		return workloadv1.MTLSMode_DISABLE
	case securityv1beta1.PeerAuthentication_MutualTLS_PERMISSIVE:
		return workloadv1.MTLSMode_PERMISSIVE
	case securityv1beta1.PeerAuthentication_MutualTLS_STRICT:
		return workloadv1.MTLSMode_STRICT
	}
	return workloadv1.MTLSMode_UNSET
}
