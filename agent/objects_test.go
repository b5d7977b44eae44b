package agent

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/internal/certs"
)

func TestObjectProblem(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "hook"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 443, TargetPort: intstr.FromInt32(8443)}}}}
	ref := &ServiceRef{Namespace: "ns", Name: "hook", Port: 443}
	ready := BackendTarget{Ready: true}
	notReady := BackendTarget{}
	cases := []struct {
		name     string
		svc      *corev1.Service
		ref      ServiceRef
		backends []BackendTarget
		want     FailureClass
		detail   string
	}{
		{"healthy", svc, *ref, []BackendTarget{notReady, ready}, "", ""},
		{"service gone", nil, *ref, nil, ServiceNotFound, `service "hook" not found`},
		{"wrong port", svc, ServiceRef{Namespace: "ns", Name: "hook", Port: 8080}, nil, PortMismatch, `service "hook" has no port 8080`},
		{"none ready", svc, *ref, []BackendTarget{notReady}, BackendPodsNotReady, `1 endpoints of service "hook", none ready`},
		{"no endpoints", svc, *ref, nil, NoEndpoints, `no endpoints available for service "hook"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, detail := objectProblem(c.svc, &c.ref, c.backends)
			if got != c.want || detail != c.detail {
				t.Errorf("got %q %q, want %q %q", got, detail, c.want, c.detail)
			}
		})
	}
}

type podsFunc func() []PodState

func (f podsFunc) ListPods(context.Context, string, map[string]string) ([]PodState, error) {
	return f(), nil
}

type recordSink struct{ got []Finding }

func (r *recordSink) Report(f Finding) { r.got = append(r.got, f) }

// TestObjectFindingLifecycle: NoEndpoints becomes BackendPodsPending when the
// Service's pods are Pending, and the finding resolves when the objects heal.
func TestObjectFindingLifecycle(t *testing.T) {
	sink := &recordSink{}
	pods := []PodState{{Name: "hook-0", Phase: "Pending", Reason: "Unschedulable: 0/3 nodes are available"}}
	a := New(Config{Pods: podsFunc(func() []PodState { return pods }), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil, nil, sink)
	w := Webhook{Ref: WebhookRef{Kind: "Mutating", Configuration: "c", Name: "mpod.example.com"}, FailurePolicy: "Fail",
		Service: &ServiceRef{Namespace: "ns", Name: "hook", Port: 443}, ServiceSelector: map[string]string{"app": "hook"},
		Problem: NoEndpoints, ProblemDetail: `no endpoints available for service "hook"`}

	class, detail := a.pendingPods(context.Background(), w, w.Problem, w.ProblemDetail)
	a.applyObjects(w, class, detail)
	if len(sink.got) != 1 || sink.got[0].Class != BackendPodsPending || sink.got[0].Effect != "writes rejected" {
		t.Fatalf("reports %+v, want one BackendPodsPending finding", sink.got)
	}
	if want := `no endpoints available for service "hook": 1/1 pods of service "hook" Pending: hook-0 (Unschedulable: 0/3 nodes are available)`; sink.got[0].Evidence[0].Detail != want {
		t.Errorf("evidence %q", sink.got[0].Evidence[0].Detail)
	}
	a.applyObjects(w, class, detail) // unchanged: no new report
	if len(sink.got) != 1 {
		t.Fatalf("an unchanged class was reported again: %d reports", len(sink.got))
	}
	a.applyObjects(w, "", "")
	if len(sink.got) != 2 || sink.got[1].Resolved == nil || sink.got[1].ID != sink.got[0].ID {
		t.Fatalf("reports %+v, want the finding resolved", sink.got)
	}
	if open, _ := a.Findings(); len(open) != 0 {
		t.Errorf("open findings left: %+v", open)
	}
}

func TestCertExpiringSoon(t *testing.T) {
	sink := &recordSink{}
	a := New(Config{CertHorizon: 48 * time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil, nil, sink)
	w := Webhook{Ref: WebhookRef{Kind: "Validating", Configuration: "c", Name: "v.example.com"}, FailurePolicy: "Fail",
		Service: &ServiceRef{Namespace: "ns", Name: "hook", Port: 443}}
	k := probeKey{webhook: w.Ref}
	soon := ProbeResult{Class: Healthy, Start: time.Now(), Leaf: &CertificateWindow{Subject: "CN=hook.ns.svc", NotAfter: time.Now().Add(24 * time.Hour)}}
	a.apply(w, k, soon)
	if len(sink.got) != 1 || sink.got[0].Class != CertExpiringSoon || sink.got[0].Effect != "none yet" {
		t.Fatalf("reports %+v, want CertExpiringSoon with no effect yet", sink.got)
	}
	renewed := soon
	renewed.Leaf = &CertificateWindow{Subject: "CN=hook.ns.svc", NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	a.apply(w, k, renewed)
	if len(sink.got) != 2 || sink.got[1].Resolved == nil {
		t.Fatalf("reports %+v, want the finding resolved by the renewal", sink.got)
	}
}

// TestHostileWebhookObjects feeds the agent webhook objects the API server
// would mostly refuse, or that it cannot call: no clientConfig, a url
// webhook, a caBundle that is not PEM, a Service without a port, endpoints
// that are terminating. Each gets a finding or one clear log line; none
// crashes the agent.
func TestHostileWebhookObjects(t *testing.T) {
	ca, err := certs.NewCA("hostile-ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Serving([]string{"hook-svc.hooks.svc"}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	backend := serveTLS(t, cert)

	fail := admissionv1.Fail
	cfg := &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "hostile"},
		Webhooks: []admissionv1.ValidatingWebhook{
			{Name: "no-client-config.example.com"},
			{Name: "url.example.com", FailurePolicy: &fail, ClientConfig: admissionv1.WebhookClientConfig{URL: ptr.To("https://hooks.example.com:8443/validate")}},
			{Name: "bad-pem.example.com", FailurePolicy: &fail, ClientConfig: admissionv1.WebhookClientConfig{
				Service:  &admissionv1.ServiceReference{Namespace: "hooks", Name: "hook-svc"},
				CABundle: []byte("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"),
			}},
		},
	}
	svc := service("https", 443, intstr.FromInt32(int32(backend.Port())))
	es := slice("https", int32(backend.Port()), true, backend.Addr().String())
	es.Endpoints[0].Conditions.Terminating = ptr.To(true)
	ws := Resolve([]*admissionv1.ValidatingWebhookConfiguration{cfg}, nil, []*corev1.Service{svc}, []*discoveryv1.EndpointSlice{es})
	if len(ws) != 3 {
		t.Fatalf("resolved %d webhooks, want 3", len(ws))
	}
	for _, w := range ws {
		if w.Ref.Name == "bad-pem.example.com" && (len(w.Backends) != 1 || !w.Backends[0].Terminating) {
			t.Errorf("backends %+v, want one terminating endpoint", w.Backends)
		}
	}

	var logs strings.Builder
	var logMu sync.Mutex
	sink := &recordSink{}
	a := New(Config{ProbeTimeout: time.Second, Logger: slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))}, nil, nil, sink)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.setWebhooks(ctx, ws)
	a.setWebhooks(ctx, ws) // unchanged: logged once
	for ctx.Err() == nil {
		if open, _ := a.Findings(); len(open) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	open, _ := a.Findings()
	if len(open) != 1 || open[0].Class != UnknownAuthority || !strings.Contains(open[0].Evidence[len(open[0].Evidence)-1].Detail, "caBundle holds no PEM certificate") {
		t.Fatalf("open findings %+v, want UnknownAuthority for the caBundle that is not PEM", open)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	for _, want := range []string{
		`msg="webhook has neither a service nor a url in its clientConfig: the API server cannot call it; skipped" webhook=Validating/hostile/no-client-config.example.com`,
		`msg="webhook calls a URL, not a Service: it is neither traced nor probed, only the API server's signals cover it" webhook=Validating/hostile/url.example.com`,
	} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("log line %q appears %d times, want once; logs:\n%s", want, n, out)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
