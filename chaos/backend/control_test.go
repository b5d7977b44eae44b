package backend

import (
	"bytes"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hookscope/hookscope/internal/certs"
)

// TestRemoteControl drives an Agent through its control API as the game
// day does on kind: no server until a certificate comes, then TLS with it,
// a closed port, a failing readiness probe, a counted review.
func TestRemoteControl(t *testing.T) {
	ca, err := certs.NewCA("control-test")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cert, err := ca.Serving([]string{"hook.ns.svc"}, nil, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	agent := NewAgent("127.0.0.1:0")
	api := httptest.NewServer(agent.Handler())
	defer api.Close()
	r := Remote{Base: api.URL}
	readyz := func() int {
		resp, err := http.Get(api.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if agent.Addr() != "" || readyz() != http.StatusServiceUnavailable {
		t.Fatalf("serving (%q) or ready before any certificate", agent.Addr())
	}
	if err := r.SetCertificate(cert); err != nil {
		t.Fatal(err)
	}
	addr := agent.Addr()
	if addr == "" || readyz() != http.StatusOK {
		t.Fatalf("not serving (%q) or not ready after the certificate", addr)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "hook.ns.svc"}}}
	review := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1"}}`)
	resp, err := client.Post("https://"+addr+"/validate", "application/json", bytes.NewReader(review))
	if err != nil {
		t.Fatalf("a review over TLS with the certificate sent: %v", err)
	}
	resp.Body.Close()
	if n, err := r.Requests(); err != nil || n != 1 {
		t.Errorf("requests %d (%v), want 1", n, err)
	}
	// Closing: the client's handshake ends in EOF, as behind a sidecar
	// that closes; then it answers again.
	handshake := func() error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "hook.ns.svc"})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := r.SetClosing(true); err != nil {
		t.Fatal(err)
	}
	if err := handshake(); err == nil || err.Error() != "EOF" {
		t.Errorf("handshake while closing: %v, want EOF", err)
	}
	if err := r.SetClosing(false); err != nil {
		t.Fatal(err)
	}
	if err := handshake(); err != nil {
		t.Errorf("handshake after closing=false: %v", err)
	}

	if err := r.SetServing(false); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("the webhook port %s still takes connections after serving=false", addr)
	}
	if n, err := r.Requests(); err != nil || n != 1 {
		t.Errorf("requests after closing %d (%v), want the 1 answered", n, err)
	}
	if err := r.SetServing(true); err != nil || agent.Addr() == "" {
		t.Fatalf("serving again: %v (addr %q)", err, agent.Addr())
	}
	if err := r.SetReady(false); err != nil || readyz() != http.StatusServiceUnavailable {
		t.Errorf("readiness after ready=false: %v, %d", err, readyz())
	}
	for _, err := range []error{r.SetDelay(10 * time.Millisecond), r.SetSilent(false), r.CloseConnections(), r.SetReady(true)} {
		if err != nil {
			t.Error(err)
		}
	}
	if err := (Remote{Base: api.URL}).SetDelay(-1); err != nil {
		t.Logf("negative delay: %v", err)
	}
	if _, err := r.do(http.MethodPut, "/certificate", []byte("not a pem")); err == nil {
		t.Error("a certificate that does not parse was taken")
	}
}
