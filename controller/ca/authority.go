package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/weftmesh/weft/api"
	cav1 "github.com/weftmesh/weft/api/ca/v1"
	"github.com/weftmesh/weft/internal/pki"
)

// secretResync is how often the watched Secrets are re-delivered, which also re-publishes the
// trust bundle if someone changed the ConfigMap.
const secretResync = 10 * time.Minute

// CA is the controller's certificate authority. [New] loads (or creates) its root and issues the
// serving certificate; [CA.Run] follows Secret changes and renews the serving certificate;
// [CA.Register] serves it over gRPC. It is safe for concurrent use.
type CA struct {
	cav1.UnimplementedCertificateServiceServer

	opts  Options
	log   *slog.Logger
	authn *Authenticator
	authz *authorizer

	signer  atomic.Pointer[signer]
	bundle  atomic.Pointer[[]*x509.Certificate] // published roots: the signer's and retired ones
	serving atomic.Pointer[tls.Certificate]

	mu      sync.Mutex    // serialises reloads and serving-certificate renewals
	retired []retiredRoot // roots dropped from the trust set, kept until their leaves expire (as stored)
	reload  chan struct{} // a watched Secret changed (buffered, 1)
}

// New loads the CA from the Secrets in opts.Namespace, creating the self-signed root if neither
// exists, publishes the trust bundle in the ConfigMap api.RootCertConfigMap and issues the
// serving certificate. It fails when the cacerts Secret exists but is unusable.
func New(ctx context.Context, opts Options) (*CA, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	authn, err := NewAuthenticator(AuthenticatorOptions{
		Client:   opts.Client,
		Audience: api.TokenAudience,
		Pods:     opts.Pods,
		CacheTTL: opts.TokenCacheTTL,
	})
	if err != nil {
		return nil, err
	}
	c := &CA{
		opts:  opts,
		log:   opts.Logger.With("component", "ca"),
		authn: authn,
		authz: &authorizer{
			pods:    opts.Pods,
			client:  opts.Client,
			agentNS: opts.NodeAgentNamespace,
			agentSA: opts.NodeAgentServiceAccount,
			now:     time.Now,
		},
		reload: make(chan struct{}, 1),
	}
	s, err := c.loadSigner(ctx)
	if err != nil {
		return nil, err
	}
	// Roots retired before a restart, or by another replica, are in RetiredRootsSecret.
	retired, err := c.syncRetired(ctx, nil, s.roots, c.keepRetired(), opts.now())
	if err != nil {
		return nil, err
	}
	bundle := bundleOf(s, retired)
	if err := c.publishBundle(ctx, bundle); err != nil {
		return nil, err
	}
	c.retired = retired
	c.signer.Store(s)
	c.bundle.Store(&bundle)
	if err := c.renewServing(); err != nil {
		return nil, err
	}
	c.log.Info("CA ready", "source", s.from, "signer", s.cert.Subject.String(),
		"signer_expires", s.cert.NotAfter, "roots", len(s.roots), "trust_domain", opts.TrustDomain.Name())
	return c, nil
}

// Authenticator returns the CA's authenticator, for other gRPC services of the controller (the
// xDS server) to authenticate node agents the same way, with the same cache.
func (c *CA) Authenticator() *Authenticator { return c.authn }

// TrustDomain returns the trust domain of the identities the CA signs.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.opts.TrustDomain }

// Bundle returns the roots to trust: the current ones and, after a rotation, those that may
// still have valid leaves. The slice must not be modified.
func (c *CA) Bundle() []*x509.Certificate { return *c.bundle.Load() }

