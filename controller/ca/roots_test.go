package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/weftmesh/weft/api"
	cav1 "github.com/weftmesh/weft/api/ca/v1"
	"github.com/weftmesh/weft/controller/ca"
)

// issue has the CA sign a certificate for shop/books as the agent on node-a.
func issue(t testing.TB, c *ca.CA) []*x509.Certificate {
	t.Helper()
	resp, err := c.CreateCertificate(withToken(tokAgentA), &cav1.CreateCertificateRequest{
		Csr: csrFor(t, mustKey(t), "spiffe://cluster.local/ns/shop/sa/books"),
	})
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	return parseChain(t, resp.CertChain)
}

// publishedRoots returns the roots in the ConfigMap api.RootCertConfigMap.
func publishedRoots(t testing.TB, e *env) []*x509.Certificate {
	t.Helper()
	cm, err := e.cs.CoreV1().ConfigMaps(testNS).Get(context.Background(), api.RootCertConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("root ConfigMap: %v", err)
	}
	return mustParsePEM(t, cm.Data[api.RootCertKey])
}

func mustParsePEM(t testing.TB, s string) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	rest := []byte(s)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 || strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("bad PEM certificates %q", s)
	}
	return certs
}

func sameRoots(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func TestSelfSignedRoot(t *testing.T) {
	e := newBareEnv(t, testPods()...)
	var creates atomic.Int32
	e.cs.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		creates.Add(1)
		return false, nil, nil
	})
	// Replicas racing on an empty namespace share the winner's root.
	cas := make([]*ca.CA, 4)
	var wg sync.WaitGroup
	for i := range cas {
		wg.Go(func() { cas[i] = e.newCA(t, ca.Options{}) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	sec, err := e.cs.CoreV1().Secrets(testNS).Get(context.Background(), ca.SelfSignedSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the self-signed root's Secret: %v", err)
	}
	root := mustParsePEM(t, string(sec.Data[ca.KeyCACert]))[0]
	t.Logf("%d replicas tried to create the root's Secret", creates.Load())
	for i, c := range cas {
		if b := c.Bundle(); len(b) != 1 || !b[0].Equal(root) {
			t.Errorf("CA %d trusts another root than the Secret's", i)
		}
	}
	if k, ok := root.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("root key %T, want ECDSA P-256", root.PublicKey)
	}
	if life := root.NotAfter.Sub(root.NotBefore); life < 3649*24*time.Hour {
		t.Errorf("root valid for %s, want 10 years", life)
	}
	if !root.IsCA || root.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("root is not a CA")
	}
	if got := publishedRoots(t, e); !sameRoots(got, []*x509.Certificate{root}) {
		t.Errorf("ConfigMap holds %d roots, want the self-signed root", len(got))
	}

	// A later start (a restart) reuses the root.
	later := e.newCA(t, ca.Options{})
	if !later.Bundle()[0].Equal(root) {
		t.Error("a restarted CA made a new root")
	}
	chain := issue(t, later)
	if len(chain) != 2 || !chain[1].Equal(root) {
		t.Errorf("chain of %d certificates, want leaf and root", len(chain))
	}
	verifySVID(t, chain, cas[0].Bundle())
}

