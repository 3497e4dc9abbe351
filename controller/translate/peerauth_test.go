package translate

import (
	"reflect"
	"testing"

	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
)

// TestExplainPeerAuthentication: the explanation names the policy and level that decided each
// mode, on the objects of testdata/peerauthentication.yaml and a few more.
func TestExplainPeerAuthentication(t *testing.T) {
	in := readInput(t, "testdata/peerauthentication.yaml")
	pods := map[string]*corev1.Pod{}
	for _, p := range in.Pods {
		pods[p.Name] = p
	}
	const (
		strict     = workloadv1.MTLSMode_STRICT
		permissive = workloadv1.MTLSMode_PERMISSIVE
		unset      = workloadv1.MTLSMode_UNSET
	)
	mesh := PeerAuthDecision{Mode: strict, Policy: "istio-system/default", Level: PeerAuthLevelMesh}
	pay := PeerAuthDecision{Mode: permissive, Policy: "pay/default", Level: PeerAuthLevelNamespace}
	ledger := PeerAuthDecision{Mode: strict, Policy: "pay/ledger-strict", Level: PeerAuthLevelWorkload}

	unsetNS := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "inherit", Namespace: "ops"}}
	unsetNS.Spec.Mtls = &securityv1beta1.PeerAuthentication_MutualTLS{Mode: securityv1beta1.PeerAuthentication_MutualTLS_UNSET}
	newerNS := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "newer", Namespace: "ops", CreationTimestamp: metav1.Unix(1e9, 0)}}
	newerNS.Spec.Mtls = &securityv1beta1.PeerAuthentication_MutualTLS{Mode: securityv1beta1.PeerAuthentication_MutualTLS_DISABLE}
	withOps := in
	withOps.PeerAuthentications = append(append([]*securityv1.PeerAuthentication{}, in.PeerAuthentications...), unsetNS, newerNS)

	for _, tc := range []struct {
		name string
		in   Input
		pod  *corev1.Pod
		want PeerAuthExplanation
	}{
		{"workload policy with port levels, a newer one ignored", in, pods["ledger"], PeerAuthExplanation{
			Default:    ledger,
			Ports:      map[uint32]PeerAuthDecision{9090: {Mode: permissive, Policy: "pay/ledger-strict", Level: PeerAuthLevelWorkload}, 8443: ledger},
			Considered: []PeerAuthDecision{ledger, pay, mesh},
			Ignored:    []string{"pay/ledger-newer"},
		}},
		{"namespace policy over the mesh", in, pods["checkout"], PeerAuthExplanation{
			Default: pay, Considered: []PeerAuthDecision{pay, mesh},
		}},
		{"mesh policy only", in, pods["tool"], PeerAuthExplanation{Default: mesh, Considered: []PeerAuthDecision{mesh}}},
		{"namespace UNSET inherits the mesh; the newer namespace policy loses", withOps, pods["tool"], PeerAuthExplanation{
			Default:    mesh,
			Considered: []PeerAuthDecision{{Mode: unset, Policy: "ops/inherit", Level: PeerAuthLevelNamespace}, mesh},
			Ignored:    []string{"ops/newer"},
		}},
		{"no policy: the PERMISSIVE default", Input{}, pods["tool"], PeerAuthExplanation{
			Default: PeerAuthDecision{Mode: permissive, Level: PeerAuthLevelDefault},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ExplainPeerAuthentication(tc.in, Options{}, tc.pod)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestExplainAgreesWithBuild: for every pod of every testdata file, the explanation gives the
// modes that Build puts into the workload.
func TestExplainAgreesWithBuild(t *testing.T) {
	for _, f := range []string{"testdata/peerauthentication.yaml", "testdata/enrollment.yaml", "testdata/authz-scope.yaml"} {
		in := readInput(t, f)
		m := Build(in, Options{})
		for _, pod := range in.Pods {
			r, ok := m.Resources[WorkloadUID("Kubernetes", pod.Namespace, pod.Name)]
			pa := r.Address.GetWorkload().GetPeerAuthentication()
			if !ok || pa == nil {
				continue // not a workload, or not enrolled
			}
			e := ExplainPeerAuthentication(in, Options{}, pod)
			if e.Default.Mode != pa.GetMode() {
				t.Errorf("%s %s/%s: explained %v, built %v", f, pod.Namespace, pod.Name, e.Default.Mode, pa.GetMode())
			}
			for port, mode := range pa.GetPortLevel() {
				if e.Ports[port].Mode != mode {
					t.Errorf("%s %s/%s port %d: explained %v, built %v", f, pod.Namespace, pod.Name, port, e.Ports[port].Mode, mode)
				}
			}
		}
	}
}
