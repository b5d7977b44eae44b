//go:build linux

package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/chaos/backend"
	"github.com/hookscope/hookscope/dataplane"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/certs"
	"github.com/hookscope/hookscope/internal/kube/kubefake"
	"github.com/hookscope/hookscope/internal/podnet"
	"github.com/hookscope/hookscope/inventory"
	"github.com/hookscope/hookscope/probe"
)

// kernelAgent is an agent on a fake API server with the real data plane,
// tracing one backend in a network namespace: the pod's IP answers only
// inside it, across a real veth where the programs are attached.
type kernelAgent struct {
	agent *Agent
	store *findings.Store
	own   *probe.Own
	pod   *podnet.Pod
	ca    *certs.CA
	// ownSeen are the client ports of the agent's own connections the
	// kernel reported (and the data plane left out).
	mu      sync.Mutex
	ownSeen map[uint16]bool
	events  map[string]int
}

const (
	kernelPodIP   = "10.0.77.5"
	kernelPort    = 8443
	kernelService = "hook-svc"
)

func startKernelAgent(t *testing.T, name string, interval time.Duration) *kernelAgent {
	t.Helper()
	return startKernelAgentWith(t, name, interval, kernelObjects)
}

// startKernelAgentWith is startKernelAgent with objects (given the CA's
// PEM) in its API server.
func startKernelAgentWith(t *testing.T, name string, interval time.Duration, objects func(caPEM []byte) []runtime.Object) *kernelAgent {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: eBPF programs and network namespaces")
	}
	if err := podnet.Guard(); err != nil {
		t.Fatal(err)
	}
	pod, err := podnet.New(name, netip.MustParseAddr(kernelPodIP))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pod.Close() })
	ca, err := certs.NewCA("kernel-ca")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	k := &kernelAgent{pod: pod, ca: ca, own: probe.NewOwn(), ownSeen: map[uint16]bool{}, events: map[string]int{}}
	k.store = findings.NewStore(findings.Config{Log: log})
	tracer, err := handshake.Load()
	if err != nil {
		t.Fatal(err)
	}
	asm := dataplane.NewAssembler(dataplane.Config{Log: log, IsOwn: func(c, s netip.AddrPort) bool {
		own := k.own.Is(c, s)
		if own {
			k.mu.Lock()
			k.ownSeen[c.Port()] = true
			k.mu.Unlock()
		}
		return own
	}})
	kernel := dataplane.NewKernel(tracer, nil, asm, log)
	api := kubefake.New(nil, objects(ca.PEM)...)
	k.agent = New(Config{ProbeInterval: interval, ProbeTimeout: time.Second, Logger: log},
		Parts{Inventory: inventory.New(api, log), Store: k.store, DataPlane: kernel, Assembler: asm, Own: k.own})
	asm.SetOutput(k.agent.WireOutput(dataplane.Output{Event: func(kind string) {
		k.mu.Lock()
		k.events[kind]++
		k.mu.Unlock()
	}}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go kernel.Run(ctx)
	go func() { defer close(done); _ = k.agent.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return k
}

// kernelObjects: a webhook whose Service's one endpoint is the pod.
func kernelObjects(caPEM []byte) []runtime.Object {
	return []runtime.Object{
		&admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Webhooks: []admissionv1.ValidatingWebhook{{
			Name: "v.kernel.hookscope.dev", FailurePolicy: ptr.To(admissionv1.Fail),
			ClientConfig: admissionv1.WebhookClientConfig{CABundle: caPEM,
				Service: &admissionv1.ServiceReference{Namespace: "hooks", Name: kernelService, Path: ptr.To("/validate")}},
		}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "hooks", Name: kernelService},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(kernelPort)}}}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "hooks", Name: kernelService + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: kernelService}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To[int32](kernelPort)}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{kernelPodIP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "hooks", Name: "hook-0"}}}},
	}
}

func (k *kernelAgent) waitFor(t *testing.T, what string, timeout time.Duration, cond func([]findings.Finding) bool) findings.Finding {
	t.Helper()
	var open []findings.Finding
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		open, _ = k.store.Findings()
		return cond(open), nil
	})
	if err != nil {
		t.Fatalf("%s: open findings %+v", what, open)
	}
	if len(open) == 0 {
		return findings.Finding{}
	}
	return open[0]
}