// Run watches the Secrets (RetiredRootsSecret too, which other replicas write) and reloads the
// CA when they change, renews the serving certificate at half life and drops retired roots from
// the bundle when their leaves have expired, until ctx is done. A failed reload keeps the
// current CA and is retried with back-off.
func (c *CA) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, name := range []string{PluginSecret, SelfSignedSecret, RetiredRootsSecret} {
		inf := c.secretInformer(name)
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { c.requestReload() },
			UpdateFunc: func(any, any) { c.requestReload() },
			DeleteFunc: func(any) { c.requestReload() },
		}); err != nil {
			return fmt.Errorf("ca: watch Secret %s: %w", name, err)
		}
		wg.Go(func() { inf.RunWithContext(ctx) })
	}

	failures := 0
	timer := time.NewTimer(c.nextWake(time.Now(), failures))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.reload:
		case <-timer.C:
		}
		if err := c.tick(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			c.log.Error("CA reload failed; still signing with the previous CA", "err", err, "attempts", failures)
		} else {
			failures = 0
		}
		timer.Reset(c.nextWake(time.Now(), failures))
	}
}

// tick reloads the CA from the Secrets, publishes the bundle and renews the serving certificate
// when it is due (even when the reload fails: the apiserver may be away for a while).
func (c *CA) tick(ctx context.Context) error {
	c.log.Debug("checking the CA's Secrets")
	err := c.Reload(ctx)
	if cert := c.serving.Load(); cert == nil || !time.Now().Before(refreshAt(cert.Leaf)) {
		err = errors.Join(err, c.renewServing())
	}
	return err
}

// nextWake returns how long Run sleeps when nothing happens: until the serving certificate's
// half life, the next retired root's end, or a retry after failures.
func (c *CA) nextWake(now time.Time, failures int) time.Duration {
	wake := now.Add(secretResync)
	if cert := c.serving.Load(); cert != nil {
		wake = earliest(wake, refreshAt(cert.Leaf))
	}
	c.mu.Lock()
	for _, r := range c.retired {
		wake = earliest(wake, r.until)
	}
	c.mu.Unlock()
	if failures > 0 {
		wake = earliest(wake, now.Add(min(time.Second<<min(failures, 8), 5*time.Minute)))
	}
	return max(wake.Sub(now), 0)
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Reload reads the Secrets again. When the CA changed, it publishes the new bundle, then signs
// with the new CA and reissues the serving certificate; roots that left the trust set stay in
// the bundle until every leaf they may have signed has expired, recorded in RetiredRootsSecret
// (before the bundle is published) so that restarts and other replicas keep them too. Run calls
// it on every change of the Secrets; a failure leaves the CA as it was.
func (c *CA) Reload(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.loadSigner(ctx)
	if err != nil {
		return err
	}
	old := c.signer.Load()
	changed := !s.same(old)
	// Record the roots that left the trust set first, so that a restart or another replica
	// keeps publishing them; they are merged with those already recorded.
	retired, err := c.syncRetired(ctx, old.roots, s.roots, c.keepRetired(), c.opts.now())
	if err != nil {
		return err
	}
	bundle := bundleOf(s, retired)
	// Publish first: whoever sees a certificate of the new CA can already find its root.
	if err := c.publishBundle(ctx, bundle); err != nil {
		return err
	}
	c.retired = retired
	c.bundle.Store(&bundle)
	if !changed {
		return nil
	}
	c.signer.Store(s)
	c.log.Info("CA reloaded", "source", s.from, "signer", s.cert.Subject.String(),
		"signer_expires", s.cert.NotAfter, "roots", len(s.roots), "retired_roots", len(retired))
	return c.renewServingLocked()
}

// keepRetired returns until when a root leaving the trust set now must stay in the bundle:
// leaves signed before now live at most max(MaxTTL, ServingTTL), plus a minute of clock skew.
func (c *CA) keepRetired() time.Time {
	return c.opts.now().Add(max(c.opts.MaxTTL, c.opts.ServingTTL) + time.Minute)
}

// bundleOf returns the roots to publish: the signer's, then the retired ones (as stored, so that
// every replica publishes the same bundle) not among them.
func bundleOf(s *signer, retired []retiredRoot) []*x509.Certificate {
	roots := slices.Clone(s.roots)
	for _, r := range retired {
		if !slices.ContainsFunc(roots, r.cert.Equal) {
			roots = append(roots, r.cert)
		}
	}
	return roots
}

func (c *CA) requestReload() {
	select {
	case c.reload <- struct{}{}:
	default:
	}
}

// secretInformer returns an informer of the one Secret name in the CA's namespace (a list and
// watch with a metadata.name field selector, which RBAC can restrict by resourceNames).
func (c *CA) secretInformer(name string) cache.SharedIndexInformer {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	return coreinformers.NewFilteredSecretInformer(c.opts.Client, c.opts.Namespace, secretResync, cache.Indexers{},
		func(o *metav1.ListOptions) { o.FieldSelector = sel })
}

// sign issues a leaf SVID for id, checked by parseCSR, to the CSR's key, valid for ttl (zero or
// less: the default), capped at MaxTTL and at the signer's expiry. It returns the chain leaf
// first, root last.
func (c *CA) sign(csr *x509.CertificateRequest, id spiffeid.ID, ttl time.Duration) ([]*x509.Certificate, error) {
	if ttl <= 0 {
		ttl = c.opts.DefaultTTL
	}
	ttl = min(ttl, c.opts.MaxTTL)
	tmpl := &x509.Certificate{
		URIs:        []*url.URL{id.URL()},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	chain, err := c.issue(tmpl, csr.PublicKey, ttl)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", id, err)
	}
	return chain, nil
}

// issue signs tmpl for pub with the current signer, valid from now (backdated a little) for
// ttl or until the signer expires, and returns it followed by the signer's chain.
func (c *CA) issue(tmpl *x509.Certificate, pub any, ttl time.Duration) ([]*x509.Certificate, error) {
	s := c.signer.Load()
	now := time.Now()
	serial, err := pki.RandomSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	// Backdate for clocks that lag ours, without stretching short TTLs or preceding the signer.
	tmpl.NotBefore = now.Add(-min(time.Minute, ttl/10))
	if tmpl.NotBefore.Before(s.cert.NotBefore) {
		tmpl.NotBefore = s.cert.NotBefore
	}
	tmpl.NotAfter = earliest(now.Add(ttl), s.cert.NotAfter)
	if !tmpl.NotAfter.After(now) {
		return nil, fmt.Errorf("the CA certificate %q expired at %s", s.cert.Subject, s.cert.NotAfter)
	}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.cert, pub, s.key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse signed certificate: %w", err)
	}
	return append([]*x509.Certificate{leaf}, s.chain...), nil
}

