package explain

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	workloadv1 "github.com/weftmesh/weft/api/workload/v1"
	"github.com/weftmesh/weft/controller/translate"

	"github.com/weftmesh/weft/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// readInput decodes a multi-document YAML file of Kubernetes and Istio objects.
func readInput(t *testing.T, file string) translate.Input {
	t.Helper()
	var in translate.Input
	for _, obj := range golden.Objects(t, file) {
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
		default:
			t.Fatalf("%s: unexpected %T", file, obj)
		}
	}
	return in
}

// TestGolden prints each case's report, as a table or JSON, and compares it with
// testdata/<case>.golden (`go test ./controller/explain -update` rewrites them).
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name, input, command, namespace, pod string
		json                                 bool
	}{
		{"authz-books", "authz.yaml", "authz", "mesh", "books-v1-abc", false},
		{"authz-books-json", "authz.yaml", "authz", "mesh", "books-v1-abc", true},
		{"authz-gw", "authz.yaml", "authz", "mesh", "gw-xyz", false},
		{"authz-not-enrolled", "authz.yaml", "authz", "legacy", "old", false},
		{"authz-opted-out", "authz.yaml", "authz", "mesh", "opted-out", false},
		{"tls-ledger", "tls.yaml", "tls", "pay", "ledger-0", false},
		{"tls-ledger-json", "tls.yaml", "tls", "pay", "ledger-0", true},
		{"tls-checkout", "tls.yaml", "tls", "pay", "checkout", false},
		{"tls-not-enrolled", "tls.yaml", "tls", "ops", "tool", false},
		{"tls-no-policy", "authz.yaml", "tls", "mesh", "gw-xyz", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := readInput(t, filepath.Join("testdata", tc.input))
			o := Options{Namespace: tc.namespace, Pod: tc.pod}
			var report any
			var err error
			if tc.command == "authz" {
				report, err = Authz(in, o)
			} else {
				report, err = TLS(in, o)
			}
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			switch r := report.(type) {
			case *AuthzReport:
				if tc.json {
					err = writeJSON(&buf, r)
				} else {
					err = WriteAuthz(&buf, r)
				}
			case *TLSReport:
				if tc.json {
					err = writeJSON(&buf, r)
				} else {
					err = WriteTLS(&buf, r)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", tc.name+".golden"), buf.Bytes(), *update)
		})
	}
}

func writeJSON(buf *bytes.Buffer, v any) error {
	enc := json.NewEncoder(buf)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// TestAuthzRows pins the columns of the rows, case by case.
func TestAuthzRows(t *testing.T) {
	in := readInput(t, "testdata/authz.yaml")
	r, err := Authz(in, Options{Namespace: "mesh", Pod: "books-v1-abc"})
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]AuthzRow{}
	var order []string
	for _, p := range r.Policies {
		rows[p.Policy] = p
		order = append(order, p.Policy)
	}
	for _, tc := range []struct {
		policy, action, scope, enforced string
		rules                           []string
	}{
		{"istio-system/mesh-deny", "DENY", "mesh-wide (root namespace istio-system)", "yes", []string{"from ipBlocks 203.0.113.0/24"}},
		{"istio-system/audit-books", "AUDIT", "selector app=books (root namespace: every namespace)", "yes", []string{"any connection"}},
		{"mesh/books-from-gw", "ALLOW", "selector app=books", "yes", []string{"from principals cluster.local/ns/mesh/sa/gw"}},
		{"mesh/ns-allow", "ALLOW", "namespace mesh", "yes", []string{"from namespaces [mesh, ops] and to ports 8080"}},
		// An ALLOW rule with HTTP attributes matches nothing: only the second rule is left.
		{"mesh/l7-allow", "ALLOW", "selector app=books,version=v1", "partly: fields L4 cannot check", []string{"from principals */ns/mesh/sa/ratings"}},
		// A DENY rule is enforced without its HTTP attributes: it denies more.
		{"mesh/l7-deny", "DENY", "selector app=books", "partly: fields L4 cannot check",
			[]string{"(from namespaces legacy or from notPrincipals cluster.local/* and ipBlocks 198.18.0.0/16) and to ports [8080, 9090]"}},
		{"mesh/only-l7", "ALLOW", "selector app=books", "partly: fields L4 cannot check", []string{"no rule left: matches no connection"}},
		{"mesh/ext-authz", "CUSTOM", "selector app=books", "no: CUSTOM needs a waypoint", []string{}},
		{"mesh/trial", "DENY", "selector app=books", "no: dry-run", []string{}},
		{"mesh/books-waypoint", "ALLOW", "targetRefs Service mesh/books (L7: enforced by its waypoint)", "no: needs a waypoint (see its WaypointAccepted condition)", []string{}},
		{"mesh/deny-no-rules", "DENY", "namespace mesh", "no: invalid", []string{}},
	} {
		got, ok := rows[tc.policy]
		if !ok {
			t.Errorf("%s: missing; rows %v", tc.policy, order)
			continue
		}
		if got.Action != tc.action || got.Scope != tc.scope || got.Enforced != tc.enforced || !slices.Equal(got.Rules, tc.rules) {
			t.Errorf("%s:\n got  %s | %s | %s | %q\n want %s | %s | %s | %q", tc.policy, got.Action, got.Scope, got.Enforced, got.Rules, tc.action, tc.scope, tc.enforced, tc.rules)
		}
	}
	for _, absent := range []string{"mesh/ratings-only", "legacy/elsewhere"} {
		if _, ok := rows[absent]; ok {
			t.Errorf("%s applies to books, want not", absent)
		}
	}
	want := []string{"mesh/ext-authz", "istio-system/mesh-deny", "mesh/deny-no-rules", "mesh/l7-deny", "mesh/trial",
		"mesh/books-from-gw", "mesh/books-waypoint", "mesh/l7-allow", "mesh/ns-allow", "mesh/only-l7", "istio-system/audit-books"}
	if !slices.Equal(order, want) {
		t.Errorf("order %v\nwant  %v", order, want)
	}
	if !r.Enrolled {
		t.Error("books is enrolled")
	}
}

