//go:build linux

package chaos

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/hookscope/hookscope/internal/certs"
)

// The webhook's serving certificates: the valid one its server starts with,
// and one broken in each way a game day injects (expired, not yet valid,
// expiring soon, for another name, from another CA, signed with SHA-1,
// naming the host only in the Common Name, served without its
// intermediate).

// ServerName is the name the API server verifies: <service>.<namespace>.svc,
// or the pod's IP for a webhook that calls a URL holding it.
func (w *Webhook) ServerName() string {
	if w.Spec.URL {
		return w.PodIP.String()
	}
	return w.Service + "." + w.Namespace + ".svc"
}

// serving is a serving certificate for names, valid from notBefore to
// notAfter; for a webhook that calls a URL, a name that is an IP address
// goes in as one.
func (w *Webhook) serving(ca *certs.CA, names []string, notBefore, notAfter time.Time, opts ...certs.ServingOption) (tls.Certificate, error) {
	var dns []string
	var ips []net.IP
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	return ca.Serving(dns, ips, notBefore, notAfter, opts...)
}

// ValidCertificate is a serving certificate valid for a year, as
// cert-manager issues them: beyond the agent's expiring-soon horizon.
func (w *Webhook) ValidCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.serving(w.CA, []string{w.ServerName()}, now.Add(-time.Hour), now.Add(365*24*time.Hour))
}

// ExpiredCertificate is a serving certificate that expired an hour ago.
func (w *Webhook) ExpiredCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.serving(w.CA, []string{w.ServerName()}, now.Add(-90*24*time.Hour), now.Add(-time.Hour))
}

// NotYetValidCertificate is a serving certificate valid from tomorrow.
func (w *Webhook) NotYetValidCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.serving(w.CA, []string{w.ServerName()}, now.Add(24*time.Hour), now.Add(365*24*time.Hour))
}

// ExpiringCertificate is a serving certificate that expires in d.
func (w *Webhook) ExpiringCertificate(d time.Duration) (tls.Certificate, error) {
	now := time.Now()
	return w.serving(w.CA, []string{w.ServerName()}, now.Add(-30*24*time.Hour), now.Add(d))
}

// WrongNameCertificate is a valid certificate for another Service's name.
func (w *Webhook) WrongNameCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.serving(w.CA, []string{"other-webhook." + w.Namespace + ".svc"}, now.Add(-time.Hour), now.Add(365*24*time.Hour))
}

// OtherCACertificate is a valid certificate for the right name, signed by
// a CA the webhook's caBundle does not hold (a rotated CA).
func (w *Webhook) OtherCACertificate() (tls.Certificate, error) {
	other, err := certs.NewCA("hookscope-chaos-rotated-" + w.Spec.Name)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	return w.serving(other, []string{w.ServerName()}, now.Add(-time.Hour), now.Add(365*24*time.Hour))
}

// SHA1Certificate is a valid certificate for the right name that the
// webhook's CA signs with SHA-1 (ECDSA-SHA1: the CA's key is ECDSA). The
// API server refuses it, and words it as an unknown authority.
func (w *Webhook) SHA1Certificate() (tls.Certificate, error) {
	now := time.Now()
	return w.serving(w.CA, []string{w.ServerName()}, now.Add(-time.Hour), now.Add(365*24*time.Hour), certs.SignedWithSHA1())
}

// SHA1RSAIntermediateCertificate is a certificate for the right name that
// an RSA intermediate CA signs with SHA1-RSA, served with that
// intermediate, which the webhook's CA signs with SHA-256: the SHA1-RSA
// text of kubernetes/kubernetes#110530, with the candidate authority the
// intermediate.
func (w *Webhook) SHA1RSAIntermediateCertificate() (tls.Certificate, error) {
	inter, err := w.CA.Intermediate("hookscope-chaos-rsa-intermediate-"+w.Spec.Name, certs.RSAKey(2048))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	return w.serving(inter, []string{w.ServerName()}, now.Add(-time.Hour), now.Add(365*24*time.Hour), certs.SignedWithSHA1())
}

// CommonNameOnlyCertificate is a valid certificate from the webhook's CA
// that names the server only in its Common Name, with no subjectAltName.
func (w *Webhook) CommonNameOnlyCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.serving(w.CA, []string{w.ServerName()}, now.Add(-time.Hour), now.Add(365*24*time.Hour), certs.CommonNameOnly())
}

// IncompleteChainCertificate is a valid certificate for the right name
// that an intermediate of the webhook's CA signs, served without that
// intermediate: the caBundle holds the root, and the chain does not reach
// it.
func (w *Webhook) IncompleteChainCertificate() (tls.Certificate, error) {
	inter, err := w.CA.Intermediate("hookscope-chaos-intermediate-" + w.Spec.Name)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	return w.serving(inter, []string{w.ServerName()}, now.Add(-time.Hour), now.Add(365*24*time.Hour), certs.LeafOnly())
}
