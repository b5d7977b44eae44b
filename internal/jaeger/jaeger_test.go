//go:build linux

package jaeger

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// startJaeger starts a Jaeger for one test and stops it at the end. A
// missing binary fails the test: the message says to run `make tools`.
func startJaeger(ctx context.Context, t *testing.T) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(ctx, bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// TestSpanRoundTrip sends a span through the real OTLP gRPC exporter and
// reads it back through the query API, attributes and event included. A
// second Jaeger, started alongside, must see none of it.
func TestSpanRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s := startJaeger(ctx, t)
	other := startJaeger(ctx, t)
	if s.OTLPGRPCEndpoint() == other.OTLPGRPCEndpoint() || s.QueryURL() == other.QueryURL() {
		t.Fatalf("two Jaegers share a port: %s %s, %s %s",
			s.OTLPGRPCEndpoint(), s.QueryURL(), other.OTLPGRPCEndpoint(), other.QueryURL())
	}
	for _, ep := range []string{s.OTLPGRPCEndpoint(), s.OTLPHTTPEndpoint()} {
		if !strings.HasPrefix(ep, "127.0.0.1:") {
			t.Errorf("endpoint %s is not on 127.0.0.1", ep)
		}
	}

	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.OTLPGRPCEndpoint()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatalf("creating the OTLP exporter: %v", err)
	}
	const service = "jaeger-test"
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", service),
			attribute.String("k8s.node.name", "node-a"),
		)),
	)
	// Whole microseconds: Jaeger's JSON has no finer resolution.
	start := time.Now().Add(-3 * time.Second).Truncate(time.Microsecond)
	eventAt := start.Add(time.Second)
	end := start.Add(2 * time.Second)
	_, span := tp.Tracer("jaeger_test").Start(ctx, "webhook.call", trace.WithTimestamp(start))
	span.SetAttributes(
		attribute.String("webhook", "pods.example.com"),
		attribute.Int("port", 8443),
		attribute.Bool("fails_closed", true),
	)
	span.AddEvent("handshake.rejected", trace.WithTimestamp(eventAt),
		trace.WithAttributes(attribute.String("detail", "bad certificate")))
	span.SetStatus(codes.Error, "rejected")
	span.End(trace.WithTimestamp(end))
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("flushing the span: %v", err)
	}

	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	traces, err := s.WaitForTraces(wctx, service, map[string]string{"webhook": "pods.example.com"}, 1)
	if err != nil {
		t.Fatalf("%v (jaeger log: %s)", err, s.LogPath())
	}
	if len(traces) != 1 || len(traces[0].Spans) != 1 {
		t.Fatalf("got %d traces (%+v), want 1 trace of 1 span", len(traces), traces)
	}
	got := traces[0].Spans[0]
	if want := span.SpanContext().TraceID().String(); traces[0].TraceID != want || got.TraceID != want {
		t.Errorf("trace ID: trace %s, span %s, want %s", traces[0].TraceID, got.TraceID, want)
	}
	if want := span.SpanContext().SpanID().String(); got.SpanID != want {
		t.Errorf("span ID %s, want %s", got.SpanID, want)
	}
	if got.OperationName != "webhook.call" {
		t.Errorf("operation %q, want webhook.call", got.OperationName)
	}
	if !got.Start.Equal(start) || got.Duration != 2*time.Second {
		t.Errorf("start %v duration %v, want %v and 2s", got.Start, got.Duration, start)
	}
	for k, want := range map[string]string{
		"webhook":                 "pods.example.com",
		"port":                    "8443",
		"fails_closed":            "true",
		"otel.status_code":        "ERROR",
		"otel.status_description": "rejected",
	} {
		if got.Tags[k] != want {
			t.Errorf("tag %s = %q, want %q (tags %v)", k, got.Tags[k], want, got.Tags)
		}
	}
	if got.Process["service.name"] != service || got.Process["k8s.node.name"] != "node-a" {
		t.Errorf("process %v, want service.name %s and k8s.node.name node-a", got.Process, service)
	}
	if len(got.Events) != 1 {
		t.Fatalf("events %+v, want 1", got.Events)
	}
	ev := got.Events[0]
	if ev.Name != "handshake.rejected" || !ev.Time.Equal(eventAt) || ev.Attributes["detail"] != "bad certificate" {
		t.Errorf("event %+v, want handshake.rejected at %v with detail", ev, eventAt)
	}

	// Tags filter: a value no span has finds nothing.
	none, err := s.FindTraces(ctx, service, map[string]string{"webhook": "other.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if len(none) != 0 {
		t.Errorf("tags filter: got %d traces, want 0", len(none))
	}
	// The second Jaeger received nothing.
	if leaked, err := other.FindTraces(ctx, service, nil); err != nil || len(leaked) != 0 {
		t.Errorf("second jaeger: %d traces, err %v; want 0", len(leaked), err)
	}
}

