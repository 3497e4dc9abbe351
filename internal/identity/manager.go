package identity

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// CAClient signs workload certificates and tells which roots to trust. FileCA implements it;
// the controller's gRPC CA is another implementation.
type CAClient interface {
	// Sign returns the certificate signed for the DER certificate signing request csrDER,
	// valid for about ttl, followed by the chain that issued it (leaf first, root last).
	Sign(ctx context.Context, csrDER []byte, ttl time.Duration) (chain []*x509.Certificate, err error)
	// Bundle returns the roots of the trust domain. During a root rotation it returns the old
	// and the new roots.
	Bundle(ctx context.Context) ([]*x509.Certificate, error)
}

// Options configures a Manager. Only TrustDomain is required.
type Options struct {
	// TrustDomain is the trust domain of every identity the Manager obtains.
	TrustDomain spiffeid.TrustDomain
	// TTL is the certificate lifetime requested from the CA; zero means DefaultTTL.
	TTL time.Duration
	// MinBackoff and MaxBackoff bound the exponential, jittered back-off between failed
	// attempts; zero means 1 s and 150 s (ztunnel's cap).
	MinBackoff, MaxBackoff time.Duration
	// FetchTimeout bounds one signing request; zero means 30 s.
	FetchTimeout time.Duration
	// MaxConcurrentFetches bounds the signing requests in flight; zero means 8 (as ztunnel).
	MaxConcurrentFetches int
	// BundleRefresh is how often the trust bundle is re-read from the CA; zero means 1 min.
	// The bundle is also re-read at once when a signed chain does not verify against it.
	BundleRefresh time.Duration
	// Logger receives the Manager's logs; nil means slog.Default(). Keys are never logged.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 150 * time.Second
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = 30 * time.Second
	}
	if o.MaxConcurrentFetches <= 0 {
		o.MaxConcurrentFetches = 8
	}
	if o.BundleRefresh <= 0 {
		o.BundleRefresh = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Manager caches the SVIDs of the workload identities of one node. The first Get of an identity
// fetches its SVID; from then on a background goroutine renews it at half of its lifetime until
// Forget or Close. A failed renewal is retried with exponential back-off while the previous SVID
// is served as long as it is valid.
//
// A Manager is safe for concurrent use.
type Manager struct {
	ca   CAClient
	opts Options
	log  *slog.Logger
	sem  chan struct{} // bounds concurrent signing requests

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	entries map[spiffeid.ID]*entry
	closed  bool

	bundle   atomic.Pointer[x509bundle.Bundle]
	bundleMu sync.Mutex // serialises bundle refreshes
}

// entry is the state of one identity.
type entry struct {
	id     spiffeid.ID
	cancel context.CancelFunc
	kick   chan struct{} // a caller needs a certificate now (buffered, 1)

	mu      sync.Mutex
	svid    *x509svid.SVID // current SVID, possibly expired
	err     error          // error of the last attempt, nil after a success
	attempt chan struct{}  // closed when the next attempt completes, then replaced
	gone    bool           // forgotten or closed
}

// NewManager returns a Manager that obtains certificates from ca. It starts reading the trust
// bundle in the background; Close stops it.
func NewManager(ca CAClient, opts Options) (*Manager, error) {
	if ca == nil {
		return nil, errors.New("identity: nil CA client")
	}
	if opts.TrustDomain.IsZero() {
		return nil, errors.New("identity: empty trust domain")
	}
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		ca:      ca,
		opts:    opts,
		log:     opts.Logger.With("component", "identity"),
		sem:     make(chan struct{}, opts.MaxConcurrentFetches),
		ctx:     ctx,
		cancel:  cancel,
		entries: make(map[spiffeid.ID]*entry),
	}
	m.wg.Add(1)
	go m.bundleLoop()
	return m, nil
}

