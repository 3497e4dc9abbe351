package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/test/demo"
	"github.com/weftmesh/weft/test/harness"
	"github.com/weftmesh/weft/test/mesh"
)

// TestPrivilegedPolicy applies the PeerAuthentication and AuthorizationPolicy YAML an Istio
// user runs — STRICT mesh-wide with a PERMISSIVE workload override, an ALLOW by principal, a
// DENY by ipBlocks — and checks that it means what it means on Istio, enforced by the node
// agents: refused clients fail, allowed ones succeed, changes reach new connections within
// 2 s while an established connection finishes.
func TestPrivilegedPolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := startCluster(t, ctx)
	if err := c.Apply(ctx, demo.Namespace, demo.SampleManifest); err != nil {
		t.Fatal(err)
	}
	if err := mesh.SetAmbient(ctx, c, demo.Namespace, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dumpAgentLogs(t, c) })
	if err := mesh.Install(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"gw", "books-v1", "books-v2", "ratings-v1", "ratings-v2"} {
		if err := c.WaitDeploymentReady(ctx, demo.Namespace, d, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	plain := startPlainPod(t, ctx, c)
	pods, err := c.Client.CoreV1().Pods(demo.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byApp := map[string]corev1.Pod{}
	for _, p := range pods.Items {
		byApp[p.Labels["app"]] = p // one pod per app is enough
	}
	gw, books, ratings := byApp["gw"], byApp["books"], byApp["ratings"]
	url := func(p corev1.Pod, query string) string {
		return "http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/" + query
	}
	// ok reports how many of n new connections from src to url succeeded.
	ok := func(src corev1.Pod, u string, n int) int { return clientFrom(t, ctx, c, src, u, n).OK }

	t.Run("STRICT mesh-wide, PERMISSIVE workload override", func(t *testing.T) {
		apply(t, ctx, c, `apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ratings-permissive, namespace: mesh}
spec:
  selector: {matchLabels: {app: ratings}}
  mtls: {mode: PERMISSIVE}
`)
		waitUntil(t, ctx, "plaintext to books refused (STRICT)", func() bool { return ok(plain, url(books, ""), 1) == 0 })
		if n := ok(plain, url(ratings, ""), 3); n != 3 {
			t.Errorf("plaintext → ratings (PERMISSIVE override): %d of 3 ok", n)
		}
		if n := ok(gw, url(books, ""), 3); n != 3 {
			t.Errorf("mTLS gw → books: %d of 3 ok", n)
		}
	})

	t.Run("ALLOW only gw's principal to reach books", func(t *testing.T) {
		start := time.Now()
		apply(t, ctx, c, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: books-from-gw, namespace: mesh}
spec:
  selector: {matchLabels: {app: books}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/mesh/sa/gw"]}
`)
		waitUntil(t, ctx, "ratings → books refused", func() bool { return ok(ratings, url(books, ""), 1) == 0 })
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("the ALLOW policy took %v to reach new connections, want ≤ 2 s", took)
		} else {
			t.Logf("ALLOW policy in force for new connections after %v", took)
		}
		if n := ok(gw, url(books, ""), 5); n != 5 {
			t.Errorf("gw → books under the ALLOW policy: %d of 5 ok", n)
		}
		if n := ok(plain, url(books, ""), 2); n != 0 {
			t.Errorf("plaintext → books: %d of 2 ok, want refused", n)
		}
		m := agentMetrics(t, ctx, c.Node(books.Spec.NodeName))
		if mesh.CounterSum(m, "weft_nodeagent_authorization_decisions_total", `decision="deny"`, `policy="mesh/books-from-gw"`) == 0 {
			t.Errorf("no denial counted for mesh/books-from-gw; metrics:\n%s", strings.Join(mesh.MetricLines(m, "weft_nodeagent_authorization_decisions_total"), "\n"))
		}
		if mesh.CounterSum(m, "weft_nodeagent_authorization_decisions_total", `decision="allow"`, `policy="mesh/books-from-gw"`) == 0 {
			t.Error("no allow counted for mesh/books-from-gw")
		}
		assertLogged(t, ctx, c, books.Spec.NodeName, `"msg":"connection denied","policy":"mesh/books-from-gw"`)
	})

	t.Run("DENY by ipBlocks: new connections refused within 2 s, an established one finishes", func(t *testing.T) {
		// A request that holds its connection across the change.
		slow := make(chan int, 1)
		go func() { slow <- ok(gw, url(ratings, "?delay=3s"), 1) }()
		time.Sleep(500 * time.Millisecond)
		start := time.Now()
		apply(t, ctx, c, fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-deny-gw-ip, namespace: mesh}
spec:
  selector: {matchLabels: {app: ratings}}
  action: DENY
  rules:
  - from:
    - source: {ipBlocks: ["%s/32"]}
`, gw.Status.PodIP))
		waitUntil(t, ctx, "gw → ratings refused", func() bool { return ok(gw, url(ratings, ""), 1) == 0 })
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("the DENY policy took %v to reach new connections, want ≤ 2 s", took)
		} else {
			t.Logf("DENY policy in force for new connections after %v", took)
		}
		if n := <-slow; n != 1 {
			t.Error("the connection established before the DENY was cut; Istio applies policy to new connections")
		}
		if n := ok(books, url(ratings, ""), 3); n != 3 {
			t.Errorf("books → ratings (other source IP): %d of 3 ok", n)
		}
	})

	t.Run("policy status", func(t *testing.T) {
		waitUntil(t, ctx, "condition ZtunnelAccepted=True on mesh/books-from-gw", func() bool {
			b, err := c.Client.Discovery().RESTClient().Get().
				AbsPath("/apis/security.istio.io/v1/namespaces/mesh/authorizationpolicies/books-from-gw").DoRaw(ctx)
			s := strings.ReplaceAll(string(b), " ", "")
			return err == nil && strings.Contains(s, `"type":"ZtunnelAccepted"`) && strings.Contains(s, `"status":"True"`)
		})
	})
}

// apply applies a manifest as a user would with kubectl.
func apply(t *testing.T, ctx context.Context, c *harness.Cluster, manifest string) {
	t.Helper()
	if err := c.Apply(ctx, "default", []byte(manifest)); err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls cond every 100 ms for up to 10 s.
func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	err := harness.WaitFor(ctx, 10*time.Second, what, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatal(err)
	}
}

// assertLogged checks that the node agent of node logged a line containing want.
func assertLogged(t *testing.T, ctx context.Context, c *harness.Cluster, node, want string) {
	t.Helper()
	agents, err := c.Client.CoreV1().Pods("weft-system").List(ctx, metav1.ListOptions{LabelSelector: "app=weft-nodeagent", FieldSelector: "spec.nodeName=" + node})
	if err != nil || len(agents.Items) != 1 {
		t.Fatalf("agent of %s: %v", node, err)
	}
	log, err := c.ContainerLog(ctx, "weft-system", agents.Items[0].Name, "nodeagent")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), want) {
		t.Errorf("the agent of %s did not log %s", node, want)
	}
}