// TestStop checks that Stop ends Jaeger, frees its ports and can be called
// again.
func TestStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s := startJaeger(ctx, t)
	if err := s.Stop(); err != nil {
		t.Fatalf("first stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", s.OTLPGRPCEndpoint(), time.Second); err == nil {
		c.Close()
		t.Errorf("OTLP gRPC port %s still accepts connections after Stop", s.OTLPGRPCEndpoint())
	}
}

// TestBinaryMissing checks that a missing binary says how to get one.
func TestBinaryMissing(t *testing.T) {
	t.Setenv("HOOKSCOPE_TOOLS_BIN", t.TempDir())
	_, err := Binary()
	if err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("Binary() error %v, want one that says to run `make tools`", err)
	}
}

// TestConvertTrace decodes a query API answer as Jaeger v2 writes it.
func TestConvertTrace(t *testing.T) {
	const body = `{"data":[{"traceID":"t1","spans":[{"traceID":"t1","spanID":"s1",
		"operationName":"op","references":[],"startTime":1700000000000001,"duration":1500,
		"tags":[{"key":"n","type":"int64","value":9007199254740993},{"key":"b","type":"bool","value":true},
		{"key":"s","type":"string","value":"x"},{"key":"f","type":"float64","value":0.5}],
		"logs":[{"timestamp":1700000000000900,"fields":[{"key":"event","type":"string","value":"late"}]},
		{"timestamp":1700000000000500,"fields":[{"key":"event","type":"string","value":"early"},
		{"key":"detail","type":"string","value":"d"}]}],
		"processID":"p1","warnings":null}],
		"processes":{"p1":{"serviceName":"svc","tags":[{"key":"k8s.node.name","type":"string","value":"n1"}]}},
		"warnings":null}],"total":0,"limit":0,"offset":0,"errors":null}`
	var r apiResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	tr := convertTrace(r.Data[0])
	sp := tr.Spans[0]
	if want := time.UnixMicro(1700000000000001); !sp.Start.Equal(want) || sp.Duration != 1500*time.Microsecond {
		t.Errorf("start %v duration %v", sp.Start, sp.Duration)
	}
	for k, want := range map[string]string{"n": "9007199254740993", "b": "true", "s": "x", "f": "0.5"} {
		if sp.Tags[k] != want {
			t.Errorf("tag %s = %q, want %q", k, sp.Tags[k], want)
		}
	}
	if sp.Process["service.name"] != "svc" || sp.Process["k8s.node.name"] != "n1" {
		t.Errorf("process %v", sp.Process)
	}
	if len(sp.Events) != 2 || sp.Events[0].Name != "early" || sp.Events[0].Attributes["detail"] != "d" ||
		sp.Events[1].Name != "late" {
		t.Errorf("events %+v, want early (with detail) then late", sp.Events)
	}
	if _, ok := sp.Events[0].Attributes["event"]; ok {
		t.Errorf("event name left among the attributes: %v", sp.Events[0].Attributes)
	}
}

// TestKillRestart crashes a Jaeger and brings it back on the same ports, as
// the exporter's outage test needs: the endpoints stay the same, the query
// API answers again, and the storage starts empty.
func TestKillRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s := startJaeger(ctx, t)
	if _, err := s.Restart(ctx); err == nil {
		t.Fatal("Restart of a running Jaeger: no error")
	}
	grpcEP, httpEP, query := s.OTLPGRPCEndpoint(), s.OTLPHTTPEndpoint(), s.QueryURL()
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("Stop after Kill: %v", err)
	}
	if c, err := net.DialTimeout("tcp", grpcEP, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Kill", grpcEP)
	}
	r, err := s.Restart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Stop(); err != nil {
			t.Error(err)
		}
	}()
	if r.OTLPGRPCEndpoint() != grpcEP || r.OTLPHTTPEndpoint() != httpEP || r.QueryURL() != query {
		t.Errorf("restarted on %s %s %s, want %s %s %s", r.OTLPGRPCEndpoint(), r.OTLPHTTPEndpoint(), r.QueryURL(), grpcEP, httpEP, query)
	}
	if traces, err := r.FindTraces(ctx, "anything", nil); err != nil || len(traces) != 0 {
		t.Errorf("restarted Jaeger: %d traces, %v; want an empty store", len(traces), err)
	}
}
