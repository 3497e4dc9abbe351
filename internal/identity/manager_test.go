package identity_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/weftmesh/weft/internal/identity"
)

// testCA wraps a CAClient to count, capture, delay and fail signing requests.
type testCA struct {
	identity.CAClient
	fail  atomic.Bool
	signs atomic.Int32
	gate  chan struct{} // when non-nil, Sign waits until it is closed

	mu   sync.Mutex
	csrs [][]byte
}

func (c *testCA) Sign(ctx context.Context, csr []byte, ttl time.Duration) ([]*x509.Certificate, error) {
	c.signs.Add(1)
	c.mu.Lock()
	c.csrs = append(c.csrs, csr)
	c.mu.Unlock()
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if c.fail.Load() {
		return nil, errors.New("CA unavailable")
	}
	return c.CAClient.Sign(ctx, csr, ttl)
}

func newManager(t testing.TB, ca identity.CAClient, opts identity.Options) *identity.Manager {
	t.Helper()
	opts.TrustDomain = testTD
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 20 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 200 * time.Millisecond
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	m, err := identity.NewManager(ca, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

var books = spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/books")

func TestManagerCSR(t *testing.T) {
	inner, root := newFileCA(t, testTD)
	ca := &testCA{CAClient: inner}
	m := newManager(t, ca, identity.Options{})
	svid, err := m.Get(t.Context(), books)
	if err != nil {
		t.Fatal(err)
	}
	ca.mu.Lock()
	csrDER := ca.csrs[0]
	ca.mu.Unlock()
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Errorf("CSR signature: %v", err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != books.String() {
		t.Errorf("CSR URIs = %v, want exactly [%v]", csr.URIs, books)
	}
	if len(csr.DNSNames)+len(csr.EmailAddresses)+len(csr.IPAddresses) != 0 || csr.Subject.String() != "" {
		t.Errorf("CSR carries more than the URI SAN: subject %q, DNS %v, email %v, IP %v",
			csr.Subject, csr.DNSNames, csr.EmailAddresses, csr.IPAddresses)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CSR key %T, want ECDSA P-256", csr.PublicKey)
	}
	if csr.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("CSR signature algorithm %v, want ECDSA-SHA256", csr.SignatureAlgorithm)
	}

	if svid.ID != books {
		t.Errorf("SVID ID %v, want %v", svid.ID, books)
	}
	if !svid.Certificates[0].PublicKey.(*ecdsa.PublicKey).Equal(pub) {
		t.Error("SVID leaf does not carry the CSR's key")
	}
	if len(svid.Certificates) != 1 {
		t.Errorf("SVID has %d certificates, want the leaf only (the root is in the bundle)", len(svid.Certificates))
	}
	if _, _, err := x509svid.Verify(svid.Certificates, m.Bundle()); err != nil {
		t.Errorf("SVID does not verify against the manager's bundle: %v", err)
	}
	b, err := m.Bundle().GetX509BundleForTrustDomain(testTD)
	if err != nil || !b.HasX509Authority(root) {
		t.Errorf("bundle = %v, %v; want the root", b, err)
	}
	if _, err := m.Bundle().GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("other.org")); err == nil {
		t.Error("bundle answered for another trust domain")
	}
}

func TestManagerRejects(t *testing.T) {
	inner, _ := newFileCA(t, testTD)
	m := newManager(t, inner, identity.Options{})
	for _, id := range []string{
		"spiffe://other.org/ns/shop/sa/books",
		"spiffe://cluster.local/ns/shop/sa/books/x",
		"spiffe://cluster.local/workload",
	} {
		if _, err := m.Get(t.Context(), spiffeid.RequireFromString(id)); err == nil {
			t.Errorf("Get(%s) succeeded", id)
		}
	}

	// A CA that answers with a certificate for another identity is not believed.
	liar := &lyingCA{CAClient: inner, as: spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/admin")}
	m2 := newManager(t, liar, identity.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if svid, err := m2.Get(ctx, books); err == nil {
		t.Errorf("Get accepted a certificate for %v", svid.ID)
	}
}

// lyingCA signs a CSR of its own for identity as, whatever it is asked.
type lyingCA struct {
	identity.CAClient
	as spiffeid.ID
}

func (c *lyingCA) Sign(ctx context.Context, _ []byte, ttl time.Duration) ([]*x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{c.as.URL()}}, key)
	if err != nil {
		return nil, err
	}
	return c.CAClient.Sign(ctx, der, ttl)
}

func TestManagerRenewsAtHalfLife(t *testing.T) {
	inner, _ := newFileCA(t, testTD)
	ca := &testCA{CAClient: inner}
	m := newManager(t, ca, identity.Options{TTL: 2 * time.Second})
	first, err := m.Get(t.Context(), books)
	if err != nil {
		t.Fatal(err)
	}
	leaf := first.Certificates[0]
	halfLife := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)

	renewed := waitFor(t, 6*time.Second, func() (*x509svid.SVID, bool) {
		s, err := m.Get(t.Context(), books)
		if err != nil {
			t.Fatalf("Get during renewal: %v", err)
		}
		return s, s.Certificates[0].SerialNumber.Cmp(leaf.SerialNumber) != 0
	})
	now := time.Now()
	if now.Before(halfLife.Add(-100 * time.Millisecond)) {
		t.Errorf("renewed at %v, before the half-life %v", now, halfLife)
	}
	if !now.Before(leaf.NotAfter) {
		t.Errorf("renewed at %v, after the first certificate expired at %v", now, leaf.NotAfter)
	}
	if renewed.Certificates[0].PublicKey.(*ecdsa.PublicKey).Equal(leaf.PublicKey) {
		t.Error("renewal reused the key; every certificate should get a new one")
	}
}

