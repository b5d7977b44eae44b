package probe

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookscope/hookscope/chaos/backend"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/certs"
)

// serveTLS starts a TLS server on loopback that completes handshakes with cert.
// serve accepts connections on a loopback port until the test ends,
// handing each to handle.
func serve(t testing.TB, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// serveTLS completes a handshake with cert, then closes.
func serveTLS(t testing.TB, cert tls.Certificate) netip.AddrPort {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	return serve(t, func(c net.Conn) {
		_ = tls.Server(c, cfg).Handshake()
		c.Close()
	})
}

func TestProbeNamesTheReasonAsTheAPIServerWould(t *testing.T) {
	ca, err := certs.NewCA("probe-ca")
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewCA("other-ca")
	if err != nil {
		t.Fatal(err)
	}
	const name = "hook.webhooks.svc"
	now := time.Now()
	mk := func(c *certs.CA, dns string, from, to time.Time) tls.Certificate {
		cert, err := c.Serving([]string{dns}, nil, from, to)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}

	closed := closedPort(t)

	// A server that accepts TCP and never answers the ClientHello.
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	silent := serve(t, func(c net.Conn) {
		<-stop
		c.Close()
	})

	cases := []struct {
		name       string
		target     netip.AddrPort
		want       findings.Class
		wantDetail string
	}{
		{"valid", serveTLS(t, mk(ca, name, now.Add(-time.Hour), now.Add(time.Hour))), findings.Healthy, ""},
		{"expired", serveTLS(t, mk(ca, name, now.Add(-48*time.Hour), now.Add(-time.Hour))), findings.CertExpired, "x509: certificate has expired or is not yet valid: current time"},
		{"not yet valid", serveTLS(t, mk(ca, name, now.Add(time.Hour), now.Add(48*time.Hour))), findings.CertNotYetValid, "x509: certificate has expired or is not yet valid"},
		{"other CA", serveTLS(t, mk(other, name, now.Add(-time.Hour), now.Add(time.Hour))), findings.UnknownAuthority, "x509: certificate signed by unknown authority"},
		{"wrong name", serveTLS(t, mk(ca, "other.webhooks.svc", now.Add(-time.Hour), now.Add(time.Hour))), findings.HostnameMismatch, "x509: certificate is valid for other.webhooks.svc"},
		{"refused", closed, findings.ConnectionRefused, "connection refused"},
		{"silent", silent, findings.HandshakeTimeout, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Probe(context.Background(), c.target, name, ca.PEM, 500*time.Millisecond)
			if r.Class != c.want {
				t.Fatalf("class = %s (%s), want %s", r.Class, r.Detail, c.want)
			}
			if !strings.Contains(r.Detail, c.wantDetail) {
				t.Errorf("detail = %q, want it to contain %q", r.Detail, c.wantDetail)
			}
			if c.want == findings.CertExpired && (r.Leaf == nil || !r.Leaf.NotAfter.Before(now)) {
				t.Errorf("leaf window not recorded: %+v", r.Leaf)
			}
		})
	}
}

func TestProbeRejectsABundleWithoutCertificates(t *testing.T) {
	r := Probe(context.Background(), netip.MustParseAddrPort("127.0.0.1:1"), "x.y.svc", []byte("not pem"), time.Second)
	if r.Class != findings.UnknownAuthority || !strings.Contains(r.Detail, "caBundle") {
		t.Fatalf("got %s %q, want findings.UnknownAuthority naming the caBundle", r.Class, r.Detail)
	}
}

// TestReviewProbeTimesTheAnswer runs the review probe against the game
// day's real admission server: a fast answer is findings.Healthy and answers the
// probe's UID; an answer slower than the threshold, or none within the
// probe's timeout, is findings.SlowResponse. Without the option the server sees no
// request at all.
func TestReviewProbeTimesTheAnswer(t *testing.T) {
	ca, err := certs.NewCA("review-ca")
	if err != nil {
		t.Fatal(err)
	}
	const name = "hook.webhooks.svc"
	cert, err := ca.Serving([]string{name}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := backend.Serve(ln, cert)
	defer srv.Close()
	target := ln.Addr().(*net.TCPAddr).AddrPort()

	if r := Probe(context.Background(), target, name, ca.PEM, time.Second); r.Class != findings.Healthy || srv.Requests() != 0 || r.Response != 0 {
		t.Fatalf("plain probe: %s, %d requests seen, response %s; want findings.Healthy and no request", r, srv.Requests(), r.Response)
	}
	cases := []struct {
		name  string
		delay time.Duration
		want  findings.Class
	}{
		{"fast", 0, findings.Healthy},
		{"slow", 300 * time.Millisecond, findings.SlowResponse},
		{"no answer in time", 3 * time.Second, findings.SlowResponse},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv.SetDelay(c.delay)
			before := srv.Requests()
			r := Run(context.Background(), target, Options{ServerName: name, CABundle: ca.PEM, Timeout: time.Second, Review: &Review{Path: "/validate", SlowAfter: 200 * time.Millisecond, SideEffects: "None"}})
			if r.Class != c.want {
				t.Fatalf("class %s (%s), want %s", r.Class, r.Detail, c.want)
			}
			if srv.Requests() != before+1 {
				t.Errorf("the server saw %d reviews, want 1", srv.Requests()-before)
			}
			if c.delay == 0 && (!r.ReviewAnswered || r.ResponseStatus != 200 || r.Response <= 0) {
				t.Errorf("fast answer: answered %v, status %d, time %s", r.ReviewAnswered, r.ResponseStatus, r.Response)
			}
			if c.want == findings.SlowResponse && (r.Response < 200*time.Millisecond || !strings.Contains(r.Detail, "review probe")) {
				t.Errorf("slow answer: time %s, detail %q", r.Response, r.Detail)
			}
		})
	}
}

