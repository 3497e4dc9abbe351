package ca_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/ca"
)

// retiredEntry is an entry of ca.KeyRetiredRoots.
type retiredEntry struct {
	KeepUntil   time.Time `json:"keepUntil"`
	Certificate string    `json:"certificate"`
}

// fakeClock is a settable clock for the retirement of roots.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// storedRetired returns the entries of the Secret ca.RetiredRootsSecret.
func storedRetired(t testing.TB, e *env) []retiredEntry {
	t.Helper()
	sec, err := e.cs.CoreV1().Secrets(testNS).Get(context.Background(), ca.RetiredRootsSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Secret %s: %v", ca.RetiredRootsSecret, err)
	}
	var entries []retiredEntry
	if err := json.Unmarshal(sec.Data[ca.KeyRetiredRoots], &entries); err != nil {
		t.Fatalf("%s: %v", ca.KeyRetiredRoots, err)
	}
	return entries
}

func entryCert(t testing.TB, en retiredEntry) *x509.Certificate {
	t.Helper()
	return mustParsePEM(t, en.Certificate)[0]
}

func retiredSecret(t testing.TB, entries ...retiredEntry) *corev1.Secret {
	t.Helper()
	b, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: ca.RetiredRootsSecret},
		Data:       map[string][]byte{ca.KeyRetiredRoots: b},
	}
}