func TestPluginCA(t *testing.T) {
	root := newTestCA(t, "root", nil, 24*time.Hour*365)
	other := newTestCA(t, "other root", nil, 24*time.Hour*365)
	inter := newTestCA(t, "intermediate", root, 2*time.Hour)

	tests := []struct {
		name  string
		chain []*x509.Certificate // cert-chain.pem
	}{
		{"chain to the root", []*x509.Certificate{inter.cert, root.cert}},
		{"chain without the root", []*x509.Certificate{inter.cert}},
		{"chain without the CA certificate", []*x509.Certificate{root.cert}},
		{"no chain", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, ca.Options{}, append(testPods(), pluginSecret(t, inter, tt.chain, root.cert, other.cert))...)
			if got := e.ca.Bundle(); !sameRoots(got, []*x509.Certificate{root.cert, other.cert}) {
				t.Errorf("bundle of %d roots, want root-cert.pem", len(got))
			}
			if got := publishedRoots(t, e); !sameRoots(got, []*x509.Certificate{root.cert, other.cert}) {
				t.Errorf("ConfigMap holds %d roots, want root-cert.pem", len(got))
			}
			chain := issue(t, e.ca)
			if len(chain) != 3 || !chain[1].Equal(inter.cert) || !chain[2].Equal(root.cert) {
				t.Fatalf("chain of %d certificates, want leaf, intermediate, root", len(chain))
			}
			verifySVID(t, chain, e.ca.Bundle())
			if !chain[0].NotAfter.Equal(inter.cert.NotAfter) {
				t.Errorf("leaf expires %s, want the intermediate's expiry %s", chain[0].NotAfter, inter.cert.NotAfter)
			}
			if _, err := e.cs.CoreV1().Secrets(testNS).Get(context.Background(), ca.SelfSignedSecret, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("self-signed Secret with cacerts present: %v", err)
			}
			cert, err := e.ca.GetCertificate(nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(cert.Certificate) != 2 {
				t.Errorf("serving chain of %d certificates, want leaf and intermediate", len(cert.Certificate))
			}
		})
	}
}

func TestPluginCARejected(t *testing.T) {
	root := newTestCA(t, "root", nil, 24*time.Hour*365)
	other := newTestCA(t, "other root", nil, 24*time.Hour*365)
	inter := newTestCA(t, "intermediate", root, 24*time.Hour)
	expired := newTestCA(t, "expired", root, -time.Minute)

	tests := []struct {
		name   string
		mutate func(data map[string][]byte)
		msg    string
	}{
		{"key of another certificate", func(d map[string][]byte) { d[ca.KeyCAKey] = keyPEM(t, other.key) }, "does not match"},
		{"root not in root-cert.pem", func(d map[string][]byte) { d[ca.KeyRootCert] = certPEM(other.cert) }, "does not chain"},
		{"no key", func(d map[string][]byte) { delete(d, ca.KeyCAKey) }, "missing key ca-key.pem"},
		{"no roots", func(d map[string][]byte) { delete(d, ca.KeyRootCert) }, "missing key root-cert.pem"},
		{"garbage certificate", func(d map[string][]byte) { d[ca.KeyCACert] = []byte("junk") }, "ca-cert.pem"},
		{"expired", func(d map[string][]byte) {
			d[ca.KeyCACert], d[ca.KeyCAKey] = certPEM(expired.cert), keyPEM(t, expired.key)
		}, "valid only"},
		{"intermediate as root", func(d map[string][]byte) { d[ca.KeyRootCert] = certPEM(inter.cert) }, "not a self-signed CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sec := pluginSecret(t, inter, []*x509.Certificate{inter.cert, root.cert}, root.cert)
			tt.mutate(sec.Data)
			e := newBareEnv(t, sec)
			_, err := ca.New(context.Background(), e.options(t, ca.Options{}))
			if err == nil || !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), "cacerts") {
				t.Errorf("New: %v, want an error about cacerts containing %q", err, tt.msg)
			}
		})
	}
}