func TestManagerKeepsCertificateWhileRenewalFails(t *testing.T) {
	inner, _ := newFileCA(t, testTD)
	ca := &testCA{CAClient: inner}
	m := newManager(t, ca, identity.Options{TTL: 4 * time.Second, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	first, err := m.Get(t.Context(), books)
	if err != nil {
		t.Fatal(err)
	}
	ca.fail.Store(true)
	leaf := first.Certificates[0]
	signs := ca.signs.Load()

	// Past the half-life, renewals fail and are retried; Get keeps returning the first SVID.
	waitFor(t, 5*time.Second, func() (struct{}, bool) {
		s, err := m.Get(t.Context(), books)
		if err != nil {
			t.Fatalf("Get while renewal fails: %v", err)
		}
		if s != first {
			t.Fatalf("Get returned a different SVID while the CA fails")
		}
		return struct{}{}, ca.signs.Load() >= signs+3
	})
	if !time.Now().Before(leaf.NotAfter) {
		t.Skip("the machine is too slow: the certificate expired before three retries")
	}

	ca.fail.Store(false)
	waitFor(t, 3*time.Second, func() (struct{}, bool) {
		s, err := m.Get(t.Context(), books)
		if err != nil {
			t.Fatalf("Get after the CA recovered: %v", err)
		}
		return struct{}{}, s.Certificates[0].SerialNumber.Cmp(leaf.SerialNumber) != 0
	})
}

func TestManagerExpiredCertificateIsNotServed(t *testing.T) {
	inner, _ := newFileCA(t, testTD)
	ca := &testCA{CAClient: inner}
	m := newManager(t, ca, identity.Options{TTL: 2 * time.Second, MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	first, err := m.Get(t.Context(), books)
	if err != nil {
		t.Fatal(err)
	}
	ca.fail.Store(true)
	time.Sleep(time.Until(first.Certificates[0].NotAfter) + 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if s, err := m.Get(ctx, books); err == nil {
		t.Fatalf("Get returned a certificate expiring %v after the CA failed", s.Certificates[0].NotAfter)
	} else if !strings.Contains(err.Error(), "CA unavailable") {
		t.Errorf("Get error %q does not say why", err)
	}
}

func TestManagerConcurrentGetSharesOneFetch(t *testing.T) {
	inner, _ := newFileCA(t, testTD)
	ca := &testCA{CAClient: inner, gate: make(chan struct{})}
	m := newManager(t, ca, identity.Options{})

	const callers = 32
	results := make(chan *x509svid.SVID, callers)
	errs := make(chan error, callers)
	for range callers {
		go func() {
			s, err := m.Get(t.Context(), books)
			if err != nil {
				errs <- err
				return
			}
			results <- s
		}()
	}
	waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, ca.signs.Load() == 1 })
	time.Sleep(50 * time.Millisecond) // let every caller arrive
	close(ca.gate)

	var first *x509svid.SVID
	for range callers {
		select {
		case s := <-results:
			if first == nil {
				first = s
			} else if s != first {
				t.Fatal("callers got different SVIDs")
			}
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(5 * time.Second):
			t.Fatal("Get did not return")
		}
	}
	if n := ca.signs.Load(); n != 1 {
		t.Fatalf("%d signing requests for %d concurrent callers, want 1", n, callers)
	}
}

func TestManagerForget(t *testing.T) {
	inner, _ := newFileCA(t, testTD)
	ca := &testCA{CAClient: inner}
	m := newManager(t, ca, identity.Options{TTL: 2 * time.Second})
	first, err := m.Get(t.Context(), books)
	if err != nil {
		t.Fatal(err)
	}
	m.Forget(books)
	signs := ca.signs.Load()
	time.Sleep(time.Until(first.Certificates[0].NotAfter) + 100*time.Millisecond)
	if n := ca.signs.Load(); n != signs {
		t.Fatalf("%d signing requests after Forget, want none", n-signs)
	}
	second, err := m.Get(t.Context(), books)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatal("Get after Forget returned the forgotten SVID")
	}
	m.Close()
	if _, err := m.Get(t.Context(), books); err == nil {
		t.Fatal("Get after Close succeeded")
	}
}

// switchCA signs with whichever CA is current and reads its bundle from a file.
type switchCA struct {
	cur atomic.Pointer[identity.FileCA]
	*identity.FileCA
}

func (c *switchCA) Sign(ctx context.Context, csr []byte, ttl time.Duration) ([]*x509.Certificate, error) {
	return c.cur.Load().Sign(ctx, csr, ttl)
}

// rotation returns two FileCAs with different roots that share one bundle file.
func rotation(t testing.TB) (ca1, ca2 *identity.FileCA, root1, root2 *x509.Certificate, bundleFile string) {
	t.Helper()
	dir := t.TempDir()
	bundleFile = filepath.Join(dir, "bundle.pem")
	mk := func(name string) (*identity.FileCA, *x509.Certificate) {
		cert, key := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		root, err := identity.CreateRootCA(testTD, cert, key, 0)
		if err != nil {
			t.Fatal(err)
		}
		ca, err := identity.NewFileCA(identity.FileCAConfig{TrustDomain: testTD, CertFile: cert, KeyFile: key, BundleFile: bundleFile})
		if err != nil {
			t.Fatal(err)
		}
		return ca, root
	}
	ca1, root1 = mk("root1")
	ca2, root2 = mk("root2")
	return ca1, ca2, root1, root2, bundleFile
}

func TestManagerBundleRotation(t *testing.T) {
	ca1, ca2, root1, root2, bundleFile := rotation(t)
	writePEM(t, bundleFile, root1)
	ca := &switchCA{FileCA: ca1}
	ca.cur.Store(ca1)
	// A long refresh interval: only a chain that does not verify triggers a re-read.
	m := newManager(t, ca, identity.Options{BundleRefresh: time.Hour})
	old, err := m.Get(t.Context(), books)
	if err != nil {
		t.Fatal(err)
	}

	// The CA rotates: the new root is appended to the bundle and the CA signs with it.
	writePEM(t, bundleFile, root1, root2)
	ca.cur.Store(ca2)
	m.Forget(books)
	renewed, err := m.Get(t.Context(), books)
	if err != nil {
		t.Fatalf("Get after rotation: %v", err)
	}
	b, err := m.Bundle().GetX509BundleForTrustDomain(testTD)
	if err != nil {
		t.Fatal(err)
	}
	if !b.HasX509Authority(root1) || !b.HasX509Authority(root2) {
		t.Fatalf("bundle has root1 %v, root2 %v; want both during the overlap", b.HasX509Authority(root1), b.HasX509Authority(root2))
	}
	for name, s := range map[string]*x509svid.SVID{"old": old, "renewed": renewed} {
		if _, _, err := x509svid.Verify(s.Certificates, m.Bundle()); err != nil {
			t.Errorf("%s SVID does not verify during the overlap: %v", name, err)
		}
	}
}

func TestManagerBundleFollowsFile(t *testing.T) {
	ca1, _, root1, root2, bundleFile := rotation(t)
	writePEM(t, bundleFile, root1)
	m := newManager(t, ca1, identity.Options{BundleRefresh: 50 * time.Millisecond})
	has := func(want ...*x509.Certificate) func() (struct{}, bool) {
		return func() (struct{}, bool) {
			b, err := m.Bundle().GetX509BundleForTrustDomain(testTD)
			if err != nil || len(b.X509Authorities()) != len(want) {
				return struct{}{}, false
			}
			for _, c := range want {
				if !b.HasX509Authority(c) {
					return struct{}{}, false
				}
			}
			return struct{}{}, true
		}
	}
	waitFor(t, 5*time.Second, has(root1))
	writePEM(t, bundleFile, root1, root2)
	waitFor(t, 5*time.Second, has(root1, root2))
	writePEM(t, bundleFile, root2)
	waitFor(t, 5*time.Second, has(root2))
	// An unreadable bundle keeps the last good one.
	writePEMRaw(t, bundleFile, []byte("garbage"))
	time.Sleep(200 * time.Millisecond)
	waitFor(t, time.Second, has(root2))
}

func TestPrivateKeyCannotLeave(t *testing.T) {
	inner, _ := newFileCA(t, testTD)
	m := newManager(t, inner, identity.Options{})
	svid, err := m.Get(t.Context(), books)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey); err == nil {
		t.Error("the private key can be marshalled")
	}
	if _, _, err := svid.Marshal(); err == nil {
		t.Error("the SVID can be marshalled with its key")
	}
	if _, ok := svid.PrivateKey.(*ecdsa.PrivateKey); ok {
		t.Error("the SVID exposes the *ecdsa.PrivateKey")
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("svid", "key", svid.PrivateKey)
	for _, out := range []string{fmt.Sprintf("%v", svid.PrivateKey), fmt.Sprintf("%#v", svid.PrivateKey), logs.String()} {
		if !strings.Contains(out, "REDACTED") {
			t.Errorf("key printed as %q, want a redacted placeholder", out)
		}
	}
}

func writePEMRaw(t testing.TB, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls f every 20 ms until it reports true, failing the test after timeout.
func waitFor[T any](t testing.TB, timeout time.Duration, f func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, ok := f()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
