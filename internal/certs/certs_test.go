package certs

import (
	"crypto/x509"
	"net"
	"testing"
	"time"
)

// TestServingOptions checks that each option makes the certificate it
// promises: the probe's and the game days' tests rely on them.
func TestServingOptions(t *testing.T) {
	ecCA, err := NewCA("ec-ca")
	if err != nil {
		t.Fatal(err)
	}
	rsaCA, err := NewRSACA("rsa-ca", 2048)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := rsaCA.Intermediate("inter", RSAKey(2048), SignedWithSHA1())
	if err != nil {
		t.Fatal(err)
	}
	from, to := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	names := []string{"hook.ns.svc"}
	cases := []struct {
		name    string
		ca      *CA
		opts    []ServingOption
		alg     x509.SignatureAlgorithm
		sans    bool
		chain   int
		keyBits int // 0: ECDSA
	}{
		{"default", ecCA, nil, x509.ECDSAWithSHA256, true, 1, 0},
		{"ECDSA CA, SHA-1", ecCA, []ServingOption{SignedWithSHA1()}, x509.ECDSAWithSHA1, true, 1, 0},
		{"RSA CA, SHA-1", rsaCA, []ServingOption{SignedWithSHA1()}, x509.SHA1WithRSA, true, 1, 0},
		{"Common Name only", ecCA, []ServingOption{CommonNameOnly()}, x509.ECDSAWithSHA256, false, 1, 0},
		{"RSA key", ecCA, []ServingOption{RSAKey(1024)}, x509.ECDSAWithSHA256, true, 1, 1024},
		{"intermediate, full chain", inter, nil, x509.SHA256WithRSA, true, 2, 0},
		{"intermediate, leaf only", inter, []ServingOption{LeafOnly()}, x509.SHA256WithRSA, true, 1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cert, err := c.ca.Serving(names, []net.IP{net.IPv4(127, 0, 0, 1)}, from, to, c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			leaf := cert.Leaf
			if leaf.SignatureAlgorithm != c.alg {
				t.Errorf("signature algorithm = %s, want %s", leaf.SignatureAlgorithm, c.alg)
			}
			if has := len(leaf.DNSNames)+len(leaf.IPAddresses) > 0; has != c.sans {
				t.Errorf("SANs %v %v, want some: %v", leaf.DNSNames, leaf.IPAddresses, c.sans)
			}
			if leaf.Subject.CommonName != names[0] {
				t.Errorf("Common Name = %q, want %q", leaf.Subject.CommonName, names[0])
			}
			if len(cert.Certificate) != c.chain {
				t.Errorf("served chain of %d, want %d", len(cert.Certificate), c.chain)
			}
			if bits := rsaBits(leaf); bits != c.keyBits {
				t.Errorf("RSA key of %d bits, want %d", bits, c.keyBits)
			}
		})
	}
	if inter.Cert.SignatureAlgorithm != x509.SHA1WithRSA || rsaBits(inter.Cert) != 2048 {
		t.Errorf("intermediate: %s, %d-bit RSA; want SHA1-RSA, 2048", inter.Cert.SignatureAlgorithm, rsaBits(inter.Cert))
	}
}

func rsaBits(c *x509.Certificate) int {
	if c.PublicKeyAlgorithm != x509.RSA {
		return 0
	}
	pub, _ := c.PublicKey.(interface{ Size() int })
	return pub.Size() * 8
}
