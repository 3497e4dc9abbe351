package status

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	metav1alpha1 "istio.io/api/meta/v1alpha1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/weftmesh/weft/controller/translate"
)

func policy(name string, generation int64, conds ...*metav1alpha1.IstioCondition) *securityv1.AuthorizationPolicy {
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Generation: generation}}
	ap.Status.Conditions = conds
	return ap
}

// statusWrites counts UpdateStatus calls on the fake and can fail the first n of them.
func statusWrites(client *istiofake.Clientset, failFirst int32) *atomic.Int32 {
	var n atomic.Int32
	client.PrependReactor("update", "authorizationpolicies", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" {
			return false, nil, nil
		}
		if n.Add(1) <= failFirst {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "security.istio.io", Resource: "authorizationpolicies"}, "x", fmt.Errorf("changed"))
		}
		return false, nil, nil
	})
	return &n
}

func get(t *testing.T, client *istiofake.Clientset, name string) *securityv1.AuthorizationPolicy {
	t.Helper()
	ap, err := client.SecurityV1().AuthorizationPolicies("shop").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func condition(ap *securityv1.AuthorizationPolicy, typ string) *metav1alpha1.IstioCondition {
	for _, c := range ap.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return nil
}

func TestWriter(t *testing.T) {
	foreign := &metav1alpha1.IstioCondition{Type: "Reconciled", Status: "True", Reason: "ByOthers"}
	stale := &metav1alpha1.IstioCondition{Type: translate.ConditionWaypointAccepted, Status: "False", Reason: "TargetNotFound"}
	client := istiofake.NewSimpleClientset(policy("books", 3, foreign, stale), policy("web", 1))
	writes := statusWrites(client, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := New(Options{Client: client, Interval: 10 * time.Millisecond})
	go w.Run(ctx)

	accepted := translate.PolicyCondition{Type: translate.ConditionZtunnelAccepted, Status: true, Reason: translate.ReasonAccepted, Message: "attached to ztunnel", ObservedGeneration: 3}
	partial := translate.PolicyCondition{Type: translate.ConditionZtunnelAccepted, Status: true, Reason: translate.ReasonUnsupportedValue, Message: "ztunnel does not support HTTP attributes", ObservedGeneration: 1}
	w.Update(map[string]translate.PolicyCondition{"shop/books": accepted, "shop/web": partial, "shop/gone": accepted})
	waitFor(t, "both policies written", func() bool { return writes.Load() >= 2 })

	books := get(t, client, "books")
	c := condition(books, translate.ConditionZtunnelAccepted)
	if c == nil || c.Status != "True" || c.Reason != "Accepted" || c.Message != "attached to ztunnel" || c.ObservedGeneration != 3 || c.LastTransitionTime == nil {
		t.Fatalf("ZtunnelAccepted = %v", c)
	}
	if condition(books, translate.ConditionWaypointAccepted) != nil {
		t.Errorf("the stale WaypointAccepted condition was kept: %v", books.Status.Conditions)
	}
	if condition(books, "Reconciled") == nil {
		t.Errorf("another controller's condition was dropped: %v", books.Status.Conditions)
	}
	if c := condition(get(t, client, "web"), translate.ConditionZtunnelAccepted); c == nil || c.Reason != translate.ReasonUnsupportedValue {
		t.Fatalf("web: ZtunnelAccepted = %v", c)
	}

	// The same conditions again: nothing to write.
	before := writes.Load()
	w.Update(map[string]translate.PolicyCondition{"shop/books": accepted, "shop/web": partial})
	time.Sleep(100 * time.Millisecond)
	if got := writes.Load(); got != before {
		t.Errorf("%d writes for unchanged conditions", got-before)
	}

	// A burst of updates coalesces; the last one wins, and the transition time stays while the
	// status (True) does.
	transition := condition(get(t, client, "web"), translate.ConditionZtunnelAccepted).LastTransitionTime.AsTime()
	before = writes.Load()
	for i := range 50 {
		partial.Message = fmt.Sprintf("message %d", i)
		w.Update(map[string]translate.PolicyCondition{"shop/books": accepted, "shop/web": partial})
	}
	waitFor(t, "the last message", func() bool {
		c := condition(get(t, client, "web"), translate.ConditionZtunnelAccepted)
		return c != nil && c.Message == "message 49"
	})
	time.Sleep(50 * time.Millisecond)
	if got := writes.Load() - before; got > 5 {
		t.Errorf("%d writes for a burst of 50 updates; want them coalesced", got)
	}
	if c := condition(get(t, client, "web"), translate.ConditionZtunnelAccepted); !c.LastTransitionTime.AsTime().Equal(transition) {
		t.Errorf("transition time changed from %v to %v though the status stayed True", transition, c.LastTransitionTime.AsTime())
	}

	// A status change (True → False) moves the transition time.
	w.Update(map[string]translate.PolicyCondition{"shop/books": accepted, "shop/web": {Type: translate.ConditionZtunnelAccepted, Reason: translate.ReasonUnsupportedValue, Message: "CUSTOM", ObservedGeneration: 1}})
	waitFor(t, "web turning False", func() bool {
		c := condition(get(t, client, "web"), translate.ConditionZtunnelAccepted)
		return c.Status == "False" && !c.LastTransitionTime.AsTime().Equal(transition)
	})
}

func TestWriterRetriesAndNeverBlocks(t *testing.T) {
	client := istiofake.NewSimpleClientset(policy("books", 2))
	writes := statusWrites(client, 2) // two conflicts, then success
	w := New(Options{Client: client, Interval: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	// Update does not block, whether or not Run is running.
	done := make(chan struct{})
	go func() {
		for range 1000 {
			w.Update(map[string]translate.PolicyCondition{"shop/books": {Type: translate.ConditionZtunnelAccepted, Reason: translate.ReasonInvalid, Message: "bad", ObservedGeneration: 2}})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Update blocked")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	waitFor(t, "the write after two conflicts", func() bool {
		c := condition(get(t, client, "books"), translate.ConditionZtunnelAccepted)
		return c != nil && c.Status == "False" && c.Reason == translate.ReasonInvalid && c.ObservedGeneration == 2
	})
	if n := writes.Load(); n != 3 {
		t.Errorf("%d status writes, want 3 (two conflicts, one success)", n)
	}
}