func TestRootRotation(t *testing.T) {
	root1 := newTestCA(t, "root 1", nil, 24*time.Hour*365)
	root2 := newTestCA(t, "root 2", nil, 24*time.Hour*365)
	inter1 := newTestCA(t, "intermediate 1", root1, 24*time.Hour*30)
	inter2 := newTestCA(t, "intermediate 2", root2, 24*time.Hour*30)
	e := newEnv(t, ca.Options{}, append(testPods(), pluginSecret(t, inter1, []*x509.Certificate{inter1.cert, root1.cert}, root1.cert))...)
	e.run(t, e.ca)
	old := issue(t, e.ca)
	secrets := e.cs.CoreV1().Secrets(testNS)

	// Step 1: the new intermediate signs, both roots are trusted.
	if _, err := secrets.Update(context.Background(), pluginSecret(t, inter2, []*x509.Certificate{inter2.cert, root2.cert}, root1.cert, root2.cert), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	both := []*x509.Certificate{root1.cert, root2.cert}
	waitFor(t, 5*time.Second, "the bundle with both roots", func() bool { return sameRoots(e.ca.Bundle(), both) })
	if got := publishedRoots(t, e); !sameRoots(got, both) {
		t.Errorf("ConfigMap holds %d roots, want both", len(got))
	}
	next := issue(t, e.ca)
	if !next[1].Equal(inter2.cert) {
		t.Errorf("issued by %q after the rotation, want intermediate 2", next[1].Subject)
	}
	verifySVID(t, next, e.ca.Bundle())
	verifySVID(t, old, e.ca.Bundle())
	if serving, _ := e.ca.GetCertificate(nil); serving.Leaf.CheckSignatureFrom(inter2.cert) != nil {
		t.Error("serving certificate not reissued by the new intermediate")
	}

	// Step 2: root 1 leaves root-cert.pem; leaves it signed stay valid, so it stays in the bundle.
	if _, err := secrets.Update(context.Background(), pluginSecret(t, inter2, []*x509.Certificate{inter2.cert, root2.cert}, root2.cert), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	retired := []*x509.Certificate{root2.cert, root1.cert}
	waitFor(t, 5*time.Second, "the bundle with root 2 and retired root 1", func() bool { return sameRoots(e.ca.Bundle(), retired) })
	if got := publishedRoots(t, e); !sameRoots(got, retired) {
		t.Errorf("ConfigMap holds %d roots, want root 2 and the retired root 1", len(got))
	}
	verifySVID(t, old, e.ca.Bundle())
	verifySVID(t, issue(t, e.ca), e.ca.Bundle())
}

func TestSwitchFromSelfSignedToPlugin(t *testing.T) {
	e := newEnv(t, ca.Options{MaxTTL: time.Hour, ServingTTL: time.Hour}, testPods()...)
	e.run(t, e.ca)
	selfRoot := e.ca.Bundle()[0]
	old := issue(t, e.ca)

	root := newTestCA(t, "root", nil, 24*time.Hour*365)
	inter := newTestCA(t, "intermediate", root, 24*time.Hour*30)
	if _, err := e.cs.CoreV1().Secrets(testNS).Create(context.Background(), pluginSecret(t, inter, []*x509.Certificate{inter.cert, root.cert}, root.cert), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []*x509.Certificate{root.cert, selfRoot}
	waitFor(t, 5*time.Second, "the plug-in root, with the self-signed one retired", func() bool { return sameRoots(e.ca.Bundle(), want) })
	verifySVID(t, old, e.ca.Bundle())
	if next := issue(t, e.ca); !next[1].Equal(inter.cert) {
		t.Errorf("issued by %q, want the plug-in intermediate", next[1].Subject)
	}
	if !strings.Contains(e.logs.String(), `msg="CA reloaded" component=ca source=cacerts`) {
		t.Errorf("no reload logged:\n%s", e.logs)
	}
}

func TestServingCertificate(t *testing.T) {
	e := newEnv(t, ca.Options{ServingDNSNames: []string{"weft-controller.weft-system.svc", "weft-controller.weft-system.svc.cluster.local"}}, testPods()...)
	cert, err := e.ca.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, r := range publishedRoots(t, e) {
		pool.AddCert(r)
	}
	for _, name := range []string{"weft-controller.weft-system.svc", "weft-controller.weft-system.svc.cluster.local"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("serving certificate for %s: %v", name, err)
		}
	}
	if life := cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore); life < 23*time.Hour || life > 25*time.Hour {
		t.Errorf("serving certificate valid for %s, want about 24 h", life)
	}
	if len(cert.Leaf.URIs) != 0 {
		t.Errorf("serving certificate has URI SANs %v", cert.Leaf.URIs)
	}
}

// TestServingCertificateRenewal checks that Run renews the serving certificate at half life.
func TestServingCertificateRenewal(t *testing.T) {
	e := newEnv(t, ca.Options{ServingTTL: 2 * time.Second}, testPods()...)
	first, _ := e.ca.GetCertificate(nil)
	e.run(t, e.ca)
	waitFor(t, 5*time.Second, "a renewed serving certificate", func() bool {
		c, _ := e.ca.GetCertificate(nil)
		return c.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0
	})
}
