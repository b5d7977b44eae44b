// Package certs makes the certificates of a test run: a CA whose PEM goes in
// a webhook's caBundle, and serving certificates with any validity window,
// including ones that expired or are not valid yet (openssl req cannot
// backdate; crypto/x509 can), and ones the API server's client rejects for
// their quality (quality.go).
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// CA signs serving certificates.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
	PEM  []byte // the caBundle
	// chain is what a server sends after a leaf this CA signs: nothing for
	// a root, the intermediate itself (and what its own signer sends) for
	// an intermediate.
	chain [][]byte
}

// CAOption changes the CA certificate NewCA makes.
type CAOption func(*x509.Certificate)

// Validity makes the CA valid from notBefore to notAfter: a CA that has
// expired, or expires soon, for the caBundle checks.
func Validity(notBefore, notAfter time.Time) CAOption {
	return func(c *x509.Certificate) { c.NotBefore, c.NotAfter = notBefore, notAfter }
}

// NewCA makes a CA with an ECDSA P-256 key, valid from an hour ago for two
// years, unless an option says otherwise.
func NewCA(name string, opts ...CAOption) (*CA, error) {
	key, err := newKey(0)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	return selfSigned(name, key, opts)
}

// NewRSACA makes a CA like NewCA with an RSA key of bits bits, as many
// older PKIs (and the SHA1-RSA chains the API server rejects) have.
func NewRSACA(name string, bits int, opts ...CAOption) (*CA, error) {
	key, err := newKey(bits)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	return selfSigned(name, key, opts)
}

func selfSigned(name string, key crypto.Signer, opts []CAOption) (*CA, error) {
	tmpl := caTemplate(name)
	for _, o := range opts {
		o(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("signing CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

func caTemplate(name string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

// Intermediate makes a CA that ca signs, valid from an hour ago for a
// year. A serving certificate it signs is served with it (the full chain)
// unless LeafOnly says otherwise.
func (ca *CA) Intermediate(name string, opts ...ServingOption) (*CA, error) {
	tmpl := caTemplate(name)
	tmpl.NotAfter = tmpl.NotBefore.Add(365 * 24 * time.Hour)
	is := &issue{tmpl: tmpl}
	der, key, cert, err := ca.sign(is, opts)
	if err != nil {
		return nil, fmt.Errorf("intermediate %q: %w", name, err)
	}
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		chain: append([][]byte{der}, ca.chain...)}, nil
}

// Serving makes a server certificate for the DNS names and IPs, valid from
// notBefore to notAfter, signed with SHA-256 and an ECDSA key unless an
// option says otherwise.
func (ca *CA) Serving(dnsNames []string, ips []net.IP, notBefore, notAfter time.Time, opts ...ServingOption) (tls.Certificate, error) {
	cn := "webhook"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	is := &issue{tmpl: &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}}
	der, key, leaf, err := ca.sign(is, opts)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("serving certificate: %w", err)
	}
	chain := [][]byte{der}
	if !is.leafOnly {
		chain = append(chain, ca.chain...)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// sign applies opts to is, makes the key and has ca sign the certificate.
func (ca *CA) sign(is *issue, opts []ServingOption) ([]byte, crypto.Signer, *x509.Certificate, error) {
	for _, o := range opts {
		o(is)
	}
	key, err := newKey(is.rsaBits)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generating key: %w", err)
	}
	if is.sha1 {
		is.tmpl.SignatureAlgorithm = sha1Algorithm(ca.key)
	}
	der, err := x509.CreateCertificate(rand.Reader, is.tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("signing: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parsing: %w", err)
	}
	return der, key, cert, nil
}

// newKey is an RSA key of bits bits, or an ECDSA P-256 key when bits is 0.
func newKey(bits int) (crypto.Signer, error) {
	if bits > 0 {
		return rsa.GenerateKey(rand.Reader, bits)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// Pool returns a cert pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return n
}
