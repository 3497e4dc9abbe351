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

// peerAuthIndex resolves the effective PeerAuthentication of a pod as Istio does: the oldest
// workload policy whose selector matches the pod, else the namespace's oldest policy without
// selector, else the root namespace's; a level whose mode is UNSET inherits from the next, and
// the mesh default is PERMISSIVE. Port-level modes count only in workload policies (they name
// the pod's ports).
type peerAuthIndex struct {
	root      string
	byNS      map[string][]*securityv1.PeerAuthentication // oldest first
	namespace map[string]*securityv1.PeerAuthentication   // namespace-wide policy per namespace
}

func newPeerAuthIndex(pas []*securityv1.PeerAuthentication, root string) *peerAuthIndex {
	x := &peerAuthIndex{root: root, byNS: map[string][]*securityv1.PeerAuthentication{}, namespace: map[string]*securityv1.PeerAuthentication{}}
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
			}
			continue
		}
		x.byNS[pa.Namespace] = append(x.byNS[pa.Namespace], pa)
	}
	return x
}

// resolve returns the effective policy of pod.
func (x *peerAuthIndex) resolve(pod *corev1.Pod) *workloadv1.PeerAuthentication {
	mode := workloadv1.MTLSMode_PERMISSIVE
	if m := policyMode(x.namespace[x.root]); m != workloadv1.MTLSMode_UNSET {
		mode = m
	}
	if pod.Namespace != x.root {
		if m := policyMode(x.namespace[pod.Namespace]); m != workloadv1.MTLSMode_UNSET {
			mode = m
		}
	}
	var workload *securityv1.PeerAuthentication
	for _, pa := range x.byNS[pod.Namespace] {
		if labels.SelectorFromSet(pa.Spec.GetSelector().GetMatchLabels()).Matches(labels.Set(pod.Labels)) {
			workload = pa
			break
		}
	}
	if workload == nil {
		return &workloadv1.PeerAuthentication{Mode: mode}
	}
	if m := policyMode(workload); m != workloadv1.MTLSMode_UNSET {
		mode = m
	}
	out := &workloadv1.PeerAuthentication{Mode: mode}
	for port, mtls := range workload.Spec.GetPortLevelMtls() {
		m := convertMode(mtls.GetMode())
		if m == workloadv1.MTLSMode_UNSET {
			m = mode
		}
		if m == mode {
			continue
		}
		if out.PortLevel == nil {
			out.PortLevel = map[uint32]workloadv1.MTLSMode{}
		}
		out.PortLevel[port] = m
	}
	return out
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
