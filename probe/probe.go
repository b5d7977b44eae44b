// Package probe calls a webhook backend the way the API server does and
// names the reason the call would fail, in the API server's words: TCP to
// the endpoint, TLS with the Service's DNS name and the webhook's caBundle
// as the only roots. It reads the served chain, so it can say why a
// certificate does not verify; it sends no request unless asked to (the
// opt-in review probe).
package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/hookscope/hookscope/findings"
)

// Result is what one probe of a backend found.
type Result struct {
	Target     netip.AddrPort
	ServerName string
	Start      time.Time
	Class      findings.Class
	// Detail is the verification or dial error, in Go's (and so the API
	// server's) words.
	Detail    string
	Handshake time.Duration
	Leaf      *findings.Certificate
	// Response is, for a review probe, the time from sending the
	// AdmissionReview to the webhook's response headers; ResponseStatus is
	// its HTTP status and ReviewAnswered whether the body was an
	// AdmissionReview answering our request's UID.
	Response       time.Duration
	ResponseStatus int
	ReviewAnswered bool
}

// Options say how to probe.
type Options struct {
	// ServerName is the name the serving certificate must carry.
	ServerName string
	// CABundle is the webhook's caBundle: the only roots trusted (the
	// system roots when empty).
	CABundle []byte
	// Timeout bounds the whole probe.
	Timeout time.Duration
	// Review, when set, also sends one AdmissionReview and times the answer.
	Review *Review
	// Own records the probe's connection before it is dialled, so that the
	// data plane does not take it for the API server's.
	Own *Own
	// CertHorizon: a served certificate that verifies but expires sooner
	// than this is CertExpiringSoon (0: not judged).
	CertHorizon time.Duration
	// SkipVerify: the API server does not verify the certificate (an
	// APIService with insecureSkipTLSVerify): only the connection and the
	// handshake are judged.
	SkipVerify bool
}

// Probe calls target as the API server would and names the reason it
// would fail; it sends no request: a probe never changes anything.
func Probe(ctx context.Context, target netip.AddrPort, serverName string, caBundle []byte, timeout time.Duration) Result {
	return Run(ctx, target, Options{ServerName: serverName, CABundle: caBundle, Timeout: timeout})
}

// Run probes target with o. It completes the handshake without trusting
// the chain, so it can read the served certificate, then verifies it
// exactly as the API server would.
func Run(ctx context.Context, target netip.AddrPort, o Options) Result {
	r := Result{Target: target, ServerName: o.ServerName, Start: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	var roots *x509.CertPool
	if len(o.CABundle) > 0 {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(o.CABundle) {
			r.Class, r.Detail = findings.UnknownAuthority, "caBundle holds no PEM certificate"
			return r
		}
	}
	var verifyErr error
	var served []*x509.Certificate
	cfg := &tls.Config{
		ServerName:         o.ServerName,
		InsecureSkipVerify: true, // verified below, with the chain in hand
		VerifyConnection: func(cs tls.ConnectionState) error {
			served = cs.PeerCertificates
			r.Leaf, verifyErr = verifyChain(cs, o.ServerName, roots)
			return nil
		},
	}
	raw, done, err := o.Own.dial(ctx, target)
	defer done() // after raw.Close, deferred below
	if err != nil {
		r.Class, r.Detail = classifyDial(err), err.Error()
		if r.Class == findings.HandshakeTimeout { // no handshake began: the SYN went unanswered
			r.Class = findings.ConnectTimeout
		}
		return r
	}
	defer raw.Close()
	conn := tls.Client(raw, cfg)
	hs := time.Now()
	err = conn.HandshakeContext(ctx)
	r.Handshake = time.Since(hs)
	if err != nil {
		r.Class, r.Detail = classifyHandshake(err), err.Error()
		if errors.Is(err, io.EOF) {
			r.Detail = "EOF: the backend closed the connection after the ClientHello without a TLS answer (something other than the webhook takes it: a sidecar or a proxy)"
		}
		return r
	}
	if verifyErr != nil && !o.SkipVerify {
		_ = conn.Close()
		r.Class, r.Detail = explainVerify(verifyErr, served, o.CABundle, roots, time.Now())
		return r
	}
	r.Class = findings.Healthy
	if r.Leaf == nil { // not verified (SkipVerify), and the chain did not parse
		_ = conn.Close()
		return r
	}
	if left := time.Until(r.Leaf.NotAfter); o.CertHorizon > 0 && left < o.CertHorizon && !o.SkipVerify {
		r.Class = findings.CertExpiringSoon
		r.Detail = fmt.Sprintf("the served certificate %q expires at %s, in %s (horizon %s)", r.Leaf.Subject,
			r.Leaf.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Minute), o.CertHorizon)
	}
	if o.Review != nil {
		if d, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(d)
		}
		o.Review.send(conn, o.ServerName, &r)
	}
	_ = conn.Close()
	return r
}

// verifyChain reads the served leaf and verifies the chain as the API
// server's client does.
func verifyChain(cs tls.ConnectionState, serverName string, roots *x509.CertPool) (*findings.Certificate, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errors.New("server sent no certificate")
	}
	leaf := cs.PeerCertificates[0]
	window := &findings.Certificate{Subject: leaf.Subject.String(), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{DNSName: serverName, Roots: roots, Intermediates: inter})
	return window, err
}

// String is a one-line summary for logs.
func (r Result) String() string {
	s := fmt.Sprintf("probe %s (%s): %s", r.Target, r.ServerName, r.Class)
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	return s
}

// dialTimeout reports whether err is a timeout.
func dialTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// ResolveURL is the address the API server dials for a webhook URL: its
// host (resolved, when a name) and port (443 by default).
func ResolveURL(ctx context.Context, raw string) (netip.AddrPort, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("webhook url: %w", err)
	}
	port := uint16(443)
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("webhook url %s: port %q", u.Redacted(), p)
		}
		port = uint16(n)
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
		return netip.AddrPortFrom(ip, port), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dial tcp: lookup %s: %w", u.Hostname(), err)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), port), nil
}