// certificates are two serving certificates for names and ips from the
// agent's CA: one valid for validFor from now, one that expired an hour ago.
func (k *kernelAgent) certificates(t *testing.T, names []string, ips []net.IP, validFor time.Duration) (valid, expired tls.Certificate) {
	t.Helper()
	valid, err := k.ca.Serving(names, ips, time.Now().Add(-time.Hour), time.Now().Add(validFor))
	if err != nil {
		t.Fatal(err)
	}
	if expired, err = k.ca.Serving(names, ips, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	return valid, expired
}

// serve serves cert on the pod's webhook port.
func (k *kernelAgent) serve(t *testing.T, cert tls.Certificate) *backend.Server {
	t.Helper()
	ln, err := k.pod.Listen(kernelPort)
	if err != nil {
		t.Fatal(err)
	}
	return backend.Serve(ln, cert)
}

// TestRefusedBackendProbedOncePerInterval: a backend that refuses every
// connection is probed on the probe interval, no more: the agent knows its
// own connections before it dials them, so the kernel's "refused" for a
// probe is never taken for a failed call that starts another probe (which
// made a loop of a probe every ~50 ms). The finding's evidence is the
// probe's alone: no call of the API server was seen.
func TestRefusedBackendProbedOncePerInterval(t *testing.T) {
	const interval, run = 500 * time.Millisecond, 3 * time.Second
	k := startKernelAgent(t, "refuse", interval)
	f := k.waitFor(t, "ConnectionRefused", 10*time.Second, func(open []findings.Finding) bool {
		return len(open) == 1 && open[0].Class == findings.ConnectionRefused
	})
	time.Sleep(run)
	k.mu.Lock()
	probes, refused := len(k.ownSeen), k.events["refused"]
	k.mu.Unlock()
	// The first probe (a new backend), then one per interval (+-10% jitter).
	if limit := int(run/interval) + 3; probes < 2 || probes > limit {
		t.Errorf("the kernel saw %d probe connections in %s at a %s interval, want 2 to %d", probes, run, interval, limit)
	}
	if refused != 0 {
		t.Errorf("%d refused connections counted as the API server's: the agent's own probes leaked", refused)
	}
	for _, ev := range f.Evidence {
		if ev.Source != findings.Probe {
			t.Errorf("evidence %+v: want the probe's only", ev)
		}
	}
}

// TestExpiredCertificateOnAKeptAliveConnection: the serving certificate
// expires under a connection the client (the API server's stand-in) keeps
// open. Writes still pass over it, so the finding says the next new
// connection will fail; when the client opens one and the handshake is
// rejected, the same finding says writes are rejected.
func TestExpiredCertificateOnAKeptAliveConnection(t *testing.T) {
	k := startKernelAgent(t, "keepalive", time.Second)
	name := kernelService + ".hooks.svc"
	valid, expired := k.certificates(t, []string{name}, nil, time.Hour)
	srv := k.serve(t, valid)
	defer srv.Close()
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: k.ca.Pool(), ServerName: name},
	}}
	defer client.CloseIdleConnections()
	write := func() error {
		resp, err := client.Post("https://"+kernelPodIP+":8443/validate", "application/json", bytes.NewReader([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1"}}`)))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	// A write opens the connection the client keeps; let the traced
	// handshake land before the certificate changes.
	time.Sleep(500 * time.Millisecond)
	if err := write(); err != nil {
		t.Fatalf("the first write: %v", err)
	}
	srv.SwapCertificate(expired)
	f := k.waitFor(t, "CertExpired", 10*time.Second, func(open []findings.Finding) bool {
		return len(open) == 1 && open[0].Class == findings.CertExpired
	})
	if f.Effect != findings.NextConnectionFails {
		t.Fatalf("effect %q while the kept-alive connection carries writes, want %q", f.Effect, findings.NextConnectionFails)
	}
	if err := write(); err != nil {
		t.Fatalf("a write over the kept-alive connection failed: %v", err)
	}
	client.CloseIdleConnections()
	if err := write(); err == nil {
		t.Fatal("a write over a new connection passed; want the expired certificate rejected")
	}
	g := k.waitFor(t, "writes rejected", 5*time.Second, func(open []findings.Finding) bool {
		return len(open) == 1 && open[0].Effect == findings.WritesRejected
	})
	if g.ID != f.ID || g.Wire() == nil || g.Wire().TLSVersion == "" {
		t.Errorf("finding %+v: want the same finding, with the kernel's facts of the rejected handshake", g)
	}
}

// TestURLWebhookServedOnTheNode: a webhook that calls a URL naming a pod's
// address on this node is traced and probed here, as a Service's backend
// is: the data plane sees the API server's handshakes to it, and a
// certificate that expires under it is a finding that names the URL and
// the address, with the wire's evidence once a new connection is refused.
func TestURLWebhookServedOnTheNode(t *testing.T) {
	url := "https://" + kernelPodIP + ":8443/validate"
	k := startKernelAgentWith(t, "urlhook", time.Second, func(caPEM []byte) []runtime.Object {
		return []runtime.Object{&admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "ext"}, Webhooks: []admissionv1.ValidatingWebhook{{
			Name: "v.url.hookscope.dev", FailurePolicy: ptr.To(admissionv1.Fail),
			ClientConfig: admissionv1.WebhookClientConfig{CABundle: caPEM, URL: &url},
		}}}}
	})
	ip := netip.MustParseAddr(kernelPodIP)
	valid, expired := k.certificates(t, nil, []net.IP{ip.AsSlice()}, time.Hour)
	srv := k.serve(t, valid)
	defer srv.Close()
	addr := netip.AddrPortFrom(ip, kernelPort)
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		_, ok := k.agent.dataPlane().Tracing(addr)
		return ok, nil
	})
	if err != nil {
		t.Fatalf("the URL's address %s on this node is not traced", addr)
	}
	srv.SwapCertificate(expired)
	dial := func() error {
		c, err := tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: k.ca.Pool(), ServerName: kernelPodIP})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(); err == nil {
		t.Fatal("a handshake with the expired certificate passed")
	}
	f := k.waitFor(t, "CertExpired from the wire", 10*time.Second, func(open []findings.Finding) bool {
		return len(open) == 1 && open[0].Class == findings.CertExpired && open[0].Wire() != nil
	})
	if f.URL != url || f.Backend != addr {
		t.Errorf("finding names URL %q and backend %q, want %q and %s", f.URL, f.Backend, url, addr)
	}
	if !strings.Contains(f.Remediation, "URL "+url) {
		t.Errorf("remediation %q does not name the URL", f.Remediation)
	}
}
