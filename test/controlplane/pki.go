package controlplane

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"time"
)

// apiServerDNSNames are the DNS names in the apiserver serving certificate.
var apiServerDNSNames = []string{
	"localhost",
	"kubernetes",
	"kubernetes.default",
	"kubernetes.default.svc",
	"kubernetes.default.svc.cluster.local",
}

// pki is the key material of one control plane, PEM encoded.
type pki struct {
	caCert, caKey           []byte
	servingCert, servingKey []byte
	saKey                   []byte // RSA 2048 service-account signing key (PKCS#1)
}

// certValidity is long enough for any test run or demo session.
const certValidity = 7 * 24 * time.Hour

// generatePKI creates a CA, an apiserver serving certificate signed by it for
// 127.0.0.1, the given extra IPs and the in-cluster names, and a service
// account signing key.
func generatePKI(ips []net.IP) (pki, error) {
	now := time.Now().Add(-time.Hour) // tolerate clock skew
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pki{}, fmt.Errorf("pki: %w", err)
	}
	caSerial, err := newSerial()
	if err != nil {
		return pki{}, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          caSerial,
		Subject:               pkix.Name{CommonName: "weft-test-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return pki{}, fmt.Errorf("pki: ca: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return pki{}, fmt.Errorf("pki: ca: %w", err)
	}

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pki{}, fmt.Errorf("pki: %w", err)
	}
	srvSerial, err := newSerial()
	if err != nil {
		return pki{}, err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: srvSerial,
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now,
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     apiServerDNSNames,
		IPAddresses:  dedupIPs(append([]net.IP{net.IPv4(127, 0, 0, 1)}, ips...)),
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, srvKey.Public(), caKey)
	if err != nil {
		return pki{}, fmt.Errorf("pki: serving cert: %w", err)
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return pki{}, fmt.Errorf("pki: service account key: %w", err)
	}

	p := pki{
		caCert:      pemEncode("CERTIFICATE", caDER),
		servingCert: pemEncode("CERTIFICATE", srvDER),
		saKey:       pemEncode("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)),
	}
	if p.caKey, err = marshalKey(caKey); err != nil {
		return pki{}, err
	}
	if p.servingKey, err = marshalKey(srvKey); err != nil {
		return pki{}, err
	}
	return p, nil
}

func marshalKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("pki: marshal key: %w", err)
	}
	return pemEncode("PRIVATE KEY", der), nil
}

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// newSerial returns a random 128-bit certificate serial number.
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("pki: serial: %w", err)
	}
	return n, nil
}

func dedupIPs(ips []net.IP) []net.IP {
	var out []net.IP
	seen := make(map[string]bool)
	for _, ip := range ips {
		if ip == nil || seen[ip.String()] {
			continue
		}
		seen[ip.String()] = true
		out = append(out, ip)
	}
	return out
}

// firstServiceIP returns the first usable address of a service CIDR (the
// network address plus one), which Kubernetes gives to the kubernetes Service.
func firstServiceIP(cidr string) (net.IP, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("service cidr: %w", err)
	}
	first := p.Masked().Addr().Next()
	if !first.IsValid() || !p.Contains(first) {
		return nil, fmt.Errorf("service cidr %s has no usable address", cidr)
	}
	return net.IP(first.AsSlice()), nil
}
