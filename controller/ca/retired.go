package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/pki"
)

// retiredRoot is a root no longer in the trust set, still published until until.
type retiredRoot struct {
	cert  *x509.Certificate
	until time.Time
}

// retiredEntry is the stored form of a retiredRoot, in KeyRetiredRoots.
type retiredEntry struct {
	KeepUntil   time.Time `json:"keepUntil"`
	Certificate string    `json:"certificate"` // one PEM CERTIFICATE block
}

// retiredState is the content of RetiredRootsSecret.
type retiredState struct {
	trusted []*x509.Certificate // the trust set when it was last written
	retired []retiredRoot
}

// syncRetired records in RetiredRootsSecret the roots that left the trust set: those of the
// previous trust set (prev, the one this replica signed with, and the one stored by the last
// writer) missing from trust, each kept until keep (or its own expiry). It drops the entries
// that have expired at now and stores trust as the new trust set. It is a read-modify-write with
// retry on conflicts, so that racing replicas merge their retirements; when two replicas retire
// the same root, the later end wins. It returns the retired roots stored, in their stored order.
func (c *CA) syncRetired(ctx context.Context, prev, trust []*x509.Certificate, keep, now time.Time) ([]retiredRoot, error) {
	secrets := c.opts.Client.CoreV1().Secrets(c.opts.Namespace)
	var out []retiredRoot
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sec, err := secrets.Get(ctx, RetiredRootsSecret, metav1.GetOptions{})
		exists := err == nil
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		var st retiredState
		if exists {
			st = c.decodeRetired(sec.Data)
		} else {
			// First start with persistence (or the Secret was deleted): the roots published so
			// far are the best record of the previous trust set.
			st.trusted = c.publishedRoots(ctx)
		}
		next := mergeRetired(st, append(slices.Clone(prev), st.trusted...), trust, keep, now)
		data, err := encodeRetired(next)
		if err != nil {
			return err
		}
		if exists && bytes.Equal(sec.Data[KeyRetiredRoots], data[KeyRetiredRoots]) &&
			bytes.Equal(sec.Data[KeyTrustedRoots], data[KeyTrustedRoots]) {
			out = next.retired
			return nil
		}
		if !exists {
			_, err = secrets.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Name:      RetiredRootsSecret,
					Namespace: c.opts.Namespace,
					Labels:    map[string]string{"app.kubernetes.io/managed-by": "weft-controller"},
				},
				Type: corev1.SecretTypeOpaque,
				Data: data,
			}, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				// Created by another replica meanwhile: merge with it on the next try.
				return apierrors.NewConflict(corev1.Resource("secrets"), RetiredRootsSecret, err)
			}
		} else {
			sec = sec.DeepCopy()
			if sec.Data == nil {
				sec.Data = map[string][]byte{}
			}
			sec.Data[KeyRetiredRoots], sec.Data[KeyTrustedRoots] = data[KeyRetiredRoots], data[KeyTrustedRoots]
			_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		}
		if err != nil {
			return err
		}
		for _, r := range next.retired {
			if !slices.ContainsFunc(st.retired, func(o retiredRoot) bool { return o.cert.Equal(r.cert) && o.until.Equal(r.until) }) {
				c.log.Info("retired a root: it stays in the trust bundle until the leaves it may have signed expire",
					"root", r.cert.Subject.String(), "keep_until", r.until)
			}
		}
		for _, r := range st.retired {
			if !slices.ContainsFunc(next.retired, func(o retiredRoot) bool { return o.cert.Equal(r.cert) }) {
				c.log.Info("dropped a retired root from the trust bundle", "root", r.cert.Subject.String(), "kept_until", r.until)
			}
		}
		out = next.retired
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ca: record retired roots in Secret %s/%s: %w", c.opts.Namespace, RetiredRootsSecret, err)
	}
	return out, nil
}