func rotate(t testing.TB, e *env, inter *testCA, chain []*x509.Certificate, roots ...*x509.Certificate) {
	t.Helper()
	if _, err := e.cs.CoreV1().Secrets(testNS).Update(context.Background(), pluginSecret(t, inter, chain, roots...), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestRetiredRootsSurviveRestart checks that a root retired by one CA is still published by a
// new CA (a restart) until its keep-until time, and dropped then.
func TestRetiredRootsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	root1 := newTestCA(t, "root 1", nil, 24*time.Hour*365)
	root2 := newTestCA(t, "root 2", nil, 24*time.Hour*365)
	inter1 := newTestCA(t, "intermediate 1", root1, 24*time.Hour*30)
	inter2 := newTestCA(t, "intermediate 2", root2, 24*time.Hour*30)
	clock := newFakeClock()
	opts := ca.Options{MaxTTL: time.Hour, ServingTTL: time.Hour}
	ca.SetClock(&opts, clock.Now)
	e := newBareEnv(t, append(testPods(), pluginSecret(t, inter1, []*x509.Certificate{inter1.cert, root1.cert}, root1.cert))...)
	first := e.newCA(t, opts)
	if first == nil {
		t.FailNow()
	}
	if got := storedRetired(t, e); len(got) != 0 {
		t.Fatalf("%d retired roots stored before any rotation", len(got))
	}
	old := issue(t, first)

	rotate(t, e, inter2, []*x509.Certificate{inter2.cert, root2.cert}, root2.cert)
	retiredAt := clock.Now()
	if err := first.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	want := []*x509.Certificate{root2.cert, root1.cert}
	if !sameRoots(first.Bundle(), want) {
		t.Fatalf("bundle of %d roots after the rotation, want root 2 and the retired root 1", len(first.Bundle()))
	}
	stored := storedRetired(t, e)
	if len(stored) != 1 || !entryCert(t, stored[0]).Equal(root1.cert) {
		t.Fatalf("stored retired roots %v, want root 1", stored)
	}
	until := stored[0].KeepUntil
	if lo, hi := retiredAt.Add(time.Hour+time.Minute), retiredAt.Add(time.Hour+time.Minute+time.Second); until.Before(lo) || until.After(hi) {
		t.Errorf("root 1 kept until %s, want MaxTTL and a minute after the rotation, %s", until, lo)
	}

	// A restart: the new CA never signed with root 1, yet publishes it.
	second := e.newCA(t, opts)
	if second == nil {
		t.FailNow()
	}
	if !sameRoots(second.Bundle(), want) {
		t.Fatalf("restarted CA: bundle of %d roots, want root 2 and the retired root 1", len(second.Bundle()))
	}
	if got := publishedRoots(t, e); !sameRoots(got, want) {
		t.Errorf("ConfigMap holds %d roots after the restart, want root 2 and the retired root 1", len(got))
	}
	verifySVID(t, old, second.Bundle())

	clock.Set(until.Add(-time.Second))
	if err := second.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if !sameRoots(second.Bundle(), want) || !sameRoots(publishedRoots(t, e), want) {
		t.Error("root 1 dropped before its keep-until time")
	}

	clock.Set(until)
	if err := second.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	only := []*x509.Certificate{root2.cert}
	if !sameRoots(second.Bundle(), only) {
		t.Errorf("bundle of %d roots at the keep-until time, want root 2", len(second.Bundle()))
	}
	if got := publishedRoots(t, e); !sameRoots(got, only) {
		t.Errorf("ConfigMap holds %d roots at the keep-until time, want root 2", len(got))
	}
	if got := storedRetired(t, e); len(got) != 0 {
		t.Errorf("%d retired roots still stored after their keep-until time", len(got))
	}
	if third := e.newCA(t, opts); third != nil && !sameRoots(third.Bundle(), only) {
		t.Errorf("CA started after the keep-until time: bundle of %d roots, want root 2", len(third.Bundle()))
	}
	if !strings.Contains(e.logs.String(), "dropped a retired root") {
		t.Errorf("dropping root 1 not logged:\n%s", e.logs)
	}
}

// TestRootsRetiredWhileDown checks that a root that left the trust set while no CA ran is
// retired at the next start: from the recorded trust set, or, on the first start with the
// Secret of retired roots, from the published ConfigMap.
func TestRootsRetiredWhileDown(t *testing.T) {
	root1 := newTestCA(t, "root 1", nil, 24*time.Hour*365)
	root2 := newTestCA(t, "root 2", nil, 24*time.Hour*365)
	inter1 := newTestCA(t, "intermediate 1", root1, 24*time.Hour*30)
	inter2 := newTestCA(t, "intermediate 2", root2, 24*time.Hour*30)
	want := []*x509.Certificate{root2.cert, root1.cert}

	t.Run("recorded trust set", func(t *testing.T) {
		e := newBareEnv(t, append(testPods(), pluginSecret(t, inter1, []*x509.Certificate{inter1.cert, root1.cert}, root1.cert))...)
		if e.newCA(t, ca.Options{}) == nil {
			t.FailNow()
		}
		rotate(t, e, inter2, []*x509.Certificate{inter2.cert, root2.cert}, root2.cert)
		if c := e.newCA(t, ca.Options{}); c == nil || !sameRoots(c.Bundle(), want) {
			t.Error("the root that left the trust set while down is not in the bundle")
		}
		if got := publishedRoots(t, e); !sameRoots(got, want) {
			t.Errorf("ConfigMap holds %d roots, want root 2 and the retired root 1", len(got))
		}
	})
	t.Run("published ConfigMap", func(t *testing.T) {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: api.RootCertConfigMap},
			Data:       map[string]string{api.RootCertKey: string(certPEM(root1.cert))},
		}
		e := newBareEnv(t, append(testPods(), cm, pluginSecret(t, inter2, []*x509.Certificate{inter2.cert, root2.cert}, root2.cert))...)
		if c := e.newCA(t, ca.Options{}); c == nil || !sameRoots(c.Bundle(), want) {
			t.Error("the root of the published bundle is not retired")
		}
		if stored := storedRetired(t, e); len(stored) != 1 || !entryCert(t, stored[0]).Equal(root1.cert) {
			t.Errorf("stored retired roots %v, want root 1", stored)
		}
	})
}