// TestOwnKnowsTheProbeBeforeItConnects: a probe of a refused port is
// recorded as the agent's own connection even though the dial fails (the
// data plane sees the kernel's refusal before the dial returns).
func TestOwnKnowsTheProbeBeforeItConnects(t *testing.T) {
	closed := closedPort(t)
	own := NewOwn()
	r := Run(context.Background(), closed, Options{ServerName: "x.y.svc", Timeout: time.Second, Own: own})
	if r.Class != findings.ConnectionRefused {
		t.Fatalf("class %s (%s), want ConnectionRefused", r.Class, r.Detail)
	}
	if own.Len() != 1 {
		t.Fatalf("own connections: %d, want the refused probe's", own.Len())
	}
	var port uint16
	for k := range own.conns {
		port = k.port
	}
	client := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	if !own.Is(client, closed) {
		t.Errorf("Is(%s, %s) = false for the probe's own connection", client, closed)
	}
	if own.Is(netip.AddrPortFrom(client.Addr(), port+1), closed) || own.Is(client, netip.AddrPortFrom(closed.Addr(), closed.Port()+1)) {
		t.Error("Is reports a connection that is not the probe's")
	}
}

// closedPort is a loopback port with nothing listening: bound, learnt,
// closed.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// portMarks records the kernel's probe ports.
type portMarks struct {
	mu     sync.Mutex
	marked map[uint16]bool
	ever   int
}

func (m *portMarks) MarkProbePort(p uint16) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.marked[p] = true
	m.ever++
	return nil
}

func (m *portMarks) UnmarkProbePort(p uint16) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.marked, p)
	return nil
}

// TestProbePortReleased: once a probe's socket is closed its port is free
// for any client on the host, the API server's too. The kernel stops
// filing the port's SYNs as a probe's at once; the agent still knows the
// connection for the moment its events take to arrive.
func TestProbePortReleased(t *testing.T) {
	closed := closedPort(t)
	marks := &portMarks{marked: map[uint16]bool{}}
	own := NewOwn()
	own.MarkInKernel(marks)
	for range 3 {
		if r := Run(context.Background(), closed, Options{ServerName: "x.y.svc", Timeout: time.Second, Own: own}); r.Class != findings.ConnectionRefused {
			t.Fatalf("class %s (%s), want ConnectionRefused", r.Class, r.Detail)
		}
	}
	if marks.ever != 3 || len(marks.marked) != 0 {
		t.Errorf("%d ports marked, %d still marked after the probes ended; want 3 and none", marks.ever, len(marks.marked))
	}
	for k, c := range own.conns {
		if !own.Is(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), k.port), closed) {
			t.Errorf("the probe from port %d is forgotten before its events can arrive", k.port)
		}
		if time.Until(c.until) > ownLinger {
			t.Errorf("the probe from port %d is remembered until %s, more than %s after it ended", k.port, c.until.Format(time.RFC3339Nano), ownLinger)
		}
	}
}

// TestCertExpiringSoon: a certificate that verifies but expires within the
// horizon is CertExpiringSoon; a renewed one is Healthy.
func TestCertExpiringSoon(t *testing.T) {
	ca, err := certs.NewCA("soon-ca")
	if err != nil {
		t.Fatal(err)
	}
	const name = "hook.ns.svc"
	now := time.Now()
	serve := func(notAfter time.Time) netip.AddrPort {
		cert, err := ca.Serving([]string{name}, nil, now.Add(-time.Hour), notAfter)
		if err != nil {
			t.Fatal(err)
		}
		return serveTLS(t, cert)
	}
	o := Options{ServerName: name, CABundle: ca.PEM, Timeout: time.Second, CertHorizon: 48 * time.Hour}
	if r := Run(context.Background(), serve(now.Add(24*time.Hour)), o); r.Class != findings.CertExpiringSoon || !strings.Contains(r.Detail, "horizon 48h0m0s") {
		t.Errorf("expiring in 24h: %s", r)
	}
	if r := Run(context.Background(), serve(now.Add(90*24*time.Hour)), o); r.Class != findings.Healthy {
		t.Errorf("renewed: %s", r)
	}
}

// TestProbeNamesWhatIsNotTheWebhook: a backend that speaks plain HTTP, or
// closes the connection without a word (a sidecar or proxy in front of the
// webhook), is NotTheWebhook, not a TLS failure of the webhook's.
func TestProbeNamesWhatIsNotTheWebhook(t *testing.T) {
	plain := serve(t, func(c net.Conn) {
		defer c.Close()
		_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
	})
	closes := serve(t, func(c net.Conn) {
		// Read the whole ClientHello, then close: a FIN, the API server's
		// "EOF" (closing with it unread would be a reset).
		buf := make([]byte, 64<<10)
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		c.Close()
	})
	for name, target := range map[string]netip.AddrPort{"plain HTTP": plain, "closes": closes} {
		if r := Probe(context.Background(), target, "x.y.svc", nil, time.Second); r.Class != findings.NotTheWebhook {
			t.Errorf("%s: %s, want NotTheWebhook", name, r)
		}
	}
}
