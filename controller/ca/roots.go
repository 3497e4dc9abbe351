package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/pki"
)

// signer is one loaded CA: the certificate and key that sign, the chain above them and the roots
// to trust.
type signer struct {
	cert  *x509.Certificate
	key   crypto.Signer
	chain []*x509.Certificate // cert first, root last
	roots []*x509.Certificate // the trust set of the source Secret
	from  string              // name of the Secret it was loaded from
}

// same reports whether s and o sign with the same certificate and trust the same roots.
func (s *signer) same(o *signer) bool {
	return o != nil && s.cert.Equal(o.cert) && sameCerts(s.chain, o.chain) && sameCerts(s.roots, o.roots)
}

// loadSigner reads the CA from the Secrets: PluginSecret when it exists, else SelfSignedSecret,
// which it creates (if absent) with a new self-signed root.
func (c *CA) loadSigner(ctx context.Context) (*signer, error) {
	secrets := c.opts.Client.CoreV1().Secrets(c.opts.Namespace)
	plug, err := secrets.Get(ctx, PluginSecret, metav1.GetOptions{})
	switch {
	case err == nil:
		s, err := parsePluginSecret(plug)
		if err != nil {
			return nil, fmt.Errorf("ca: Secret %s/%s: %w", c.opts.Namespace, PluginSecret, err)
		}
		return s, nil
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("ca: read Secret %s/%s: %w", c.opts.Namespace, PluginSecret, err)
	}

	own, err := secrets.Get(ctx, SelfSignedSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		own, err = c.createSelfSigned(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("ca: Secret %s/%s: %w", c.opts.Namespace, SelfSignedSecret, err)
	}
	s, err := parseSelfSignedSecret(own)
	if err != nil {
		return nil, fmt.Errorf("ca: Secret %s/%s: %w", c.opts.Namespace, SelfSignedSecret, err)
	}
	return s, nil
}

// createSelfSigned creates SelfSignedSecret with a new root unless it exists; when another
// replica created it first, it returns that one.
func (c *CA) createSelfSigned(ctx context.Context) (*corev1.Secret, error) {
	certPEM, keyPEM, err := pki.NewRoot(c.opts.TrustDomain, c.opts.RootTTL)
	if err != nil {
		return nil, err
	}
	secrets := c.opts.Client.CoreV1().Secrets(c.opts.Namespace)
	created, err := secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      SelfSignedSecret,
			Namespace: c.opts.Namespace,
			Labels:    map[string]string{"app.kubernetes.io/managed-by": "weft-controller"},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{KeyCACert: certPEM, KeyCAKey: keyPEM},
	}, metav1.CreateOptions{})
	switch {
	case err == nil:
		c.log.Info("created a self-signed root CA", "secret", c.opts.Namespace+"/"+SelfSignedSecret,
			"trust_domain", c.opts.TrustDomain.Name())
		return created, nil
	case apierrors.IsAlreadyExists(err):
		// Another replica won the race: use its root.
		existing, err := secrets.Get(ctx, SelfSignedSecret, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("read back after AlreadyExists: %w", err)
		}
		return existing, nil
	default:
		return nil, fmt.Errorf("create: %w", err)
	}
}

// parsePluginSecret reads a user-supplied intermediate CA in Istio's plug-in format: ca-cert.pem
// signs with ca-key.pem, cert-chain.pem is the chain from ca-cert.pem to the root, and
// root-cert.pem holds the roots to trust (several during a rotation).
func parsePluginSecret(sec *corev1.Secret) (*signer, error) {
	for _, k := range []string{KeyCACert, KeyCAKey, KeyRootCert} {
		if len(sec.Data[k]) == 0 {
			return nil, fmt.Errorf("missing key %s", k)
		}
	}
	certs, err := pki.ParseCertificates(sec.Data[KeyCACert])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCACert, err)
	}
	key, err := pki.ParsePrivateKey(sec.Data[KeyCAKey])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCAKey, err)
	}
	roots, err := pki.ParseCertificates(sec.Data[KeyRootCert])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyRootCert, err)
	}
	for _, r := range roots {
		if !r.IsCA || !selfSigned(r) {
			return nil, fmt.Errorf("%s: %q is not a self-signed CA certificate", KeyRootCert, r.Subject)
		}
	}
	chain := certs
	if len(sec.Data[KeyCertChain]) > 0 {
		more, err := pki.ParseCertificates(sec.Data[KeyCertChain])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", KeyCertChain, err)
		}
		chain = certs[:1]
		for _, m := range more {
			if !m.Equal(certs[0]) {
				chain = append(chain, m)
			}
		}
	}
	// Complete the chain with its root when the Secret's chain stops below it.
	if last := chain[len(chain)-1]; !selfSigned(last) {
		for _, r := range roots {
			if bytes.Equal(last.RawIssuer, r.RawSubject) && last.CheckSignatureFrom(r) == nil {
				chain = append(chain, r)
				break
			}
		}
	}
	s := &signer{cert: chain[0], key: key, chain: chain, roots: roots, from: PluginSecret}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// parseSelfSignedSecret reads the self-signed root kept by the CA.
