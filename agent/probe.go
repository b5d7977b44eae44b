package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
	// Response is, for a review probe, the time from sending the
	// AdmissionReview to the webhook's response headers; ResponseStatus is
	// its HTTP status and ReviewAnswered whether the body was an
	// AdmissionReview answering our request's UID.
	Response       time.Duration
	ResponseStatus int
	ReviewAnswered bool
	// Source is where the result comes from: "probe" (empty) or "ebpf"
	// (the wire's latency of real calls).
	Source string
}

// ReviewProbe makes a probe also send one AdmissionReview, as the API
// server does, to time the webhook's answer. It is opt-in: the webhook
// sees a request (dryRun, for a Namespace named hookscope-probe, which it
// may deny or fail to decode; only the time to its answer is judged).
type ReviewProbe struct {
	// Path is the webhook's path on its Service ("/" if empty).
	Path string
	// SlowAfter: an answer that takes longer is SlowResponse.
	SlowAfter time.Duration
}

// Probe calls target the way the API server calls a webhook backend: TCP to
// the endpoint IP, TLS with ServerName <service>.<namespace>.svc and the
// webhook's caBundle as the only roots (the system roots when the bundle is
// empty). It completes the handshake without trusting the chain, so it can
// read the served certificate, then verifies it exactly as the API server
// would and names the reason it would fail. It sends no request: a probe
// never changes anything.
func Probe(ctx context.Context, target netip.AddrPort, serverName string, caBundle []byte, timeout time.Duration) ProbeResult {
	return ProbeWithReview(ctx, target, serverName, caBundle, timeout, nil)
}

// ProbeWithReview is Probe that, when review is not nil and the handshake
// verifies, also sends one AdmissionReview over the connection and times
// the answer (HTTP/1.1, as a client without h2 would).
func ProbeWithReview(ctx context.Context, target netip.AddrPort, serverName string, caBundle []byte, timeout time.Duration, review *ReviewProbe) ProbeResult {
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
	if verifyErr != nil {
		_ = conn.Close()
		r.Class, r.Detail = classifyVerify(verifyErr, time.Now()), "tls: failed to verify certificate: "+verifyErr.Error()
		return r
	}
	r.Class = Healthy
	if review != nil {
		if d, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(d)
		}
		sendReview(conn, serverName, review, &r)
	}
	_ = conn.Close()
	return r
}

// maxReviewAnswer caps the answer a review probe reads.
const maxReviewAnswer = 1 << 20

// sendReview posts one AdmissionReview on conn and records the answer's
// time, status and whether it answered our UID; a slow answer, or none in
// time, is SlowResponse.
func sendReview(conn net.Conn, serverName string, review *ReviewProbe, r *ProbeResult) {
	var id [16]byte
	_, _ = rand.Read(id[:])
	uid := hex.EncodeToString(id[:])
	body, _ := json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1",
		"kind":       "AdmissionReview",
		"request": map[string]any{
			"uid":       uid,
			"kind":      map[string]string{"group": "", "version": "v1", "kind": "Namespace"},
			"resource":  map[string]string{"group": "", "version": "v1", "resource": "namespaces"},
			"name":      "hookscope-probe",
			"operation": "CREATE",
			"userInfo":  map[string]any{"username": "hookscope-probe"},
			"object":    map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]string{"name": "hookscope-probe"}},
			"dryRun":    true,
		},
	})
	path := review.Path
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequest(http.MethodPost, "https://"+serverName+path, bytes.NewReader(body))
	if err != nil {
		r.Detail = "review probe: " + err.Error()
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	err = req.Write(conn)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(bufio.NewReader(conn), req)
	}
	r.Response = time.Since(start)
	if err != nil {
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			r.Class = SlowResponse
			r.Detail = fmt.Sprintf("review probe: no answer in %s", r.Response.Round(time.Millisecond))
			return
		}
		r.Detail = "review probe: " + err.Error()
		return
	}
	defer resp.Body.Close()
	r.ResponseStatus = resp.StatusCode
	var answer struct {
		Response *struct {
			UID string `json:"uid"`
		} `json:"response"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, maxReviewAnswer)).Decode(&answer) == nil && answer.Response != nil {
		r.ReviewAnswered = answer.Response.UID == uid
	}
	if review.SlowAfter > 0 && r.Response >= review.SlowAfter {
		r.Class = SlowResponse
		r.Detail = fmt.Sprintf("review probe: answered HTTP %d in %s, above the %s threshold", resp.StatusCode, r.Response.Round(time.Millisecond), review.SlowAfter)
	}
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