// parseCSR returns the CSR and its identity if its signature is valid, its key ECDSA P-256 and
// its only subject alternative name a workload identity in the CA's trust domain.
func (c *CA) parseCSR(der []byte) (*x509.CertificateRequest, spiffeid.ID, error) {
	bad := func(format string, args ...any) (*x509.CertificateRequest, spiffeid.ID, error) {
		return nil, spiffeid.ID{}, fmt.Errorf("invalid certificate signing request: "+format, args...)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return bad("parse: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return bad("signature: %v", err)
	}
	if len(csr.DNSNames) > 0 || len(csr.EmailAddresses) > 0 || len(csr.IPAddresses) > 0 {
		return bad("it has DNS, email or IP SANs; only one SPIFFE URI SAN is allowed")
	}
	if len(csr.URIs) != 1 {
		return bad("it has %d URI SANs, want exactly one SPIFFE ID", len(csr.URIs))
	}
	id, err := spiffeid.FromURI(csr.URIs[0])
	if err != nil {
		return bad("URI SAN %q: %v", csr.URIs[0], err)
	}
	if !id.MemberOf(c.opts.TrustDomain) {
		return bad("%s is not in trust domain %s", id, c.opts.TrustDomain)
	}
	if _, _, ok := api.ParseWorkloadID(id); !ok {
		return bad("%s is not of the form spiffe://%s/ns/<namespace>/sa/<service account>", id, c.opts.TrustDomain)
	}
	if pub, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		return bad("%s: the key must be ECDSA P-256, not %s", id, keyName(csr.PublicKey))
	}
	return csr, id, nil
}

func keyName(pub any) string {
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		return "ECDSA " + k.Curve.Params().Name
	}
	return fmt.Sprintf("%T", pub)
}

// refreshAt returns the half life of cert.
func refreshAt(cert *x509.Certificate) time.Time {
	return cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) / 2)
}
