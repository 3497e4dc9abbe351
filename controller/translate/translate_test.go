package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden translates each testdata/*.yaml (Kubernetes and Istio objects) and compares the
// resources, what each node receives and the warnings with testdata/*.golden.
func TestGolden(t *testing.T) {
	golden.Run(t, "testdata/*.yaml", *update, func(t *testing.T, objs []runtime.Object) []byte {
		in := inputOf(t, objs)
		return render(t, Build(in, Options{}), in)
	})
}

func readInput(t *testing.T, file string) Input { return inputOf(t, golden.Objects(t, file)) }

func inputOf(t *testing.T, objs []runtime.Object) Input {
	t.Helper()
	var in Input
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Namespace:
			in.Namespaces = append(in.Namespaces, o)
		case *corev1.Pod:
			in.Pods = append(in.Pods, o)
		case *corev1.Service:
			in.Services = append(in.Services, o)
		case *discoveryv1.EndpointSlice:
			in.EndpointSlices = append(in.EndpointSlices, o)
		case *securityv1.PeerAuthentication:
			in.PeerAuthentications = append(in.PeerAuthentications, o)
		case *securityv1.AuthorizationPolicy:
			in.AuthorizationPolicies = append(in.AuthorizationPolicies, o)
		case *gatewayv1.Gateway:
			in.Gateways = append(in.Gateways, o)
		default:
			t.Fatalf("unexpected %T", obj)
		}
	}
	return in
}

// render writes m as indented JSON: the resources by name, the names each node receives, the
// warnings and, when there are AuthorizationPolicies, their status conditions. protojson's
// output is normalised through encoding/json so that it is stable.
func render(t *testing.T, m *Mesh, in Input) []byte {
	t.Helper()
	resources := map[string]json.RawMessage{}
	for name, r := range m.Resources {
		b, err := protojson.Marshal(r.Address)
		if err != nil {
			t.Fatal(err)
		}
		resources[name] = b
	}
	nodes := map[string][]string{}
	for _, p := range in.Pods {
		if p.Spec.NodeName != "" {
			nodes[p.Spec.NodeName] = Names(m.ForNode(p.Spec.NodeName))
		}
	}
	warnings := []string{}
	for _, w := range m.Warnings {
		warnings = append(warnings, w.Error())
	}
	out := map[string]any{"resources": resources, "nodes": nodes, "warnings": warnings}
	if len(m.PolicyStatus) > 0 {
		out["policyStatus"] = m.PolicyStatus
	}
	if len(m.Waypoints) > 0 {
		out["waypoints"] = m.Waypoints
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

// TestAuthorizationMalformed feeds policies with nil parts that YAML cannot express but a
// client can: the translation must neither panic nor enforce them more loosely.
func TestAuthorizationMalformed(t *testing.T) {
	ap := &securityv1.AuthorizationPolicy{}
	ap.Name, ap.Namespace = "odd", "shop"
	ap.Spec.Action = securityv1beta1.AuthorizationPolicy_DENY
	ap.Spec.Rules = []*securityv1beta1.Rule{
		nil,
		{From: []*securityv1beta1.Rule_From{nil, {}}, To: []*securityv1beta1.Rule_To{nil, {}}, When: []*securityv1beta1.Condition{nil}},
	}
	m := Build(Input{AuthorizationPolicies: []*securityv1.AuthorizationPolicy{ap}}, Options{})
	r, ok := m.Resources[AuthorizationName("shop", "odd")]
	if !ok {
		t.Fatalf("not translated: %+v", m.PolicyStatus)
	}
	// Both rules lost everything to problems: each denies every connection.
	for i, rule := range r.Address.GetAuthorization().GetRules() {
		if len(rule.GetClauses()) != 0 {
			t.Errorf("rule %d = %v, want no clauses (deny all)", i, rule)
		}
	}
	if c := m.PolicyStatus["shop/odd"]; c.Reason != ReasonPartiallyInvalid || !c.Status {
		t.Errorf("condition = %+v, want PartiallyInvalid", c)
	}
	ap.Spec.Action = securityv1beta1.AuthorizationPolicy_ALLOW
	m = Build(Input{AuthorizationPolicies: []*securityv1.AuthorizationPolicy{ap}}, Options{})
	if rules := m.Resources[AuthorizationName("shop", "odd")].Address.GetAuthorization().GetRules(); len(rules) != 0 {
		t.Errorf("ALLOW rules = %v, want none (allow nothing)", rules)
	}
}

// TestAuthorizationOrder: the translation does not depend on the order of the input.
func TestAuthorizationOrder(t *testing.T) {
	in := readInput(t, "testdata/authz-scope.yaml")
	want := render(t, Build(in, Options{}), in)
	slices.Reverse(in.AuthorizationPolicies)
	slices.Reverse(in.Pods)
	if got := render(t, Build(in, Options{}), in); !bytes.Equal(got, want) {
		t.Errorf("the translation depends on the input order:\n%s", got)
	}
}
