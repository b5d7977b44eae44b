//go:build linux

package handshake_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/internal/certs"
	"github.com/hookscope/hookscope/internal/podnet"
)

// These tests load the programs into the running kernel, attach them to the
// host side of a real veth, and drive real TLS handshakes from the host into
// a server in a network namespace: the shape of an API server calling a
// webhook pod.

const backendPort = 8443

type rig struct {
	t      *testing.T
	tracer *handshake.Tracer
	pod    *podnet.Pod
	ca     *certs.CA
	events chan handshake.Event
}

func newRig(t *testing.T, podIP string) *rig {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs and creating network namespaces needs root")
	}
	if err := podnet.Guard(); err != nil {
		t.Fatal(err)
	}
	pod, err := podnet.New("bpf", netip.MustParseAddr(podIP))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pod.Close() })
	tr, err := handshake.Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	if err := tr.Attach(pod.IfIndex); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddBackend(netip.AddrPortFrom(pod.Addr, backendPort)); err != nil {
		t.Fatal(err)
	}
	ca, err := certs.NewCA("hookscope-test-ca")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, tracer: tr, pod: pod, ca: ca, events: make(chan handshake.Event, 1024)}
	go func() {
		for {
			e, err := tr.Read()
			if err != nil {
				close(r.events)
				return
			}
			r.events <- e
		}
	}()
	return r
}

// serve starts a TLS server in the pod with a certificate valid in [from, to].
func (r *rig) serve(from, to time.Time, maxVersion uint16) {
	r.t.Helper()
	r.serveWith(from, to, maxVersion, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
}

// serveWith is serve with the server's handler.
func (r *rig) serveWith(from, to time.Time, maxVersion uint16, h http.Handler) {
	r.t.Helper()
	cert, err := r.ca.Serving([]string{"webhook.default.svc"}, nil, from, to)
	if err != nil {
		r.t.Fatal(err)
	}
	ln, err := r.pod.Listen(backendPort)
	if err != nil {
		r.t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   h,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: maxVersion},
		ErrorLog:  log.New(io.Discard, "", 0), // the rejected handshakes are the point
	}
	go srv.ServeTLS(ln, "", "")
	r.t.Cleanup(func() { srv.Close() })
}

// call makes one HTTPS request as the API server would (ServerName of the
// Service, roots = the caBundle) and returns the client's local port.
func (r *rig) call() (port uint16, err error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.Dial("tcp", net.JoinHostPort(r.pod.Addr.String(), strconv.Itoa(backendPort)))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	port = uint16(conn.LocalAddr().(*net.TCPAddr).Port)
	tc := tls.Client(conn, &tls.Config{ServerName: "webhook.default.svc", RootCAs: r.ca.Pool(), NextProtos: []string{"http/1.1"}})
	tc.SetDeadline(time.Now().Add(2 * time.Second))
	if err := tc.Handshake(); err != nil {
		return port, fmt.Errorf("handshake: %w", err)
	}
	if _, err := tc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")); err != nil {
		return port, err
	}
	buf := make([]byte, 512)
	_, err = tc.Read(buf)
	tc.Close()
	return port, err
}

// waitFor returns the first event of the client port (0: any) with the given kind.
func (r *rig) waitFor(port uint16, kind handshake.EventKind) handshake.Event {
	r.t.Helper()
	timeout := time.After(5 * time.Second)
	var seen []string
	for {
		select {
		case e, ok := <-r.events:
			if !ok {
				r.t.Fatalf("event reader stopped; saw %v", seen)
			}
			if port != 0 && e.Client.Port() != port {
				continue
			}
			seen = append(seen, e.Kind.String())
			if e.Kind == kind {
				return e
			}
		case <-timeout:
			r.t.Fatalf("no %s event for client port %d within 5s; saw %v", kind, port, seen)
		}
	}
}

// drain returns the kinds seen for a client port until quiet.
func (r *rig) drain(port uint16, quiet time.Duration) []handshake.EventKind {
	var kinds []handshake.EventKind
	for {
		select {
		case e := <-r.events:
			if e.Client.Port() == port {
				kinds = append(kinds, e.Kind)
			}
		case <-time.After(quiet):
			return kinds
		}
	}
}

