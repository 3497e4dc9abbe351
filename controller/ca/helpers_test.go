package ca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/metadata"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/controller/ca"
)

const testNS = "weft-system"

var testTD = spiffeid.RequireTrustDomainFromString("cluster.local")

// Tokens the fake TokenReview knows.
const (
	tokAgentA       = "token-agent-node-a"   // the node agent, bound to its pod on node-a
	tokAgentNoNode  = "token-agent-no-node"  // the node agent, bound to its pod, no node-name extra
	tokAgentUnbound = "token-agent-unbound"  // the node agent, not bound to a pod
	tokWaypoint     = "token-waypoint"       // shop/waypoint
	tokWrongAud     = "token-wrong-audience" // authenticated, but for another audience
	tokBad          = "token-bad"            // not authenticated
	tokUser         = "token-user"           // a user, not a service account
	tokReviewError  = "token-review-error"   // the TokenReview call fails
)

// review is the fake TokenReview's answer for one token.
type review struct {
	status authnv1.TokenReviewStatus
	err    error
}

func agentUser(extra map[string]authnv1.ExtraValue) authnv1.UserInfo {
	return authnv1.UserInfo{Username: "system:serviceaccount:weft-system:weft-nodeagent", Extra: extra}
}

var reviews = map[string]review{
	tokAgentA: {status: authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{api.TokenAudience},
		User: agentUser(map[string]authnv1.ExtraValue{
			ca.ExtraPodName: {"agent-a"}, ca.ExtraPodUID: {"uid-agent-a"}, ca.ExtraNodeName: {"node-a"},
		})}},
	tokAgentNoNode: {status: authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{api.TokenAudience},
		User: agentUser(map[string]authnv1.ExtraValue{ca.ExtraPodName: {"agent-a"}, ca.ExtraPodUID: {"uid-agent-a"}})}},
	tokAgentUnbound: {status: authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{api.TokenAudience},
		User: agentUser(nil)}},
	tokWaypoint: {status: authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{api.TokenAudience},
		User: authnv1.UserInfo{Username: "system:serviceaccount:shop:waypoint"}}},
	tokWrongAud: {status: authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"https://kubernetes.default.svc"},
		User: agentUser(map[string]authnv1.ExtraValue{ca.ExtraNodeName: {"node-a"}})}},
	tokBad:         {status: authnv1.TokenReviewStatus{Error: "invalid bearer token"}},
	tokUser:        {status: authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{api.TokenAudience}, User: authnv1.UserInfo{Username: "alice"}}},
	tokReviewError: {err: errors.New("connection refused")},
}

// env is a CA over a fake clientset.
type env struct {
	cs      *fake.Clientset
	ca      *ca.CA
	logs    *syncBuffer
	reviews atomic.Int32 // TokenReviews made
	watches atomic.Int32 // Secret watches started
}

// testPods are the pods of the authorization tests.
func testPods() []runtime.Object {
	past := metav1.NewTime(time.Now().Add(-time.Minute))
	future := metav1.NewTime(time.Now().Add(time.Hour))
	return []runtime.Object{
		pod("weft-system", "agent-a", "weft-nodeagent", "node-a", "uid-agent-a", nil),
		pod("shop", "books-a", "books", "node-a", "", nil),
		pod("shop", "reviews-b", "reviews", "node-b", "", nil),
		withPhase(pod("shop", "batch-a", "batch", "node-a", "", nil), corev1.PodSucceeded),
		withPhase(pod("shop", "crashed-a", "crashed", "node-a", "", nil), corev1.PodFailed),
		pod("shop", "gone-a", "gone", "node-a", "", &past),
		pod("shop", "leaving-a", "leaving", "node-a", "", &future),
		pod("shop", "pending", "pending", "", "", nil),
		pod("shop", "default-a", "", "node-a", "", nil),
	}
}

func pod(ns, name, sa, node, uid string, deleted *metav1.Time) *corev1.Pod {
	if uid == "" {
		uid = "uid-" + name
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), DeletionTimestamp: deleted},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "x"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func withPhase(p *corev1.Pod, phase corev1.PodPhase) *corev1.Pod {
	p.Status.Phase = phase
	return p
}

