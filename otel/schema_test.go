package otel

import (
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// documented reads the attribute names the package comment of
// attributes.go lists: the first words of its indented lines.
func documented(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile("attributes.go")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(src[:strings.Index(string(src), "package otel")])
	name := regexp.MustCompile(`^//\t([a-z][a-z0-9_.]*(?:, [a-z][a-z0-9_.]*)*)(?:\s|$)`)
	out := map[string]bool{}
	for _, line := range strings.Split(doc, "\n") {
		if m := name.FindStringSubmatch(line); m != nil {
			for _, n := range strings.Split(m[1], ", ") {
				out[n] = true
			}
		}
	}
	return out
}

// everyPath reports one finding of each kind, open and resolved, and a
// failed call, through an Exporter that keeps its spans in memory.
func everyPath(t *testing.T) (spans tracetest.SpanStubs, resource []attribute.KeyValue) {
	t.Helper()
	rec := tracetest.NewInMemoryExporter()
	res, err := newResource(Config{ServiceName: DefaultServiceName, NodeName: "node-1"}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(rec), sdktrace.WithResource(res))
	e := &Exporter{tp: tp, tracer: tp.Tracer(instrumentationName, trace.WithSchemaURL(SchemaURL))}
	now := time.Now()
	ref := callout.Ref{Kind: "Validating", Configuration: "cfg", Name: "v.example.com"}
	backend, client := netip.MustParseAddrPort("10.0.1.5:8443"), netip.MustParseAddrPort("10.0.0.2:41000")
	f := findings.Finding{ID: "a1", Class: findings.CertExpired, Webhook: ref, FailurePolicy: "Fail", Effect: findings.WritesRejected,
		Service: &callout.ServiceRef{Namespace: "ns", Name: "svc", Port: 443}, Backend: backend,
		Pod: &callout.PodRef{Namespace: "ns", Name: "svc-0", Node: "node-2"}, FirstFailure: now, FirstSeen: now,
		Certificate: &findings.Certificate{Subject: "CN=svc.ns.svc", NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)},
		Remediation: "renew it",
		Evidence: []findings.Evidence{{Source: findings.Kernel, At: now, Detail: "rejected", Wire: &findings.WireFacts{Client: client,
			Phase: findings.PhaseServerHello, TLSVersion: "1.2", Alert: &findings.TLSAlert{Level: 2, Description: 42}, EncryptedAlert: true, Latency: time.Second}},
			{Source: findings.Event, At: now, Detail: "FailedCreate", Calls: 3}}}
	e.Report(f)
	impact := f
	impact.ID, impact.Impact = "b2", &findings.Impact{Kind: findings.ImpactNodeNotReady, Node: "node-3", Object: "DaemonSet kube-system/aws-node"}
	e.Report(impact)
	url := findings.Finding{ID: "c3", Class: findings.Unreachable, Webhook: ref, URL: "https://10.0.250.1:8443/v", FirstSeen: now}
	e.Report(findings.Finding{ID: "d4", Class: findings.CertExpired, Webhook: ref, Backend: backend, FirstSeen: now, Untraced: "no hookscope agent runs on node fargate-1"})
	e.Report(url)
	resolved := f
	resolved.Resolved = &now
	e.Report(resolved)
	e.ReportCall(callout.Call{Client: client, Server: backend, Webhooks: []callout.Ref{ref}, Pod: f.Pod, Start: now, End: now,
		Outcome: "rejected", TLSVersion: "1.3", Events: []callout.CallEvent{{Name: "handshake_rejected", At: now, Detail: "rejected"}}})
	e.ReportGuard(ref, "exclude", "excluded namespace kube-system", now)
	return rec.GetSpans(), res.Attributes()
}

// TestAttributesDocumented: every attribute a span, a span event, a link
// or the resource carries is in attributes.go's list, and every attribute
// listed there is emitted by some path.
func TestAttributesDocumented(t *testing.T) {
	doc := documented(t)
	if len(doc) < 30 {
		t.Fatalf("read %d documented attributes from attributes.go; the list's format changed", len(doc))
	}
	emitted := map[string]bool{}
	add := func(kvs []attribute.KeyValue) {
		for _, kv := range kvs {
			emitted[string(kv.Key)] = true
		}
	}
	spans, resource := everyPath(t)
	for _, kv := range resource {
		if !strings.HasPrefix(string(kv.Key), "telemetry.sdk.") { // the SDK's own, documented by it
			emitted[string(kv.Key)] = true
		}
	}
	for _, s := range spans {
		add(s.Attributes)
		for _, ev := range s.Events {
			add(ev.Attributes)
		}
		for _, l := range s.Links {
			add(l.Attributes)
		}
	}
	var undocumented, unemitted []string
	for k := range emitted {
		if !doc[k] {
			undocumented = append(undocumented, k)
		}
	}
	for k := range doc {
		if !emitted[k] {
			unemitted = append(unemitted, k)
		}
	}
	slices.Sort(undocumented)
	slices.Sort(unemitted)
	if len(undocumented) > 0 {
		t.Errorf("emitted but not in attributes.go's list: %v", undocumented)
	}
	if len(unemitted) > 0 {
		t.Errorf("in attributes.go's list but emitted by no path: %v", unemitted)
	}
}