func TestExpiredCertificateTLS13IsRejectedByClient(t *testing.T) {
	r := newRig(t, "10.0.250.2")
	now := time.Now()
	r.serve(now.Add(-48*time.Hour), now.Add(-time.Hour), 0)

	port, err := r.call()
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Fatalf("call with an expired certificate: got %v, want a certificate verification error", err)
	}

	ch := r.waitFor(port, handshake.KindClientHello)
	if ch.HelloErr != nil || ch.Hello == nil {
		t.Fatalf("ClientHello not decoded: %v", ch.HelloErr)
	}
	// Go's ClientHello carries a 1216-byte ML-KEM key share, so the copy
	// is cut short; SNI, ALPN and versions come before it.
	if h := ch.Hello; h.ServerName != "webhook.default.svc" || !slices.Equal(h.ALPN, []string{"http/1.1"}) || !slices.Contains(h.Versions, tls.VersionTLS13) {
		t.Errorf("ClientHello %+v: want SNI webhook.default.svc, ALPN [http/1.1], TLS 1.3 offered", h)
	}
	hello := r.waitFor(port, handshake.KindServerHello)
	if !hello.TLS13 || hello.Cipher>>8 != 0x13 {
		t.Errorf("ServerHello: TLS13=%v cipher=%#04x, want a TLS 1.3 suite", hello.TLS13, hello.Cipher)
	}
	if h := hello.Hello; h == nil || !slices.Equal(h.Versions, []uint16{tls.VersionTLS13}) || h.Cipher != hello.Cipher {
		t.Errorf("ServerHello %+v (err %v): want version 1.3 chosen and cipher %#04x", h, hello.HelloErr, hello.Cipher)
	}
	e := r.waitFor(port, handshake.KindHandshakeRejected)
	if want := netip.AddrPortFrom(r.pod.Addr, backendPort); e.Server != want {
		t.Errorf("server = %s, want %s", e.Server, want)
	}
	if e.FromServer {
		t.Error("rejection attributed to the server; the client rejects")
	}
	if !e.TLS13 || !e.EncryptedAlert {
		t.Errorf("TLS13=%v EncryptedAlert=%v, want both (Go sends an encrypted alert)", e.TLS13, e.EncryptedAlert)
	}
	if e.Phase != handshake.PhaseServerFlight {
		t.Errorf("phase before rejection = %d, want server flight", e.Phase)
	}
	if e.FlowStart.IsZero() || e.Time.Before(e.FlowStart) {
		t.Errorf("times: flow start %v, event %v", e.FlowStart, e.Time)
	}
	if d := time.Since(e.Time); d < 0 || d > time.Minute {
		t.Errorf("event wall time %v is %v from now", e.Time, d)
	}
}

func TestExpiredCertificateTLS12ShowsTheAlert(t *testing.T) {
	r := newRig(t, "10.0.250.3")
	now := time.Now()
	r.serve(now.Add(-48*time.Hour), now.Add(-time.Hour), tls.VersionTLS12)

	port, err := r.call()
	if err == nil {
		t.Fatal("call with an expired certificate succeeded")
	}
	sh := r.waitFor(port, handshake.KindServerHello)
	if h := sh.Hello; h == nil || !slices.Equal(h.Versions, []uint16{tls.VersionTLS12}) || !slices.Equal(h.ALPN, []string{"http/1.1"}) {
		t.Errorf("ServerHello %+v (err %v): want TLS 1.2 chosen and ALPN http/1.1 in the clear", h, sh.HelloErr)
	}
	e := r.waitFor(port, handshake.KindHandshakeRejected)
	if e.TLS13 || e.EncryptedAlert {
		t.Errorf("TLS13=%v EncryptedAlert=%v, want a cleartext TLS 1.2 alert", e.TLS13, e.EncryptedAlert)
	}
	// Go's client answers every verification failure with bad_certificate;
	// the alert says the client rejected the chain, the probe says why.
	const fatal, badCertificate = 2, 42
	if e.AlertLevel != fatal || e.AlertDescription != badCertificate {
		t.Errorf("alert = %d/%d, want fatal(2)/bad_certificate(42)", e.AlertLevel, e.AlertDescription)
	}
}

