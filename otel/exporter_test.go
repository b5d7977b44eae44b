//go:build linux

package otel

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/jaeger"
)

// certExpiredFinding is a finding with every field set, as the agent
// reports a webhook serving an expired certificate. Times are whole
// microseconds: Jaeger's JSON has no finer resolution.
func certExpiredFinding(now time.Time) findings.Finding {
	now = now.Truncate(time.Microsecond)
	return findings.Finding{
		ID:    "f-policy-1",
		Class: findings.CertExpired,
		Webhook: callout.Ref{
			Kind:          "Validating",
			Configuration: "pod-policy",
			Name:          "pods.policy.example.com",
		},
		FailurePolicy: "Fail",
		Effect:        "writes rejected",
		Service:       &callout.ServiceRef{Namespace: "policy", Name: "policy-webhook", Port: 443, Path: "/validate"},
		Backend:       netip.MustParseAddrPort("10.0.1.5:8443"),
		Pod:           &callout.PodRef{Namespace: "policy", Name: "policy-webhook-7d9f8", Node: "node-b"},
		FirstFailure:  now.Add(-5 * time.Second),
		FirstSeen:     now.Add(-1 * time.Second),
		Certificate: &findings.Certificate{
			Subject:   "CN=policy-webhook.policy.svc",
			NotBefore: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
			NotAfter:  time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC),
		},
		Evidence: []findings.Evidence{
			{Source: "ebpf", At: now.Add(-5 * time.Second), Detail: "TLS alert bad_certificate sent by 10.0.0.1:52314 to 10.0.1.5:8443"},
			{Source: "probe", At: now.Add(-2 * time.Second), Detail: "x509: certificate has expired or is not yet valid"},
		},
		Remediation: "Renew the serving certificate of policy/policy-webhook and restart its pods",
	}
}

// startJaeger runs a real Jaeger for one test and stops it afterwards.
func startJaeger(ctx context.Context, t *testing.T) *jaeger.Server {
	t.Helper()
	bin, err := jaeger.Binary()
	if err != nil {
		t.Fatal(err)
	}
	j, err := jaeger.Start(ctx, bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := j.Stop(); err != nil {
			t.Error(err)
		}
	})
	return j
}