// newFakeClient returns a fake clientset holding objs whose TokenReviews answer from reviews.
func newFakeClient(e *env, objs ...runtime.Object) *fake.Clientset {
	cs := fake.NewClientset(objs...)
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		e.reviews.Add(1)
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		if len(tr.Spec.Audiences) != 1 || tr.Spec.Audiences[0] != api.TokenAudience {
			return true, nil, errors.New("TokenReview without the CA's audience")
		}
		r, ok := reviews[tr.Spec.Token]
		if !ok {
			r = review{status: authnv1.TokenReviewStatus{Error: "unknown token"}}
		}
		if r.err != nil {
			return true, nil, r.err
		}
		tr.Status = r.status
		return true, tr, nil
	})
	cs.PrependWatchReactor("secrets", func(k8stesting.Action) (bool, watch.Interface, error) {
		e.watches.Add(1)
		return false, nil, nil
	})
	return cs
}

// newEnv starts a CA over a fake clientset with objs; it stops with the test.
func newEnv(t testing.TB, opts ca.Options, objs ...runtime.Object) *env {
	t.Helper()
	e := newBareEnv(t, objs...)
	if e.ca = e.newCA(t, opts); e.ca == nil {
		t.FailNow()
	}
	return e
}

// newBareEnv is newEnv without a CA.
func newBareEnv(t testing.TB, objs ...runtime.Object) *env {
	t.Helper()
	e := &env{logs: &syncBuffer{}}
	e.cs = newFakeClient(e, objs...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("CA logs:\n%s", e.logs)
		}
	})
	return e
}

// options completes opts for a CA over e's clientset, with a running pod informer.
func (e *env) options(t testing.TB, opts ca.Options) ca.Options {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := informers.NewSharedInformerFactory(e.cs, 0)
	t.Cleanup(func() {
		cancel()
		f.Shutdown()
	})
	pods, err := ca.NewInformerPods(f.Core().V1().Pods().Informer())
	if err != nil {
		t.Error(err)
		return opts
	}
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	opts.Client = e.cs
	opts.Namespace = testNS
	opts.Pods = pods
	if len(opts.ServingDNSNames) == 0 {
		opts.ServingDNSNames = []string{"weft-controller.weft-system.svc"}
	}
	opts.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return opts
}

// newCA starts another CA over e's clientset. It may be called from several goroutines.
func (e *env) newCA(t testing.TB, opts ca.Options) *ca.CA {
	t.Helper()
	c, err := ca.New(context.Background(), e.options(t, opts))
	if err != nil {
		t.Errorf("ca.New: %v", err)
		return nil
	}
	return c
}

// run runs c.Run until the test ends and waits until the CA watches its two Secrets.
func (e *env) run(t testing.TB, c *ca.CA) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	before := e.watches.Load()
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, 5*time.Second, "the CA to watch its Secrets", func() bool { return e.watches.Load() >= before+2 })
}

func withToken(token string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// csrFor returns a DER CSR signed by key with the given URI SANs.
func csrFor(t testing.TB, key crypto.Signer, uris ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		p, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, p)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func parseChain(t testing.TB, ders [][]byte) []*x509.Certificate {
	t.Helper()
	chain := make([]*x509.Certificate, len(ders))
	for i, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			t.Fatal(err)
		}
		chain[i] = c
	}
	return chain
}

// verifySVID checks chain against roots and returns its SPIFFE ID.
func verifySVID(t testing.TB, chain, roots []*x509.Certificate) spiffeid.ID {
	t.Helper()
	id, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(testTD, roots))
	if err != nil {
		t.Fatalf("SVID does not verify against the bundle: %v", err)
	}
	return id
}

// testCA is a CA certificate and key made by a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newTestCA makes a CA certificate signed by parent (self-signed when parent is nil).
func newTestCA(t testing.TB, name string, parent *testCA, ttl time.Duration) *testCA {
	t.Helper()
	key := mustKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	signCert, signKey := tmpl, key
	if parent != nil {
		signCert, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signCert, key.Public(), signKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func certPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func keyPEM(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// pluginSecret is a cacerts Secret: inter signs, chain leads to roots[0].
func pluginSecret(t testing.TB, inter *testCA, chain []*x509.Certificate, roots ...*x509.Certificate) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: ca.PluginSecret},
		Data: map[string][]byte{
			ca.KeyCACert:    certPEM(inter.cert),
			ca.KeyCAKey:     keyPEM(t, inter.key),
			ca.KeyCertChain: certPEM(chain...),
			ca.KeyRootCert:  certPEM(roots...),
		},
	}
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, for logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