func TestValidCertificateCompletesHandshake(t *testing.T) {
	r := newRig(t, "10.0.250.4")
	now := time.Now()
	r.serve(now.Add(-time.Hour), now.Add(time.Hour), 0)

	port, err := r.call()
	if err != nil {
		t.Fatalf("call with a valid certificate: %v", err)
	}
	r.waitFor(port, handshake.KindHandshakeDone)
	for _, k := range r.drain(port, 300*time.Millisecond) {
		if k == handshake.KindHandshakeRejected {
			t.Fatal("a completed handshake was reported as rejected")
		}
	}
}

func TestClosedPortIsRefused(t *testing.T) {
	r := newRig(t, "10.0.250.5")
	// No server: the pod's kernel answers the SYN with a RST. The failed
	// dial does not tell its local port; this rig has only this client.
	if _, err := r.call(); err == nil {
		t.Fatal("connect to a closed port succeeded")
	}
	e := r.waitFor(0, handshake.KindRefused)
	if !e.FromServer || e.Phase != handshake.PhaseTCP {
		t.Errorf("refused FromServer=%v phase=%d, want from the server before any TLS", e.FromServer, e.Phase)
	}
	// The SYN is counted, not sent; the refusal carries its time.
	if c, err := r.tracer.Counters(); err != nil || c.Connects != 1 {
		t.Errorf("counted %d connects (%v), want 1", c.Connects, err)
	}
	if e.FlowStart.IsZero() || e.FlowStart.After(e.Time) {
		t.Errorf("refusal's flow start %s, at %s: want the SYN's time", e.FlowStart, e.Time)
	}
}

func TestUntrackedBackendIsIgnored(t *testing.T) {
	r := newRig(t, "10.0.250.6")
	now := time.Now()
	r.serve(now.Add(-48*time.Hour), now.Add(-time.Hour), 0)
	if err := r.tracer.RemoveBackend(netip.AddrPortFrom(r.pod.Addr, backendPort)); err != nil {
		t.Fatal(err)
	}
	before, err := r.tracer.Counters()
	if err != nil {
		t.Fatal(err)
	}
	port, _ := r.call()
	if kinds := r.drain(port, 300*time.Millisecond); len(kinds) != 0 {
		t.Errorf("untracked backend produced events %v", kinds)
	}
	after, err := r.tracer.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if after.Packets != before.Packets {
		t.Errorf("untracked packets counted: %d -> %d", before.Packets, after.Packets)
	}
}

// review posts an admission-review-sized request over one TLS connection
// (as the API server does, HTTP/1.1 here) and waits up to wait for the
// answer; it returns the client's port.
func (r *rig) review(maxVersion uint16, wait time.Duration) (uint16, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.Dial("tcp", net.JoinHostPort(r.pod.Addr.String(), strconv.Itoa(backendPort)))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	port := uint16(conn.LocalAddr().(*net.TCPAddr).Port)
	tc := tls.Client(conn, &tls.Config{ServerName: "webhook.default.svc", RootCAs: r.ca.Pool(), NextProtos: []string{"http/1.1"}, MaxVersion: maxVersion})
	tc.SetDeadline(time.Now().Add(wait))
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + strings.Repeat("0", 36) + `","operation":"CREATE"}}`
	req := "POST /validate HTTP/1.1\r\nHost: webhook.default.svc\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if _, err := tc.Write([]byte(req)); err != nil {
		return port, err
	}
	_, err = io.ReadAll(tc)
	tc.Close()
	return port, err
}