// TestFindingInJaeger reports an open and a resolved finding to a real
// Jaeger and reads both spans back as an SRE would find them.
func TestFindingInJaeger(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	j := startJaeger(ctx, t)

	exp, err := NewExporter(ctx, Config{Endpoint: j.OTLPGRPCEndpoint(), Insecure: true, NodeName: "agent-node"})
	if err != nil {
		t.Fatal(err)
	}
	f := certExpiredFinding(time.Now())
	exp.Report(f)
	// A call the kernel saw fail while the finding is open links to it.
	exp.ReportCall(callout.Call{Client: netip.MustParseAddrPort("10.0.0.1:40312"), Server: f.Backend, Webhooks: []callout.Ref{f.Webhook},
		Start: f.FirstSeen, End: f.FirstSeen.Add(time.Millisecond), Outcome: "rejected"})
	resolvedAt := f.FirstSeen.Add(500 * time.Millisecond)
	resolved := f
	resolved.Resolved = &resolvedAt
	exp.Report(resolved)
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := exp.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}

	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	traces, err := j.WaitForTraces(wctx, DefaultServiceName, map[string]string{"hookscope.failure.class": "CertExpired"}, 2)
	if err != nil {
		t.Fatalf("%v (jaeger log: %s)", err, j.LogPath())
	}
	spans := map[string]jaeger.Span{} // by hookscope.finding.state
	for _, tr := range traces {
		for _, sp := range tr.Spans {
			spans[sp.Tags["hookscope.finding.state"]] = sp
		}
	}
	if len(traces) != 2 || len(spans) != 2 {
		t.Fatalf("got %d traces with states %v, want 2: one open, one resolved", len(traces), keys(spans))
	}

	open := spans["open"]
	if open.OperationName != "pods.policy.example.com" {
		t.Errorf("open span: operation %q, want the webhook's name", open.OperationName)
	}
	if !open.Start.Equal(f.FirstFailure) || open.Duration != 4*time.Second {
		t.Errorf("open span: start %v, duration %v; want FirstFailure %v and 4s (to FirstSeen)", open.Start, open.Duration, f.FirstFailure)
	}
	wantTags(t, "open span", open.Tags, map[string]string{
		"k8s.namespace.name":               "policy",
		"k8s.pod.name":                     "policy-webhook-7d9f8",
		"k8s.node.name":                    "node-b",
		"server.address":                   "10.0.1.5",
		"server.port":                      "8443",
		"error.type":                       "CertExpired",
		"hookscope.webhook.kind":           "Validating",
		"hookscope.webhook.configuration":  "pod-policy",
		"hookscope.webhook.name":           "pods.policy.example.com",
		"hookscope.webhook.failure_policy": "Fail",
		"hookscope.webhook.effect":         "writes rejected",
		"hookscope.service.namespace":      "policy",
		"hookscope.service.name":           "policy-webhook",
		"hookscope.failure.class":          "CertExpired",
		"hookscope.finding.id":             "f-policy-1",
		"hookscope.finding.state":          "open",
		"hookscope.remediation":            f.Remediation,
		"hookscope.cert.subject":           "CN=policy-webhook.policy.svc",
		"hookscope.cert.not_before":        "2025-01-01T00:00:00Z",
		"hookscope.cert.not_after":         "2025-04-01T00:00:00Z",
		"otel.status_code":                 "ERROR",
		"otel.status_description":          "CertExpired: writes rejected",
		"otel.scope.name":                  "github.com/hookscope/hookscope/otel",
	})
	wantTags(t, "open span resource", open.Process, map[string]string{
		"service.name":  "hookscope-agent",
		"k8s.node.name": "agent-node",
	})
	if len(open.Events) != len(f.Evidence) {
		t.Fatalf("open span: %d events %+v, want %d", len(open.Events), open.Events, len(f.Evidence))
	}
	for i, ev := range f.Evidence {
		got := open.Events[i]
		if want := "hookscope.evidence." + string(ev.Source); got.Name != want || !got.Time.Equal(ev.At) {
			t.Errorf("event %d: %s at %v, want %s at %v", i, got.Name, got.Time, want, ev.At)
		}
		wantTags(t, "event "+got.Name, got.Attributes, map[string]string{
			"hookscope.evidence.source": string(ev.Source),
			"hookscope.evidence.detail": ev.Detail,
		})
	}

	res := spans["resolved"]
	if res.OperationName != "pods.policy.example.com" || !res.Start.Equal(resolvedAt) || res.Duration != 0 {
		t.Errorf("resolved span: %q at %v lasting %v, want the webhook's name at %v lasting 0",
			res.OperationName, res.Start, res.Duration, resolvedAt)
	}
	wantTags(t, "resolved span", res.Tags, map[string]string{
		"hookscope.finding.id":    "f-policy-1",
		"hookscope.finding.state": "resolved",
		"otel.status_code":        "OK",
	})
	if _, ok := res.Tags["error.type"]; ok {
		t.Errorf("resolved span has error.type %q", res.Tags["error.type"])
	}
	if len(res.Events) != 0 {
		t.Errorf("resolved span has events %+v", res.Events)
	}

	// Links: the resolution and the failed call point at the open finding.
	follows := func(what string, sp jaeger.Span) {
		t.Helper()
		if len(sp.References) != 1 || sp.References[0].RefType != "FOLLOWS_FROM" || sp.References[0].SpanID != open.SpanID || sp.References[0].TraceID != open.TraceID {
			t.Errorf("%s references %+v, want one link to the open finding's span %s", what, sp.References, open.SpanID)
		}
	}
	follows("resolved span", res)
	calls, err := j.WaitForTraces(wctx, DefaultServiceName, map[string]string{"hookscope.call.outcome": "rejected"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	follows("failed call span", calls[0].Spans[0])
	if len(open.References) != 0 {
		t.Errorf("open finding span references %+v, want none", open.References)
	}
}

// TestUnreachableCollector checks that a collector nobody listens for
// never holds up the agent: Report returns at once even past the queue's
// size, and Shutdown is bounded by its context.
func TestUnreachableCollector(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := l.Addr().String()
	l.Close()

	exp, err := NewExporter(t.Context(), Config{Endpoint: endpoint, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	f := certExpiredFinding(time.Now())
	start := time.Now()
	for range 2 * DefaultQueueSize {
		exp.Report(f)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("%d Reports took %v: Report blocks on an unreachable collector", 2*DefaultQueueSize, d)
	}
	// The queue holds the first DefaultQueueSize spans for retry; the rest
	// are dropped at once, and counted.
	if st := exp.Stats(); st.Queued != DefaultQueueSize || st.QueueFull != DefaultQueueSize || st.Exported != 0 {
		t.Errorf("stats after %d Reports: %+v, want %d queued and %d dropped (queue_full)", 2*DefaultQueueSize, st, DefaultQueueSize, DefaultQueueSize)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start = time.Now()
	err = exp.Shutdown(ctx)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v with a 2s context", d)
	}
	t.Logf("Shutdown with the collector unreachable: %v (after %v)", err, time.Since(start))
}

// TestNoEndpoint checks that a missing endpoint is refused up front.
func TestNoEndpoint(t *testing.T) {
	if _, err := NewExporter(t.Context(), Config{}); err == nil {
		t.Fatal("NewExporter with no endpoint: no error")
	}
}

func wantTags(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s: %s = %q (present %v), want %q", what, k, g, ok, v)
		}
	}
}

func keys(m map[string]jaeger.Span) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestFindingOverHTTP sends a finding over OTLP/HTTP (the protocol an
// X-Ray-bound ADOT collector or an HTTP-only proxy takes) to a real Jaeger.
func TestFindingOverHTTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	j := startJaeger(ctx, t)
	exp, err := NewExporter(ctx, Config{Endpoint: j.OTLPHTTPEndpoint(), Insecure: true, Protocol: "http"})
	if err != nil {
		t.Fatal(err)
	}
	f := certExpiredFinding(time.Now())
	f.ID = "f-over-http"
	exp.Report(f)
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := exp.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	traces, err := j.WaitForTraces(wctx, DefaultServiceName, map[string]string{"hookscope.finding.id": "f-over-http"}, 1)
	if err != nil {
		t.Fatalf("%v (jaeger log: %s)", err, j.LogPath())
	}
	if got := traces[0].Spans[0].Tags["hookscope.webhook.name"]; got != f.Webhook.Name {
		t.Errorf("span webhook %q, want %q", got, f.Webhook.Name)
	}
	if _, err := NewExporter(ctx, Config{Endpoint: "127.0.0.1:1", Protocol: "carrier-pigeon"}); err == nil || !strings.Contains(err.Error(), `protocol "carrier-pigeon"`) {
		t.Errorf("unknown protocol: %v", err)
	}
}
