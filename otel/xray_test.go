package otel

import (
	"context"
	"encoding/binary"
	"testing"
	"time"
)

// TestXRayIDs checks the IDs X-Ray needs: the first 4 bytes are the time
// in Unix seconds, the rest random, the span ID valid.
func TestXRayIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		before := time.Now().Unix()
		tid, sid := XRayIDs{}.NewIDs(t.Context())
		after := time.Now().Unix()
		if at := int64(binary.BigEndian.Uint32(tid[:4])); at < before || at > after {
			t.Fatalf("trace ID %s starts with %d, want the time now (%d..%d)", tid, at, before, after)
		}
		if !tid.IsValid() || !sid.IsValid() {
			t.Fatalf("invalid IDs %s %s", tid, sid)
		}
		if seen[tid.String()[8:]] {
			t.Fatalf("trace ID %s: its random part repeats", tid)
		}
		seen[tid.String()[8:]] = true
		if s := (XRayIDs{}).NewSpanID(t.Context(), tid); !s.IsValid() || s == sid {
			t.Fatalf("span ID %s", s)
		}
	}
	fixed := time.Date(2026, 11, 25, 5, 0, 0, 0, time.UTC)
	tid, _ := XRayIDs{now: func() time.Time { return fixed }}.NewIDs(t.Context())
	if got, want := tid.String()[:8], "6b066b50"; got != want {
		t.Errorf("trace ID %s at %v: prefix %s, want %s (X-Ray: 1-%s-...)", tid, fixed, got, want, want)
	}
}

// TestExporterXRayIDs checks the Config switch: the exporter's spans get
// time-prefixed trace IDs only when XRayTraceIDs is set.
func TestExporterXRayIDs(t *testing.T) {
	for _, xray := range []bool{false, true} {
		exp, err := NewExporter(t.Context(), Config{Endpoint: "127.0.0.1:1", Insecure: true, XRayTraceIDs: xray})
		if err != nil {
			t.Fatal(err)
		}
		timed := 0
		for range 20 {
			_, span := exp.tracer.Start(t.Context(), "id")
			tid := span.SpanContext().TraceID()
			span.End()
			if d := time.Now().Unix() - int64(binary.BigEndian.Uint32(tid[:4])); d >= 0 && d <= 1 {
				timed++
			}
		}
		_ = exp.Shutdown(canceled(t))
		if xray && timed != 20 || !xray && timed == 20 {
			t.Errorf("XRayTraceIDs %v: %d of 20 trace IDs start with the time now", xray, timed)
		}
	}
}

// canceled is a context that has ended: Shutdown then drops what is queued
// at once instead of waiting for an unreachable collector.
func canceled(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}
