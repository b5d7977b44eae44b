package probe

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/hookscope/hookscope/findings"
)

// explainVerify names a failed verification of the served chain as the
// API server's client failed it, and reads the chain for what Go's error
// leaves out: which certificate carries a SHA-1 signature Go refused
// (InsecureSignature, though Go words it as an unknown authority), a host
// named only in the Common Name (LegacyCommonName), or, for an unknown
// authority, the issuer that neither the server sent nor the caBundle
// holds.
func explainVerify(err error, served []*x509.Certificate, caBundle []byte, roots *x509.CertPool, now time.Time) (findings.Class, string) {
	class := classifyVerify(err, now)
	detail := "tls: failed to verify certificate: " + err.Error()
	switch class {
	case findings.HostnameMismatch:
		he, _ := errors.AsType[x509.HostnameError](err)
		if he.Certificate == nil || !commonNameOnly(he.Certificate, he.Host) {
			break
		}
		detail += fmt.Sprintf("; the served certificate %q names %s only in its Common Name and has no subjectAltName", he.Certificate.Subject, he.Host)
		// Go checks the name before the chain: say what the reissue must
		// not carry over.
		if w := walk(served, parseBundle(caBundle), roots); w.insecure != nil {
			detail += "; and SHA-1 must go too: " + w.insecure.String()
		}
		return findings.LegacyCommonName, detail
	case findings.UnknownAuthority:
		w := walk(served, parseBundle(caBundle), roots)
		if w.reached && w.insecure != nil {
			return findings.InsecureSignature, detail + "; " + w.insecure.String() + ": Go, and so the API server, refuses SHA-1 signatures; the caBundle is right"
		}
		if !w.reached && w.last != nil {
			detail += "; " + w.stop()
		}
	}
	return class, detail
}

// commonNameOnly reports whether Go refused c for host only because c
// names host in its Common Name and has no subjectAltName extension at
// all (x509.HostnameError's "relies on legacy Common Name field").
func commonNameOnly(c *x509.Certificate, host string) bool {
	cn := c.Subject.CommonName
	if cn == "" || hasSAN(c) {
		return false
	}
	if strings.EqualFold(cn, host) {
		return true
	}
	if net.ParseIP(host) != nil {
		return false
	}
	asSAN := *c // would it match as a DNS name? (wildcards too)
	asSAN.DNSNames = []string{cn}
	return asSAN.VerifyHostname(host) == nil
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

func hasSAN(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			return true
		}
	}
	return false
}

// parseBundle is the caBundle's certificates (those that parse).
func parseBundle(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for len(data) > 0 {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// chainWalk is how the served chain leads to the trusted roots (the
// caBundle, or the system's when it is empty) when SHA-1 signatures count:
// whether it reaches them, the first link signed with SHA-1, and where it
// stopped if it did not.
type chainWalk struct {
	reached  bool
	insecure *link
	last     *x509.Certificate
	bundle   []*x509.Certificate // nil: the system roots
}

// link is a certificate of the served chain and the one that signed it.
type link struct {
	child, parent  *x509.Certificate
	leaf, inBundle bool
}

func (l *link) String() string {
	what, where := "the served certificate", "served in the chain"
	if !l.leaf {
		what = "the served intermediate"
	}
	if l.inBundle {
		where = "in the caBundle"
	}
	return fmt.Sprintf("%s %q is signed with %s by %q (%s)", what, l.child.Subject, l.child.SignatureAlgorithm, l.parent.Subject, where)
}

// walk follows the served chain from its leaf to the roots as Go's chain
// building would if it accepted SHA-1: each certificate's signer is a
// bundle certificate or one the server sent, until one that verifies
// against roots on its own.
func walk(served, bundle []*x509.Certificate, roots *x509.CertPool) chainWalk {
	w := chainWalk{bundle: bundle}
	if len(served) == 0 {
		return w
	}
	cur := served[0]
	for range len(served) + 1 {
		if verifiesAlone(cur, roots) {
			w.reached = true
			return w
		}
		parent, weak := signerOf(cur, bundle, served)
		if parent == nil {
			w.last = cur
			return w
		}
		if weak && w.insecure == nil {
			w.insecure = &link{child: cur, parent: parent, leaf: cur == served[0], inBundle: holds(bundle, parent)}
		}
		cur = parent
	}
	return w
}

// stop says where a chain that does not reach the caBundle ends, and why
// that is not enough.
func (w chainWalk) stop() string {
	c, trusted := w.last, "the caBundle"
	if w.bundle == nil {
		trusted = "the system roots (no caBundle)"
	}
	if bytes.Equal(c.RawIssuer, c.RawSubject) {
		return fmt.Sprintf("the served chain ends at its root %q, which is not in %s", c.Subject, trusted)
	}
	for _, b := range w.bundle {
		// Claim another key only where the signature was checked: Go
		// refuses SHA-1 (signerOf checks it itself) and MD5 unchecked.
		_, refused := errors.AsType[x509.InsecureAlgorithmError](c.CheckSignatureFrom(b))
		refused = refused && c.SignatureAlgorithm != x509.SHA1WithRSA && c.SignatureAlgorithm != x509.ECDSAWithSHA1
		if bytes.Equal(b.RawSubject, c.RawIssuer) && !refused {
			return fmt.Sprintf("the caBundle holds a %q, but not the key that signed %q (a CA reissued under the same name)", b.Subject, c.Subject)
		}
	}
	return fmt.Sprintf("the served chain ends at %q, issued by %q, which the server does not send and is not in %s: if %q is an intermediate CA, serve it after the leaf (the full chain); if it is the root, put it in the caBundle",
		c.Subject, c.Issuer, trusted, c.Issuer)
}

// signerOf finds the certificate, of the bundle or the served chain, that
// signed c; weak says it signed with SHA-1.
func signerOf(c *x509.Certificate, bundle, served []*x509.Certificate) (signer *x509.Certificate, weak bool) {
	for _, set := range [][]*x509.Certificate{bundle, served} {
		for _, p := range set {
			if p.Equal(c) || !bytes.Equal(p.RawSubject, c.RawIssuer) {
				continue
			}
			if signedWithSHA1(c, p) {
				return p, true
			}
			if c.CheckSignatureFrom(p) == nil {
				return p, false
			}
		}
	}
	return nil, false
}

// signedWithSHA1 reports whether parent's key made c's SHA-1 signature:
// the check Go refuses to make (x509.InsecureAlgorithmError), made here so
// that the probe claims a SHA-1 failure only when SHA-1 is all that is
// wrong.
func signedWithSHA1(c, parent *x509.Certificate) bool {
	digest := sha1.Sum(c.RawTBSCertificate)
	switch pub := parent.PublicKey.(type) {
	case *rsa.PublicKey:
		return c.SignatureAlgorithm == x509.SHA1WithRSA && rsa.VerifyPKCS1v15(pub, crypto.SHA1, digest[:], c.Signature) == nil
	case *ecdsa.PublicKey:
		return c.SignatureAlgorithm == x509.ECDSAWithSHA1 && ecdsa.VerifyASN1(pub, digest[:], c.Signature)
	}
	return false
}

// verifiesAlone reports whether c chains to roots with nothing the server
// sent: it is a root, or a root signed it.
func verifiesAlone(c *x509.Certificate, roots *x509.CertPool) bool {
	_, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

func holds(set []*x509.Certificate, c *x509.Certificate) bool {
	for _, s := range set {
		if s.Equal(c) {
			return true
		}
	}
	return false
}
