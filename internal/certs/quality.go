package certs

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
)

// ServingOption changes a certificate Serving or Intermediate makes.
type ServingOption func(*issue)

// issue is a certificate being made, and how.
type issue struct {
	tmpl     *x509.Certificate
	rsaBits  int  // 0: an ECDSA P-256 key
	sha1     bool // signed with SHA-1
	leafOnly bool // served without the signing intermediates
}

// SignedWithSHA1 has the CA sign the certificate with SHA-1 (SHA1-RSA for
// an RSA CA, ECDSA-SHA1 for an ECDSA one). It exists only to reproduce the
// failure the API server reports for such a chain: Go (and so the API
// server since Kubernetes 1.24) refuses SHA-1 signatures, and calls it
// "certificate signed by unknown authority (possibly because of ...
// insecure algorithm SHA1-RSA ...)". Nothing should serve one.
func SignedWithSHA1() ServingOption { return func(i *issue) { i.sha1 = true } }

// CommonNameOnly makes a certificate that names its host only in its
// subject's Common Name, with no subjectAltName extension, as certificates
// made before SANs were required do. Go rejects it ("certificate relies on
// legacy Common Name field"): it exists to reproduce that failure.
func CommonNameOnly() ServingOption {
	return func(i *issue) {
		switch {
		case len(i.tmpl.DNSNames) > 0:
			i.tmpl.Subject.CommonName = i.tmpl.DNSNames[0]
		case len(i.tmpl.IPAddresses) > 0:
			i.tmpl.Subject.CommonName = i.tmpl.IPAddresses[0].String()
		}
		i.tmpl.DNSNames, i.tmpl.IPAddresses = nil, nil
	}
}

// RSAKey gives the certificate an RSA key of bits bits instead of ECDSA.
func RSAKey(bits int) ServingOption { return func(i *issue) { i.rsaBits = bits } }

// LeafOnly serves a certificate an intermediate signs without that
// intermediate: the incomplete chain a server configured with the leaf
// alone sends.
func LeafOnly() ServingOption { return func(i *issue) { i.leafOnly = true } }

// sha1Algorithm is the SHA-1 signature algorithm of a signer's key.
func sha1Algorithm(key crypto.Signer) x509.SignatureAlgorithm {
	if _, ok := key.(*rsa.PrivateKey); ok {
		return x509.SHA1WithRSA
	}
	return x509.ECDSAWithSHA1
}