// Get returns a valid SVID for id, a workload identity of the Manager's trust domain. The first
// call for an identity fetches it, and concurrent callers share that fetch; later calls return
// the cached SVID while it is valid. When no valid SVID is cached, Get asks for an attempt now
// (at most one per MinBackoff) and returns its result, or ctx's error if that comes first.
func (m *Manager) Get(ctx context.Context, id spiffeid.ID) (*x509svid.SVID, error) {
	if !id.MemberOf(m.opts.TrustDomain) {
		return nil, fmt.Errorf("identity: %s is not in trust domain %s", id, m.opts.TrustDomain)
	}
	if _, _, err := NamespaceSA(id); err != nil {
		return nil, err
	}
	e, err := m.entry(id)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	svid, attempt, gone, lastErr := e.svid, e.attempt, e.gone, e.err
	e.mu.Unlock()
	if valid(svid, time.Now()) {
		return svid, nil
	}
	if gone {
		return nil, fmt.Errorf("identity: %s is no longer managed", id)
	}
	select {
	case e.kick <- struct{}{}:
	default:
	}
	select {
	case <-attempt:
	case <-ctx.Done():
		if lastErr != nil {
			return nil, fmt.Errorf("identity: waiting for %s: %w (last error: %v)", id, ctx.Err(), lastErr)
		}
		return nil, fmt.Errorf("identity: waiting for %s: %w", id, ctx.Err())
	}
	e.mu.Lock()
	svid, gone, lastErr = e.svid, e.gone, e.err
	e.mu.Unlock()
	switch {
	case valid(svid, time.Now()):
		return svid, nil
	case lastErr != nil:
		return nil, lastErr
	case gone:
		return nil, fmt.Errorf("identity: %s is no longer managed", id)
	default:
		return nil, fmt.Errorf("identity: no valid certificate for %s", id)
	}
}

// Forget stops renewing id and drops its SVID; a later Get fetches a new one. Call it when the
// last workload with that identity leaves the node.
func (m *Manager) Forget(id spiffeid.ID) {
	m.mu.Lock()
	e := m.entries[id]
	delete(m.entries, id)
	m.mu.Unlock()
	if e != nil {
		e.cancel()
	}
}

// Close stops all renewals and the bundle refresh and waits for them to end. Get fails after
// Close.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	m.entries = make(map[spiffeid.ID]*entry)
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}

// Bundle returns the trust bundle as a source that always answers with the current roots, so
// TLS configurations built from it follow rotations.
func (m *Manager) Bundle() x509bundle.Source { return bundleSource{m} }

type bundleSource struct{ m *Manager }

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s bundleSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != s.m.opts.TrustDomain {
		return nil, fmt.Errorf("identity: no trust bundle for trust domain %q", td)
	}
	b := s.m.bundle.Load()
	if b == nil {
		return nil, fmt.Errorf("identity: trust bundle for %q not loaded yet", td)
	}
	return b, nil
}

// entry returns the entry of id, creating it and starting its renewal loop if needed.
func (m *Manager) entry(id spiffeid.ID) (*entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errors.New("identity: manager closed")
	}
	if e := m.entries[id]; e != nil {
		return e, nil
	}
	ctx, cancel := context.WithCancel(m.ctx)
	e := &entry{id: id, cancel: cancel, kick: make(chan struct{}, 1), attempt: make(chan struct{})}
	m.entries[id] = e
	m.wg.Add(1)
	go m.renewLoop(ctx, e)
	return e, nil
}

// renewLoop fetches e's SVID, then renews it at half-life, retrying failures with back-off,
// until ctx is cancelled.
func (m *Manager) renewLoop(ctx context.Context, e *entry) {
	defer m.wg.Done()
	defer func() {
		e.mu.Lock()
		e.gone = true
		e.svid = nil
		close(e.attempt)
		e.mu.Unlock()
	}()
	log := m.log.With("id", e.id.String())
	failures := 0
	for {
		// Drain a stale request for an attempt: this attempt answers it.
		select {
		case <-e.kick:
		default:
		}
		start := time.Now()
		svid, err := m.fetch(ctx, e.id)
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		e.mu.Lock()
		if err == nil {
			e.svid, e.err = svid, nil
		} else {
			e.err = err
		}
		current := e.svid
		close(e.attempt)
		e.attempt = make(chan struct{})
		e.mu.Unlock()

		var wait time.Duration
		if err == nil {
			failures = 0
			refresh := refreshAt(svid.Certificates[0])
			wait = refresh.Sub(now)
			log.Info("certificate issued", "serial", svid.Certificates[0].SerialNumber.String(),
				"expires", svid.Certificates[0].NotAfter, "refresh", refresh)
		} else {
			failures++
			wait = m.backoff(failures)
			if valid(current, now) {
				log.Warn("certificate renewal failed; serving the previous certificate",
					"err", err, "attempts", failures, "retry_in", wait, "expires", current.Certificates[0].NotAfter)
			} else {
				log.Error("certificate fetch failed", "err", err, "attempts", failures, "retry_in", wait)
			}
		}
		// A caller waiting for a certificate may cut the wait short, but never below
		// MinBackoff after the start of the previous attempt.
		var kick <-chan struct{}
		if !valid(current, now) {
			kick = e.kick
		}
		if !m.sleep(ctx, max(wait, 0), kick, start.Add(m.opts.MinBackoff)) {
			return
		}
	}
}