// mergeRetired returns st with the roots of prev missing from trust retired until keep (or
// their expiry, if sooner; an entry already there keeps the later end), the entries expired at
// now dropped and trust as the trust set.
func mergeRetired(st retiredState, prev, trust []*x509.Certificate, keep, now time.Time) retiredState {
	retired := slices.Clone(st.retired)
	for _, r := range prev {
		if slices.ContainsFunc(trust, r.Equal) {
			continue
		}
		until := ceilSecond(earliest(keep, r.NotAfter))
		if i := slices.IndexFunc(retired, func(x retiredRoot) bool { return x.cert.Equal(r) }); i >= 0 {
			if until.After(retired[i].until) {
				retired[i].until = until
			}
			continue
		}
		retired = append(retired, retiredRoot{cert: r, until: until})
	}
	retired = slices.DeleteFunc(retired, func(r retiredRoot) bool { return !now.Before(r.until) })
	return retiredState{trusted: slices.Clone(trust), retired: retired}
}

// decodeRetired parses the data of RetiredRootsSecret. Unreadable parts are logged and skipped
// rather than failing the CA: they would then block it for good, while losing them is only the
// behaviour without persistence.
func (c *CA) decodeRetired(data map[string][]byte) retiredState {
	var st retiredState
	if b := data[KeyTrustedRoots]; len(bytes.TrimSpace(b)) > 0 {
		certs, err := pki.ParseCertificates(b)
		if err != nil {
			c.log.Error("ignoring the unreadable previous trust set", "secret", c.opts.Namespace+"/"+RetiredRootsSecret, "key", KeyTrustedRoots, "err", err)
		}
		st.trusted = certs
	}
	if b := data[KeyRetiredRoots]; len(bytes.TrimSpace(b)) > 0 {
		var entries []retiredEntry
		if err := json.Unmarshal(b, &entries); err != nil {
			c.log.Error("ignoring the unreadable retired roots", "secret", c.opts.Namespace+"/"+RetiredRootsSecret, "key", KeyRetiredRoots, "err", err)
		}
		for i, e := range entries {
			certs, err := pki.ParseCertificates([]byte(e.Certificate))
			if err == nil && len(certs) != 1 {
				err = fmt.Errorf("%d certificates, want one", len(certs))
			}
			if err != nil || e.KeepUntil.IsZero() {
				c.log.Error("ignoring an unreadable retired root", "secret", c.opts.Namespace+"/"+RetiredRootsSecret, "key", KeyRetiredRoots, "entry", i, "err", err)
				continue
			}
			st.retired = append(st.retired, retiredRoot{cert: certs[0], until: e.KeepUntil})
		}
	}
	return st
}

// encodeRetired returns the data of RetiredRootsSecret for st.
func encodeRetired(st retiredState) (map[string][]byte, error) {
	entries := make([]retiredEntry, 0, len(st.retired))
	for _, r := range st.retired {
		entries = append(entries, retiredEntry{
			KeepUntil:   r.until.UTC(),
			Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.cert.Raw})),
		})
	}
	b, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return nil, err
	}
	return map[string][]byte{KeyRetiredRoots: b, KeyTrustedRoots: pki.EncodeCertificates(st.trusted)}, nil
}

// publishedRoots returns the roots in the ConfigMap api.RootCertConfigMap, or none when it is
// missing or unreadable.
func (c *CA) publishedRoots(ctx context.Context) []*x509.Certificate {
	cm, err := c.opts.Client.CoreV1().ConfigMaps(c.opts.Namespace).Get(ctx, api.RootCertConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	certs, err := pki.ParseCertificates([]byte(cm.Data[api.RootCertKey]))
	if err != nil {
		return nil
	}
	return certs
}

// ceilSecond rounds t up to a whole second, as stored.
func ceilSecond(t time.Time) time.Time {
	s := t.Truncate(time.Second)
	if s.Before(t) {
		s = s.Add(time.Second)
	}
	return s.UTC()
}
