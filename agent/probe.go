package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// ProbeResult is what one TLS probe of a backend found.
type ProbeResult struct {
	Target     netip.AddrPort
	ServerName string
	Start      time.Time
	// Local is the probe's own address, so its packets can be told apart
	// from the API server's on the wire.
	Local     netip.AddrPort
	Class     FailureClass
	Detail    string // the verification or dial error, in Go's (and so the API server's) words
	Handshake time.Duration
	Leaf      *CertificateWindow
}

// Probe calls target the way the API server calls a webhook backend: TCP to
// the endpoint IP, TLS with ServerName <service>.<namespace>.svc and the
// webhook's caBundle as the only roots (the system roots when the bundle is
// empty). It completes the handshake without trusting the chain, so it can
// read the served certificate, then verifies it exactly as the API server
// would and names the reason it would fail. It sends no request: a probe
// never changes anything.
func Probe(ctx context.Context, target netip.AddrPort, serverName string, caBundle []byte, timeout time.Duration) ProbeResult {
	r := ProbeResult{Target: target, ServerName: serverName, Start: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var roots *x509.CertPool
	if len(caBundle) > 0 {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(caBundle) {
			r.Class, r.Detail = UnknownAuthority, "caBundle holds no PEM certificate"
			return r
		}
	}
	var verifyErr error
	cfg := &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true, // verified below, with the chain in hand
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				verifyErr = errors.New("server sent no certificate")
				return nil
			}
			leaf := cs.PeerCertificates[0]
			r.Leaf = &CertificateWindow{Subject: leaf.Subject.String(), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, verifyErr = leaf.Verify(x509.VerifyOptions{DNSName: serverName, Roots: roots, Intermediates: inter})
			return nil
		},
	}
	d := &net.Dialer{}
	raw, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		r.Class, r.Detail = classifyDial(err), err.Error()
		return r
	}
	defer raw.Close()
	if a, ok := raw.LocalAddr().(*net.TCPAddr); ok {
		r.Local = a.AddrPort()
	}
	conn := tls.Client(raw, cfg)
	hs := time.Now()
	err = conn.HandshakeContext(ctx)
	r.Handshake = time.Since(hs)
	if err != nil {
		r.Class, r.Detail = classifyDial(err), err.Error()
		if r.Class == ConnectionRefused { // reset during the handshake
			r.Class = TLSHandshakeFailed
		}
		return r
	}
	_ = conn.Close()
	if verifyErr != nil {
		r.Class, r.Detail = classifyVerify(verifyErr, time.Now()), "tls: failed to verify certificate: "+verifyErr.Error()
		return r
	}
	r.Class = Healthy
	return r
}

// classifyVerify names an x509 verification error.
func classifyVerify(err error, now time.Time) FailureClass {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) {
		if inv.Reason == x509.Expired {
			// x509 uses one reason for both ends of the window.
			if inv.Cert != nil && now.Before(inv.Cert.NotBefore) {
				return CertNotYetValid
			}
			return CertExpired
		}
		return TLSHandshakeFailed
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return UnknownAuthority
	}
	var hn x509.HostnameError
	if errors.As(err, &hn) {
		return HostnameMismatch
	}
	return TLSHandshakeFailed
}

// classifyDial names a connect or handshake error.
func classifyDial(err error) FailureClass {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return ConnectionRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return HandshakeTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return HandshakeTimeout
	}
	return TLSHandshakeFailed
}

// String is a one-line summary for logs.
func (r ProbeResult) String() string {
	s := fmt.Sprintf("probe %s (%s): %s", r.Target, r.ServerName, r.Class)
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	return s
}
