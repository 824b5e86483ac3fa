package rig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// certPair is a certificate and its key, PEM-encoded.
type certPair struct {
	cert, key []byte
	parsed    *x509.Certificate
	priv      *ecdsa.PrivateKey
}

// newCA makes a self-signed CA valid for a day: long enough for any test run.
func newCA(name string) (*certPair, error) {
	return newCert(name, nil, nil, nil)
}

// newServerCert makes a server certificate for the given addresses and names,
// signed by ca.
func newServerCert(ca *certPair, cn string, ips []net.IP, dns []string) (*certPair, error) {
	return newCert(cn, ca, ips, dns)
}

func newCert(cn string, ca *certPair, ips []net.IP, dns []string) (*certPair, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("rig: generating key for %s: %w", cn, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"dhctl e2e rig"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	parent, signer := tmpl, priv
	if ca == nil {
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		parent, signer = ca.parsed, ca.priv
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &priv.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("rig: signing certificate for %s: %w", cn, err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return &certPair{
		cert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		parsed: parsed,
		priv:   priv,
	}, nil
}