// TestRetiredRootsPruned checks that a CA publishes the stored retired roots still needed,
// once each, and drops the expired and unreadable entries from the Secret.
func TestRetiredRootsPruned(t *testing.T) {
	root := newTestCA(t, "root", nil, 24*time.Hour*365)
	inter := newTestCA(t, "intermediate", root, 24*time.Hour*30)
	expired := newTestCA(t, "expired retired root", nil, 24*time.Hour*365)
	kept := newTestCA(t, "kept retired root", nil, 24*time.Hour*365)
	now := time.Now().Truncate(time.Second)
	sec := retiredSecret(t,
		retiredEntry{KeepUntil: now.Add(-time.Second), Certificate: string(certPEM(expired.cert))},
		retiredEntry{KeepUntil: now.Add(time.Hour), Certificate: string(certPEM(kept.cert))},
		retiredEntry{KeepUntil: now.Add(time.Hour), Certificate: "junk"},
		retiredEntry{KeepUntil: now.Add(time.Hour), Certificate: string(certPEM(root.cert))}, // back in the trust set
	)
	e := newEnv(t, ca.Options{}, append(testPods(), sec, pluginSecret(t, inter, []*x509.Certificate{inter.cert, root.cert}, root.cert))...)
	want := []*x509.Certificate{root.cert, kept.cert}
	if !sameRoots(e.ca.Bundle(), want) {
		t.Errorf("bundle of %d roots, want the root and the retired root still needed", len(e.ca.Bundle()))
	}
	if got := publishedRoots(t, e); !sameRoots(got, want) {
		t.Errorf("ConfigMap holds %d roots, want the root and the retired root still needed", len(got))
	}
	stored := storedRetired(t, e)
	if len(stored) != 2 || !entryCert(t, stored[0]).Equal(kept.cert) || !stored[0].KeepUntil.Equal(now.Add(time.Hour)) ||
		!entryCert(t, stored[1]).Equal(root.cert) {
		t.Errorf("stored retired roots %v, want the kept root (and the one back in the trust set) only", stored)
	}
	if !strings.Contains(e.logs.String(), "ignoring an unreadable retired root") {
		t.Errorf("unreadable entry not logged:\n%s", e.logs)
	}

	// A Secret that is not JSON does not stop the CA; it is rewritten.
	if _, err := e.cs.CoreV1().Secrets(testNS).Update(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: ca.RetiredRootsSecret},
		Data:       map[string][]byte{ca.KeyRetiredRoots: []byte("{junk")},
	}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.ca.Reload(context.Background()); err != nil {
		t.Fatalf("Reload with an unreadable Secret: %v", err)
	}
	if got := storedRetired(t, e); len(got) != 0 {
		t.Errorf("%d retired roots stored after rewriting an unreadable Secret", len(got))
	}
}

var secretsGVR = corev1.SchemeGroupVersion.WithResource("secrets")

// withResourceVersions makes the fake clientset set and check the resourceVersion of the Secret
// name, as the apiserver does. before runs before each update is checked. It returns the count
// of conflicts.
func withResourceVersions(e *env, name string, before func()) *atomic.Int32 {
	var rv atomic.Int64
	var conflicts atomic.Int32
	tracker := e.cs.Tracker()
	e.cs.PrependReactor("create", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sec := a.(k8stesting.CreateAction).GetObject().(*corev1.Secret)
		if sec.Name != name {
			return false, nil, nil
		}
		sec = sec.DeepCopy()
		sec.ResourceVersion = strconv.FormatInt(rv.Add(1), 10)
		if err := tracker.Create(secretsGVR, sec, sec.Namespace); err != nil {
			return true, nil, err
		}
		return true, sec, nil
	})
	e.cs.PrependReactor("update", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sec := a.(k8stesting.UpdateAction).GetObject().(*corev1.Secret)
		if sec.Name != name {
			return false, nil, nil
		}
		if before != nil {
			before()
		}
		cur, err := tracker.Get(secretsGVR, sec.Namespace, sec.Name)
		if err != nil {
			return true, nil, err
		}
		if cur.(*corev1.Secret).ResourceVersion != sec.ResourceVersion {
			conflicts.Add(1)
			return true, nil, apierrors.NewConflict(corev1.Resource("secrets"), name, nil)
		}
		sec = sec.DeepCopy()
		sec.ResourceVersion = strconv.FormatInt(rv.Add(1), 10)
		if err := tracker.Update(secretsGVR, sec, sec.Namespace); err != nil {
			return true, nil, err
		}
		return true, sec, nil
	})
	return &conflicts
}

