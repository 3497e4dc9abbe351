package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestRoundTripAndErrors(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := RandomSerial()
	if err != nil || serial.Sign() <= 0 {
		t.Fatalf("RandomSerial = %v, %v", serial, err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "t"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	certs, err := ParseCertificates(EncodeCertificates([]*x509.Certificate{cert, cert}))
	if err != nil || len(certs) != 2 {
		t.Fatalf("ParseCertificates = %d, %v", len(certs), err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	if _, err := ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, in, want string
		key            bool
	}{
		{"no certificate", "", "no PEM certificate", false},
		{"trailing data", string(EncodeCertificates([]*x509.Certificate{cert})) + "junk", "trailing data", false},
		{"no key", string(EncodeCertificates([]*x509.Certificate{cert})), "no PEM private key", true},
	} {
		var err error
		if tc.key {
			_, err = ParsePrivateKey([]byte(tc.in))
		} else {
			_, err = ParseCertificates([]byte(tc.in))
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