// TestAppliesAgreesWithTranslate: the selector scopes that Authz computes from the policies
// select the same policies that the translation names in each enrolled workload.
func TestAppliesAgreesWithTranslate(t *testing.T) {
	for _, f := range []string{"testdata/authz.yaml", "../translate/testdata/authz-scope.yaml"} {
		in := readInput(t, f)
		m := translate.Build(in, translate.Options{})
		for _, pod := range in.Pods {
			w := m.Resources[translate.WorkloadUID("Kubernetes", pod.Namespace, pod.Name)].Address.GetWorkload()
			if w.GetTunnelProtocol() != workloadv1.TunnelProtocol_HBONE {
				continue
			}
			var got []string
			for _, ap := range in.AuthorizationPolicies {
				name := translate.AuthorizationName(ap.Namespace, ap.Name)
				auth := m.Resources[name].Address.GetAuthorization()
				if auth == nil || auth.Scope != workloadv1.AuthorizationScope_WORKLOAD_SELECTOR {
					continue
				}
				if _, ok := applies(ap, pod, "istio-system", nil); ok {
					got = append(got, name)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, w.AuthorizationPolicies) {
				t.Errorf("%s %s/%s: applies selects %v, translate %v", f, pod.Namespace, pod.Name, got, w.AuthorizationPolicies)
			}
		}
	}
}

func TestPodNotFound(t *testing.T) {
	in := readInput(t, "testdata/authz.yaml")
	for _, tc := range []struct {
		namespace, pod, want string
	}{
		{"default", "gw-xyz", `pod "gw-xyz" not found in namespace "default"; a pod of that name is in namespace mesh: add -n mesh`},
		{"mesh", "nope", `pod "nope" not found in namespace "mesh"; name the pod's namespace with -n <namespace>`},
	} {
		_, err := Authz(in, Options{Namespace: tc.namespace, Pod: tc.pod})
		var nf *PodNotFoundError
		if !errors.As(err, &nf) || err.Error() != tc.want {
			t.Errorf("Authz(%s/%s) = %v, want %s", tc.namespace, tc.pod, err, tc.want)
		}
		if _, err := TLS(in, Options{Namespace: tc.namespace, Pod: tc.pod}); !errors.As(err, &nf) {
			t.Errorf("TLS(%s/%s) = %v, want PodNotFoundError", tc.namespace, tc.pod, err)
		}
	}
}

// TestTLSRows pins the modes and deciders of ledger's ports.
func TestTLSRows(t *testing.T) {
	in := readInput(t, "testdata/tls.yaml")
	r, err := TLS(in, Options{Namespace: "pay", Pod: "ledger-0"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range r.Ports {
		got = append(got, p.Port+" "+p.Mode+" "+p.DecidedBy)
	}
	want := []string{
		"5353/UDP PERMISSIVE pay/default (namespace)",
		"7070/TCP PERMISSIVE pay/default (namespace)",
		"8080/TCP PERMISSIVE pay/default (namespace)",
		"8443/TCP DISABLE pay/ledger (workload), portLevelMtls",
		"9090/TCP PERMISSIVE pay/ledger (workload), portLevelMtls",
		"15020/TCP PERMISSIVE pay/default (namespace)",
		"* PERMISSIVE pay/default (namespace)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("ports:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if wantC := []string{"pay/ledger (workload): UNSET (inherits)", "pay/default (namespace): PERMISSIVE", "istio-system/default (mesh): STRICT"}; !slices.Equal(r.Considered, wantC) {
		t.Errorf("considered %q, want %q", r.Considered, wantC)
	}
}
