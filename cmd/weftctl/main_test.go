package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	istioscheme "istio.io/client-go/pkg/clientset/versioned/scheme"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"
)

// cluster is what the fake apiserver holds: the sample app's books and gw in the ambient
// namespace mesh, STRICT mesh-wide, and the ALLOW policy of test/e2e/policy_test.go.
const cluster = `apiVersion: v1
kind: Namespace
metadata: {name: mesh, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: v1
kind: Pod
metadata: {name: books-v1-abc, namespace: mesh, labels: {app: books, version: v1}}
spec:
  nodeName: node-1
  serviceAccountName: books
  containers: [{name: books, image: echo, ports: [{name: http, containerPort: 8080}]}]
status: {phase: Running, podIPs: [{ip: 198.18.1.10}], conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: gw-xyz, namespace: mesh, labels: {app: gw}}
spec:
  nodeName: node-2
  serviceAccountName: gw
  containers: [{name: gw, image: echo}]
status: {phase: Running, podIPs: [{ip: 198.18.2.10}], conditions: [{type: Ready, status: "True"}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: books-from-gw, namespace: mesh}
spec:
  selector: {matchLabels: {app: books}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/mesh/sa/gw"]}
`

// fakeClients returns clients of fake apiservers holding cluster; the context's namespace is
// contextNS.
func fakeClients(t *testing.T, contextNS string) *clients {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{scheme.AddToScheme, istioscheme.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	dec := serializer.NewCodecFactory(s).UniversalDeserializer()
	var kube, istio []runtime.Object
	for _, doc := range strings.Split(cluster, "\n---\n") {
		obj, _, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch obj.(type) {
		case *securityv1.PeerAuthentication, *securityv1.AuthorizationPolicy:
			istio = append(istio, obj)
		default:
			kube = append(kube, obj)
		}
	}
	return &clients{kube: kubefake.NewClientset(kube...), istio: istiofake.NewSimpleClientset(istio...),
		server: "https://fake:6443", namespace: contextNS}
}

// weftctl runs the command line args against c and returns its output and error.
func weftctl(c *clients, args ...string) (string, error) {
	cmd := newRootCommand(func(*flags) (*clients, error) { return c, nil })
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestAuthzCheck(t *testing.T) {
	out, err := weftctl(fakeClients(t, ""), "authz", "check", "books-v1-abc", "-n", "mesh")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Mesh:      enrolled: namespace mesh is labelled istio.io/dataplane-mode=ambient",
		"POLICY              ACTION  SCOPE               ENFORCED  RULES",
		"mesh/books-from-gw  ALLOW   selector app=books  yes       from principals cluster.local/ns/mesh/sa/gw",
		"Enforced ALLOW: mesh/books-from-gw; a connection that matches none of their rules is denied.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestNamespaceFromContext: without -n, the kubeconfig context's namespace is used.
func TestNamespaceFromContext(t *testing.T) {
	out, err := weftctl(fakeClients(t, "mesh"), "tls-check", "books-v1-abc")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"8080/TCP  http           STRICT  istio-system/default (mesh)",
		"*         (other ports)  STRICT  istio-system/default (mesh)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestJSON(t *testing.T) {
	out, err := weftctl(fakeClients(t, ""), "authz", "check", "books-v1-abc", "-n", "mesh", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Enrolled bool
		Policies []struct{ Policy, Action, Enforced string }
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if !r.Enrolled || len(r.Policies) != 1 || r.Policies[0].Policy != "mesh/books-from-gw" || r.Policies[0].Enforced != "yes" {
		t.Errorf("report = %+v", r)
	}
}

func TestPodNotFound(t *testing.T) {
	_, err := weftctl(fakeClients(t, ""), "authz", "check", "books-v1-abc")
	want := `pod "books-v1-abc" not found in namespace "default"; a pod of that name is in namespace mesh: add -n mesh`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

// TestCRDsAbsent: without the Istio CRDs the lists fail with NotFound; that means no
// policies, with a note.
func TestCRDsAbsent(t *testing.T) {
	c := fakeClients(t, "")
	fake := c.istio.(*istiofake.Clientset)
	for _, resource := range []string{"peerauthentications", "authorizationpolicies"} {
		fake.PrependReactor("list", resource, func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "security.istio.io", Resource: resource}, "")
		})
	}
	out, err := weftctl(c, "tls-check", "books-v1-abc", "-n", "mesh")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"*         (other ports)  PERMISSIVE  default (PERMISSIVE)",
		"PeerAuthentication (security.istio.io/v1) is not installed in the cluster: treated as none.",
		"AuthorizationPolicy (security.istio.io/v1) is not installed in the cluster: treated as none.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestClusterErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"unreachable", errors.New(`Get "https://fake:6443/api/v1/namespaces": dial tcp: connection refused`),
			"cannot reach the cluster at https://fake:6443: "},
		{"forbidden", apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "", fmt.Errorf("user cannot list")),
			"not allowed to list namespaces: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeClients(t, "")
			c.kube.(*kubefake.Clientset).PrependReactor("list", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, tc.err
			})
			_, err := weftctl(c, "authz", "check", "books-v1-abc", "-n", "mesh")
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err = %v, want prefix %q", err, tc.want)
			}
		})
	}
}

func TestBadOutput(t *testing.T) {
	if _, err := weftctl(fakeClients(t, ""), "tls-check", "x", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "table or json") {
		t.Errorf("err = %v", err)
	}
}

// TestKubeconfig goes through connectKubeconfig: no kubeconfig at all, and one whose
// apiserver does not answer (a closed port on loopback; nothing leaves the machine).
func TestKubeconfig(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	run := func(args ...string) error {
		cmd := newRootCommand(connectKubeconfig)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetArgs(args)
		return cmd.Execute()
	}
	if err := run("authz", "check", "x"); err == nil || !strings.Contains(err.Error(), "no kubeconfig found") {
		t.Errorf("without a kubeconfig: %v", err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: c, context: {cluster: c, user: u, namespace: mesh}}]
users: [{name: u, user: {token: t}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run("--kubeconfig", kc, "--request-timeout", "2s", "tls-check", "x")
	if err == nil || !strings.HasPrefix(err.Error(), "cannot reach the cluster at https://127.0.0.1:1: ") {
		t.Errorf("unreachable apiserver: %v", err)
	}
}
