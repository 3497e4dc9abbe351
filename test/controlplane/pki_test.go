package controlplane

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
)

func TestGeneratePKI(t *testing.T) {
	extra := []net.IP{net.ParseIP("203.0.113.1"), net.ParseIP("198.19.0.1")}
	p, err := generatePKI(extra)
	if err != nil {
		t.Fatalf("generatePKI: %v", err)
	}
	ca := parseCert(t, p.caCert)
	if !ca.IsCA {
		t.Error("CA certificate is not a CA")
	}
	srv := parseCert(t, p.servingCert)
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	tests := []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1", true},
		{"203.0.113.1", true},
		{"198.19.0.1", true},
		{"localhost", true},
		{"kubernetes", true},
		{"kubernetes.default", true},
		{"kubernetes.default.svc", true},
		{"kubernetes.default.svc.cluster.local", true},
		{"10.0.0.1", false},
		{"example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			_, err := srv.Verify(x509.VerifyOptions{
				Roots:     roots,
				DNSName:   tt.host,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if (err == nil) != tt.ok {
				t.Errorf("verify for %s: err = %v, want ok=%v", tt.host, err, tt.ok)
			}
		})
	}

	if _, err := tls.X509KeyPair(p.servingCert, p.servingKey); err != nil {
		t.Errorf("serving key does not match certificate: %v", err)
	}
	if _, err := tls.X509KeyPair(p.caCert, p.caKey); err != nil {
		t.Errorf("CA key does not match certificate: %v", err)
	}

	block, _ := pem.Decode(p.saKey)
	if block == nil {
		t.Fatal("service account key is not PEM")
	}
	sa, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("service account key: %v", err)
	}
	if bits := sa.N.BitLen(); bits != 2048 {
		t.Errorf("service account key has %d bits, want 2048", bits)
	}
}

func TestGeneratePKIUniqueCA(t *testing.T) {
	a, err := generatePKI(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := generatePKI(nil)
	if err != nil {
		t.Fatal(err)
	}
	// A serving certificate must not verify against another control plane's CA.
	roots := x509.NewCertPool()
	roots.AddCert(parseCert(t, a.caCert))
	if _, err := parseCert(t, b.servingCert).Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"}); err == nil {
		t.Error("serving certificate verified against a foreign CA")
	}
}

func TestFirstServiceIP(t *testing.T) {
	tests := []struct {
		cidr    string
		want    string
		wantErr bool
	}{
		{cidr: "198.19.0.0/16", want: "198.19.0.1"},
		{cidr: "10.96.0.0/12", want: "10.96.0.1"},
		{cidr: "10.96.5.7/12", want: "10.96.0.1"},
		{cidr: "fd00:10:96::/112", want: "fd00:10:96::1"},
		{cidr: "10.0.0.0/32", wantErr: true},
		{cidr: "not-a-cidr", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.cidr, func(t *testing.T) {
			got, err := firstServiceIP(tt.cidr)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("firstServiceIP(%q) = %v, want error", tt.cidr, got)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("firstServiceIP(%q) = %v, %v; want %s", tt.cidr, got, err, tt.want)
			}
		})
	}
}

func parseCert(t *testing.T, pemData []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(pemData)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", pemData)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return c
}