func parseSelfSignedSecret(sec *corev1.Secret) (*signer, error) {
	for _, k := range []string{KeyCACert, KeyCAKey} {
		if len(sec.Data[k]) == 0 {
			return nil, fmt.Errorf("missing key %s", k)
		}
	}
	certs, err := pki.ParseCertificates(sec.Data[KeyCACert])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCACert, err)
	}
	key, err := pki.ParsePrivateKey(sec.Data[KeyCAKey])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCAKey, err)
	}
	root := certs[0]
	if !selfSigned(root) {
		return nil, fmt.Errorf("%s: %q is not self-signed", KeyCACert, root.Subject)
	}
	s := &signer{cert: root, key: key, chain: []*x509.Certificate{root}, roots: []*x509.Certificate{root}, from: SelfSignedSecret}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// check verifies that s can sign: a CA certificate allowed to sign certificates, matching its
// key, valid now, whose chain leads to one of its roots.
func (s *signer) check() error {
	if !s.cert.IsCA || s.cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%s: %q is not a CA certificate allowed to sign certificates", KeyCACert, s.cert.Subject)
	}
	if pub, ok := s.cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(s.key.Public()) {
		return fmt.Errorf("%s does not match the certificate in %s", KeyCAKey, KeyCACert)
	}
	now := time.Now()
	if now.After(s.cert.NotAfter) || now.Before(s.cert.NotBefore) {
		return fmt.Errorf("%s: %q is valid only from %s to %s", KeyCACert, s.cert.Subject, s.cert.NotBefore, s.cert.NotAfter)
	}
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range s.roots {
		pool.AddCert(r)
	}
	for _, c := range s.chain[1:] {
		inter.AddCert(c)
	}
	if _, err := s.cert.Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("%s does not chain to a root of %s: %w", KeyCACert, KeyRootCert, err)
	}
	if last := s.chain[len(s.chain)-1]; !selfSigned(last) {
		return fmt.Errorf("the chain of %s ends at %q, whose root is not in %s", KeyCACert, last.Subject, KeyRootCert)
	}
	return nil
}

// publishBundle writes roots to the ConfigMap api.RootCertConfigMap, key api.RootCertKey,
// creating it or updating it when it differs.
func (c *CA) publishBundle(ctx context.Context, roots []*x509.Certificate) error {
	want := string(pki.EncodeCertificates(roots))
	cms := c.opts.Client.CoreV1().ConfigMaps(c.opts.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := cms.Get(ctx, api.RootCertConfigMap, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = cms.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{
					Name:      api.RootCertConfigMap,
					Namespace: c.opts.Namespace,
					Labels:    map[string]string{"app.kubernetes.io/managed-by": "weft-controller"},
				},
				Data: map[string]string{api.RootCertKey: want},
			}, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				// Created by another replica meanwhile: compare and update on the next try.
				return apierrors.NewConflict(corev1.Resource("configmaps"), api.RootCertConfigMap, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		if cm.Data[api.RootCertKey] == want {
			return nil
		}
		cm = cm.DeepCopy()
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[api.RootCertKey] = want
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("ca: publish trust bundle in ConfigMap %s/%s: %w", c.opts.Namespace, api.RootCertConfigMap, err)
	}
	return nil
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func sameCerts(a, b []*x509.Certificate) bool {
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