// TestResponseLatency: the webhook's own time to answer, from the request
// record to the first answer record, for TLS 1.2 and 1.3.
func TestResponseLatency(t *testing.T) {
	for i, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(handshake.VersionName(v), func(t *testing.T) {
			r := newRig(t, fmt.Sprintf("10.0.250.%d", 20+i))
			now := time.Now()
			const delay = 150 * time.Millisecond
			r.serveWith(now.Add(-time.Hour), now.Add(time.Hour), v, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				io.Copy(io.Discard, req.Body)
				time.Sleep(delay)
				w.Header().Set("Connection", "close")
				w.Write([]byte(`{"response":{"allowed":true}}`))
			}))
			port, err := r.review(v, 5*time.Second)
			if err != nil {
				t.Fatalf("review: %v", err)
			}
			r.waitFor(port, handshake.KindRequest)
			e := r.waitFor(port, handshake.KindResponse)
			if e.Latency < delay || e.Latency > delay+time.Second || !e.FromServer {
				t.Errorf("response latency %s from server=%v, want about %s from the server", e.Latency, e.FromServer, delay)
			}
		})
	}
}

// TestTimeoutLeavesTheRequestPending: a webhook that completes the
// handshake and never answers; the client gives up after its timeout, and
// its close says how long the request had waited.
func TestTimeoutLeavesTheRequestPending(t *testing.T) {
	r := newRig(t, "10.0.250.22")
	now := time.Now()
	release := make(chan struct{})
	defer close(release)
	r.serveWith(now.Add(-time.Hour), now.Add(time.Hour), 0, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	const timeout = 600 * time.Millisecond
	port, err := r.review(0, timeout)
	if err == nil {
		t.Fatal("the review got an answer from a server that never answers")
	}
	r.waitFor(port, handshake.KindRequest)
	for {
		e := r.waitFor(port, handshake.KindClose)
		if e.FromServer {
			continue
		}
		if e.Latency < timeout/2 || e.Latency > timeout+time.Second {
			t.Errorf("the client's close says the request waited %s, want about %s", e.Latency, timeout)
		}
		break
	}
	for _, k := range r.drain(port, 300*time.Millisecond) {
		if k == handshake.KindResponse {
			t.Error("a response was reported from a server that never answered")
		}
	}
}

// TestIPv6 drives an admission-review-sized call over IPv6: the hello is
// decoded, the handshake completes, the response is timed.
func TestIPv6(t *testing.T) {
	r := newRig(t, "fd77::3")
	now := time.Now()
	r.serveWith(now.Add(-time.Hour), now.Add(time.Hour), 0, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		w.Write([]byte(`{"response":{"allowed":true}}`))
	}))
	port, err := r.review(0, 5*time.Second)
	if err != nil {
		t.Fatalf("review over IPv6: %v", err)
	}
	ch := r.waitFor(port, handshake.KindClientHello)
	if want := netip.AddrPortFrom(netip.MustParseAddr("fd77::3"), backendPort); ch.Server != want || !ch.Client.Addr().Is6() {
		t.Errorf("ClientHello %s -> %s, want an IPv6 client to %s", ch.Client, ch.Server, want)
	}
	if ch.Hello == nil || ch.Hello.ServerName != "webhook.default.svc" {
		t.Errorf("ClientHello over IPv6 not decoded: %+v (%v)", ch.Hello, ch.HelloErr)
	}
	r.waitFor(port, handshake.KindHandshakeDone)
	if e := r.waitFor(port, handshake.KindResponse); e.Latency <= 0 {
		t.Errorf("response latency %s over IPv6", e.Latency)
	}
}

