//go:build linux

package chaos

import (
	"crypto/tls"
	"time"

	"github.com/hookscope/hookscope/internal/certs"
)

// The webhook's serving certificates: the valid one its server starts with,
// and one broken in each way a game day injects (expired, not yet valid,
// expiring soon, for another name, from another CA).

// ServerName is the name the API server verifies: <service>.<namespace>.svc.
func (w *Webhook) ServerName() string { return w.Service + "." + w.Namespace + ".svc" }

// ValidCertificate is a serving certificate valid for a year, as
// cert-manager issues them: beyond the agent's expiring-soon horizon.
func (w *Webhook) ValidCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.CA.Serving([]string{w.ServerName()}, nil, now.Add(-time.Hour), now.Add(365*24*time.Hour))
}

// ExpiredCertificate is a serving certificate that expired an hour ago.
func (w *Webhook) ExpiredCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.CA.Serving([]string{w.ServerName()}, nil, now.Add(-90*24*time.Hour), now.Add(-time.Hour))
}

// NotYetValidCertificate is a serving certificate valid from tomorrow.
func (w *Webhook) NotYetValidCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.CA.Serving([]string{w.ServerName()}, nil, now.Add(24*time.Hour), now.Add(365*24*time.Hour))
}

// ExpiringCertificate is a serving certificate that expires in d.
func (w *Webhook) ExpiringCertificate(d time.Duration) (tls.Certificate, error) {
	now := time.Now()
	return w.CA.Serving([]string{w.ServerName()}, nil, now.Add(-30*24*time.Hour), now.Add(d))
}

// WrongNameCertificate is a valid certificate for another Service's name.
func (w *Webhook) WrongNameCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.CA.Serving([]string{"other-webhook." + w.Namespace + ".svc"}, nil, now.Add(-time.Hour), now.Add(365*24*time.Hour))
}

// OtherCACertificate is a valid certificate for the right name, signed by
// a CA the webhook's caBundle does not hold (a rotated CA).
func (w *Webhook) OtherCACertificate() (tls.Certificate, error) {
	other, err := certs.NewCA("hookscope-chaos-rotated-" + w.Spec.Name)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	return other.Serving([]string{w.ServerName()}, nil, now.Add(-time.Hour), now.Add(365*24*time.Hour))
}