// sleep waits for d; a kick shortens the wait, but not below notBefore. It returns false when
// ctx is done.
func (m *Manager) sleep(ctx context.Context, d time.Duration, kick <-chan struct{}, notBefore time.Time) bool {
	deadline := time.Now().Add(d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-kick:
	}
	if notBefore.After(deadline) {
		notBefore = deadline
	}
	if d := time.Until(notBefore); d > 0 {
		t.Reset(d)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// backoff returns the jittered wait before attempt failures+1: exponential from MinBackoff,
// capped at MaxBackoff, then drawn from [d/2, d].
func (m *Manager) backoff(failures int) time.Duration {
	d := m.opts.MinBackoff
	for i := 1; i < failures && d < m.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, m.opts.MaxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
}

// fetch generates a key, has the CA sign a CSR for id and checks the result.
func (m *Manager) fetch(ctx context.Context, id spiffeid.ID) (*x509svid.SVID, error) {
	select {
	case m.sem <- struct{}{}:
		defer func() { <-m.sem }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(ctx, m.opts.FetchTimeout)
	defer cancel()

	key, err := newPrivateKey()
	if err != nil {
		return nil, err
	}
	csr, err := newCSR(id, key)
	if err != nil {
		return nil, err
	}
	chain, err := m.ca.Sign(ctx, csr, m.opts.TTL)
	if err != nil {
		return nil, fmt.Errorf("identity: sign %s: %w", id, err)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("identity: sign %s: CA returned no certificate", id)
	}
	leaf := chain[0]
	got, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("identity: sign %s: returned certificate: %w", id, err)
	}
	if got != id {
		return nil, fmt.Errorf("identity: sign %s: CA returned a certificate for %s", id, got)
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("identity: sign %s: returned certificate does not carry our public key", id)
	}
	if err := m.verify(ctx, chain); err != nil {
		return nil, fmt.Errorf("identity: sign %s: %w", id, err)
	}
	return &x509svid.SVID{ID: id, Certificates: withoutRoot(chain), PrivateKey: key}, nil
}

// verify checks chain against the trust bundle, re-reading the bundle once if it fails: the CA
// may have started signing with a root that the last refresh did not see.
func (m *Manager) verify(ctx context.Context, chain []*x509.Certificate) error {
	if m.bundle.Load() != nil {
		if _, _, err := x509svid.Verify(chain, m.Bundle()); err == nil {
			return nil
		}
	}
	if err := m.refreshBundle(ctx); err != nil {
		return err
	}
	if _, _, err := x509svid.Verify(chain, m.Bundle()); err != nil {
		return err
	}
	return nil
}

// bundleLoop reads the trust bundle now and then every BundleRefresh, with back-off on failure.
func (m *Manager) bundleLoop() {
	defer m.wg.Done()
	failures := 0
	for {
		wait := m.opts.BundleRefresh
		if err := m.refreshBundle(m.ctx); err != nil {
			if m.ctx.Err() != nil {
				return
			}
			failures++
			wait = min(wait, m.backoff(failures))
			m.log.Warn("trust bundle refresh failed", "err", err, "retry_in", wait)
		} else {
			failures = 0
		}
		if !m.sleep(m.ctx, wait, nil, time.Time{}) {
			return
		}
	}
}

// refreshBundle replaces the trust bundle with the CA's roots. An error or an empty answer keeps
// the previous bundle.
func (m *Manager) refreshBundle(ctx context.Context) error {
	m.bundleMu.Lock()
	defer m.bundleMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, m.opts.FetchTimeout)
	defer cancel()
	roots, err := m.ca.Bundle(ctx)
	if err != nil {
		return fmt.Errorf("identity: trust bundle: %w", err)
	}
	if len(roots) == 0 {
		return errors.New("identity: trust bundle: CA returned no roots")
	}
	b := x509bundle.FromX509Authorities(m.opts.TrustDomain, roots)
	if old := m.bundle.Swap(b); old == nil || !old.Equal(b) {
		m.log.Info("trust bundle updated", "roots", len(roots))
	}
	return nil
}

// refreshAt returns the half-life of cert: NotBefore + (NotAfter - NotBefore)/2.
func refreshAt(cert *x509.Certificate) time.Time {
	return cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) / 2)
}

// valid reports whether svid exists and has not expired at now.
func valid(svid *x509svid.SVID, now time.Time) bool {
	return svid != nil && now.Before(svid.Certificates[0].NotAfter)
}

// withoutRoot drops a trailing self-signed certificate: peers have the root in their bundle.
func withoutRoot(chain []*x509.Certificate) []*x509.Certificate {
	if n := len(chain); n > 1 {
		last := chain[n-1]
		if bytes.Equal(last.RawIssuer, last.RawSubject) && last.CheckSignatureFrom(last) == nil {
			return chain[:n-1]
		}
	}
	return chain
}
