package agent

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hookscope/hookscope/internal/certs"
)

// serveTLS starts a TLS server on loopback that completes handshakes with cert.
func serveTLS(t testing.TB, cert tls.Certificate) netip.AddrPort {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
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
			go func() {
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
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

	// A port with nothing listening: bind, learn the port, close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()

	// A server that accepts TCP and never answers the ClientHello.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	cases := []struct {
		name       string
		target     netip.AddrPort
		want       FailureClass
		wantDetail string
	}{
		{"valid", serveTLS(t, mk(ca, name, now.Add(-time.Hour), now.Add(time.Hour))), Healthy, ""},
		{"expired", serveTLS(t, mk(ca, name, now.Add(-48*time.Hour), now.Add(-time.Hour))), CertExpired, "x509: certificate has expired or is not yet valid: current time"},
		{"not yet valid", serveTLS(t, mk(ca, name, now.Add(time.Hour), now.Add(48*time.Hour))), CertNotYetValid, "x509: certificate has expired or is not yet valid"},
		{"other CA", serveTLS(t, mk(other, name, now.Add(-time.Hour), now.Add(time.Hour))), UnknownAuthority, "x509: certificate signed by unknown authority"},
		{"wrong name", serveTLS(t, mk(ca, "other.webhooks.svc", now.Add(-time.Hour), now.Add(time.Hour))), HostnameMismatch, "x509: certificate is valid for other.webhooks.svc"},
		{"refused", closed, ConnectionRefused, "connection refused"},
		{"silent", silent.Addr().(*net.TCPAddr).AddrPort(), HandshakeTimeout, ""},
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
			if c.want == CertExpired && (r.Leaf == nil || !r.Leaf.NotAfter.Before(now)) {
				t.Errorf("leaf window not recorded: %+v", r.Leaf)
			}
		})
	}
}

func TestProbeRejectsABundleWithoutCertificates(t *testing.T) {
	r := Probe(context.Background(), netip.MustParseAddrPort("127.0.0.1:1"), "x.y.svc", []byte("not pem"), time.Second)
	if r.Class != UnknownAuthority || !strings.Contains(r.Detail, "caBundle") {
		t.Fatalf("got %s %q, want UnknownAuthority naming the caBundle", r.Class, r.Detail)
	}
}