// TestRetiredRootsReplicasConverge checks that replicas racing to retire roots merge their
// records and publish the same bundle.
func TestRetiredRootsReplicasConverge(t *testing.T) {
	root1 := newTestCA(t, "root 1", nil, 24*time.Hour*365)
	root2 := newTestCA(t, "root 2", nil, 24*time.Hour*365)
	other := newTestCA(t, "root retired by another replica", nil, 24*time.Hour*365)
	inter1 := newTestCA(t, "intermediate 1", root1, 24*time.Hour*30)
	inter2 := newTestCA(t, "intermediate 2", root2, 24*time.Hour*30)
	e := newBareEnv(t, append(testPods(), pluginSecret(t, inter1, []*x509.Certificate{inter1.cert, root1.cert}, root1.cert))...)

	// The first update after the rotation loses a race with another replica, which records
	// another retired root between its read and its write.
	var rotated, injected atomic.Bool
	tracker := e.cs.Tracker()
	conflicts := withResourceVersions(e, ca.RetiredRootsSecret, func() {
		if !rotated.Load() || injected.Swap(true) {
			return
		}
		o, err := tracker.Get(secretsGVR, testNS, ca.RetiredRootsSecret)
		if err != nil {
			t.Error(err)
			return
		}
		sec := o.(*corev1.Secret).DeepCopy()
		var entries []retiredEntry
		if err := json.Unmarshal(sec.Data[ca.KeyRetiredRoots], &entries); err != nil {
			t.Error(err)
		}
		entries = append(entries, retiredEntry{KeepUntil: time.Now().Add(time.Hour).Truncate(time.Second), Certificate: string(certPEM(other.cert))})
		sec.Data[ca.KeyRetiredRoots], _ = json.Marshal(entries)
		sec.ResourceVersion += "-other"
		if err := tracker.Update(secretsGVR, sec, testNS); err != nil {
			t.Error(err)
		}
	})

	// Replicas racing on an empty namespace.
	cas := make([]*ca.CA, 3)
	var wg sync.WaitGroup
	for i := range cas {
		wg.Go(func() { cas[i] = e.newCA(t, ca.Options{}) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, c := range cas {
		e.run(t, c)
	}

	rotated.Store(true)
	rotate(t, e, inter2, []*x509.Certificate{inter2.cert, root2.cert}, root2.cert)
	has := func(roots []*x509.Certificate) bool {
		return len(roots) == 3 && roots[0].Equal(root2.cert) &&
			(sameRoots([]*x509.Certificate{root1.cert, other.cert}, roots[1:]) || sameRoots([]*x509.Certificate{other.cert, root1.cert}, roots[1:]))
	}
	waitFor(t, 10*time.Second, "every replica to publish root 2, the retired root 1 and the other replica's root", func() bool {
		for _, c := range cas {
			if !has(c.Bundle()) {
				return false
			}
		}
		return true
	})
	if !injected.Load() || conflicts.Load() == 0 {
		t.Fatalf("no conflicting update (injected %v, %d conflicts): the test did not race", injected.Load(), conflicts.Load())
	}
	t.Logf("%d conflicts", conflicts.Load())
	// Same bundle everywhere, also in the ConfigMap, once each replica has settled.
	waitFor(t, 10*time.Second, "the same bundle on every replica and in the ConfigMap", func() bool {
		want := publishedRoots(t, e)
		for _, c := range cas {
			if !sameRoots(c.Bundle(), want) {
				return false
			}
		}
		return has(want)
	})
	stored := storedRetired(t, e)
	if len(stored) != 2 {
		t.Errorf("%d retired roots stored, want root 1 and the other replica's root", len(stored))
	}
}