// TestLegacyClsBPF: on kernels before 6.6 (no tcx) the programs attach as
// cls_bpf filters on a clsact qdisc; they see the same handshakes, and
// Detach removes the filters.
func TestLegacyClsBPF(t *testing.T) {
	r := newRig(t, "10.0.250.23")
	if err := r.tracer.Detach(r.pod.IfIndex); err != nil {
		t.Fatal(err)
	}
	if err := r.tracer.AttachLegacy(r.pod.IfIndex); err != nil {
		t.Fatal(err)
	}
	filters := func(dir string) string {
		out, err := exec.Command("tc", "filter", "show", "dev", r.pod.HostLink, dir).CombinedOutput()
		if err != nil {
			t.Fatalf("tc filter show: %v: %s", err, out)
		}
		return string(out)
	}
	if in, eg := filters("ingress"), filters("egress"); !strings.Contains(in, "hookscope_ingress") || !strings.Contains(eg, "hookscope_egress") {
		t.Fatalf("filters: ingress %q, egress %q; want hookscope's", in, eg)
	}
	now := time.Now()
	r.serve(now.Add(-48*time.Hour), now.Add(-time.Hour), 0)
	port, err := r.call()
	if err == nil {
		t.Fatal("call with an expired certificate succeeded")
	}
	if e := r.waitFor(port, handshake.KindHandshakeRejected); !e.TLS13 || !e.EncryptedAlert {
		t.Errorf("rejection seen through cls_bpf: TLS13=%v EncryptedAlert=%v", e.TLS13, e.EncryptedAlert)
	}
	if err := r.tracer.Detach(r.pod.IfIndex); err != nil {
		t.Fatal(err)
	}
	if in := filters("ingress"); strings.Contains(in, "hookscope") {
		t.Errorf("Detach left the filter: %q", in)
	}
}

// TestQuietReaderSleeps: once the events stop, the reader stops polling
// (an idle node's agent does not wake), and the routine events of the
// next call, which only the first of wakes it, all still arrive.
func TestQuietReaderSleeps(t *testing.T) {
	r := newRig(t, "10.0.250.9")
	now := time.Now()
	r.serve(now.Add(-time.Hour), now.Add(time.Hour), 0)
	for range 2 {
		port, err := r.call()
		if err != nil {
			t.Fatal(err)
		}
		r.waitFor(port, handshake.KindHandshakeDone)
		r.drain(port, 300*time.Millisecond) // its close or reset
		before := r.tracer.ReaderPolls()
		time.Sleep(time.Second)
		if n := r.tracer.ReaderPolls() - before; n > 0 {
			t.Fatalf("the reader returned %d times in a quiet second: it should sleep until an event wakes it", n)
		}
	}
	// A call after the quiet spell: its first event wakes the reader, the
	// rest are read by its polls, each within a few poll intervals.
	port, err := r.call()
	if err != nil {
		t.Fatal(err)
	}
	want := []handshake.EventKind{handshake.KindClientHello, handshake.KindServerHello,
		handshake.KindHandshakeDone}
	for _, k := range want {
		e := r.waitFor(port, k)
		if late := time.Since(e.Time); late > 6*handshake.PollInterval {
			t.Errorf("%s read %s after the kernel saw it", k, late.Round(time.Millisecond))
		}
	}
}

// TestHelloBytesOncePerMinute: a client's hellos to a backend are copied
// the first time; the next connection's hellos come without their bytes,
// with the version the program read in their place.
func TestHelloBytesOncePerMinute(t *testing.T) {
	r := newRig(t, "10.0.250.10")
	now := time.Now()
	r.serve(now.Add(-time.Hour), now.Add(time.Hour), 0)
	for i := range 2 {
		port, err := r.review(tls.VersionTLS12, 2*time.Second)
		if err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
		ch := r.waitFor(port, handshake.KindClientHello)
		sh := r.waitFor(port, handshake.KindServerHello)
		if ch.HelloErr != nil || sh.HelloErr != nil {
			t.Fatalf("call %d: hellos not decoded: %v, %v", i+1, ch.HelloErr, sh.HelloErr)
		}
		copied := ch.Hello != nil && sh.Hello != nil
		if first := i == 0; copied != first {
			t.Errorf("call %d: hello bytes copied %v (ClientHello %+v, ServerHello %+v), want %v", i+1, copied, ch.Hello, sh.Hello, first)
		}
		if sh.TLSVersion != tls.VersionTLS12 || sh.TLS13 {
			t.Errorf("call %d: ServerHello version %#04x (1.3: %v), want TLS 1.2 read by the program", i+1, sh.TLSVersion, sh.TLS13)
		}
	}
}
