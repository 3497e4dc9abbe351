package cluster

import (
	"context"
	"testing"
	"time"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestInputAndChanges(t *testing.T) {
	// istio.io/client-go's fake clientset cannot serve client-go's streaming list (WatchList);
	// a real apiserver can (the e2e tests run the controller against one).
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kube := fake.NewSimpleClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}},
	)
	istio := istiofake.NewSimpleClientset(&securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "shop"}})
	c, err := New(kube, istio)
	if err != nil {
		t.Fatal(err)
	}
	c.Start(ctx)
	if err := c.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	in, err := c.Input()
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Namespaces) != 1 || len(in.Pods) != 1 || len(in.PeerAuthentications) != 1 {
		t.Fatalf("Input: %d namespaces, %d pods, %d PeerAuthentications; want 1 each", len(in.Namespaces), len(in.Pods), len(in.PeerAuthentications))
	}
	if nodes, err := c.Nodes(); err != nil || len(nodes) != 1 || nodes[0] != "node-a" {
		t.Fatalf("Nodes = %v, %v", nodes, err)
	}
	drain(c)
	if _, err := kube.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Changed():
	case <-ctx.Done():
		t.Fatal("no change signalled for a new pod")
	}
}

// drain consumes the changes signalled by the initial listing.
func drain(c *Cluster) {
	for {
		select {
		case <-c.Changed():
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}
