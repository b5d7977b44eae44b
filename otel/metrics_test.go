package otel

import (
	"io"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

func TestMetricsEndpoint(t *testing.T) {
	ref := callout.Ref{Kind: "Validating", Configuration: "cfg", Name: "v.example.com"}
	other := callout.Ref{Kind: "Mutating", Configuration: "cfg2", Name: "m.example.com"}
	backend := netip.MustParseAddrPort("10.0.0.7:8443")
	open := []findings.Finding{{Webhook: ref, Class: findings.CertExpired, Effect: "writes rejected"}}
	m, err := NewMetrics(MetricsState{
		Webhooks: func() []Webhook {
			return []Webhook{{Ref: ref, Local: []netip.AddrPort{backend}}, {Ref: other}}
		},
		Findings:      func() ([]findings.Finding, []findings.Finding) { return open, nil },
		EventsDropped: func() (uint64, error) { return 3, nil },
		Unparsed: func() (map[string]uint64, error) {
			return map[string]uint64{"malformed_record": 2, "out_of_order": 0}, nil
		},
		Spans: func() SpanStats {
			return SpanStats{Exported: 7, QueueFull: 2, ExportFailed: 1, Queued: 4, QueueSize: 16}
		},
		Programs: func() []BPFProgram {
			return []BPFProgram{{Tracepoint: "tcp_send_reset", Program: "tcp_send_reset_noreason", Loaded: true}, {Tracepoint: "tcp_retransmit_skb"}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveProbe(ref, backend, findings.CertExpired, 2*time.Millisecond, &findings.Certificate{NotAfter: time.Now().Add(-time.Hour)})
	m.ObserveWire("handshake_rejected")
	m.Report(open[0])
	t0 := time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC)
	m.ReportCall(callout.Call{Webhooks: []callout.Ref{ref}, Outcome: "done", Start: t0, End: t0.Add(3 * time.Millisecond),
		Events: []callout.CallEvent{{Name: "connect", At: t0}, {Name: "client_hello", At: t0.Add(time.Millisecond)}, {Name: "server_hello", At: t0.Add(1700 * time.Microsecond)}, {Name: "handshake_done", At: t0.Add(3 * time.Millisecond)}}})
	m.ReportCall(callout.Call{Webhooks: []callout.Ref{ref}, Outcome: "rejected", Start: t0, End: t0.Add(40 * time.Millisecond),
		Events: []callout.CallEvent{{Name: "connect", At: t0}, {Name: "client_hello", At: t0.Add(time.Millisecond)}, {Name: "server_hello", At: t0.Add(30 * time.Millisecond)}}})
	m.ReportCall(callout.Call{Webhooks: []callout.Ref{ref}, Outcome: "refused", Start: t0, End: t0.Add(time.Millisecond)})
	m.ObserveResponse(ref, 700*time.Microsecond)
	m.ObserveResponse(ref, 29*time.Millisecond)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	for _, want := range []string{
		`hookscope_webhook_health{class="CertExpired",configuration="cfg",effect="writes rejected",webhook="v.example.com",webhook_kind="Validating"} 1`,
		`hookscope_webhook_health{class="Healthy",configuration="cfg2",effect="none",webhook="m.example.com",webhook_kind="Mutating"} 1`,
		`hookscope_findings_open{class="CertExpired"} 1`,
		`hookscope_findings_total{class="CertExpired",effect="writes rejected"} 1`,
		`hookscope_probe_duration_seconds_count{class="CertExpired"} 1`,
		`hookscope_wire_events_total{kind="handshake_rejected"} 1`,
		`hookscope_bpf_events_dropped_total 3`,
		`hookscope_bpf_unparsed_total{reason="malformed_record"} 2`,
		`hookscope_bpf_unparsed_total{reason="out_of_order"} 0`,
		`hookscope_bpf_program{program="tcp_send_reset_noreason",tracepoint="tcp_send_reset"} 1`,
		`hookscope_bpf_program{program="",tracepoint="tcp_retransmit_skb"} 0`,
		`hookscope_cert_expiry_seconds{backend="10.0.0.7:8443",configuration="cfg",webhook="v.example.com",webhook_kind="Validating"} -3`,
		`hookscope_webhook_calls_total{configuration="cfg",outcome="done",webhook="v.example.com",webhook_kind="Validating"} 1`,
		`hookscope_webhook_calls_total{configuration="cfg",outcome="rejected",webhook="v.example.com",webhook_kind="Validating"} 1`,
		`hookscope_webhook_calls_total{configuration="cfg",outcome="refused",webhook="v.example.com",webhook_kind="Validating"} 1`,
		`hookscope_handshake_duration_seconds_bucket{configuration="cfg",outcome="done",webhook="v.example.com",webhook_kind="Validating",le="0.0025"} 0`,
		`hookscope_handshake_duration_seconds_bucket{configuration="cfg",outcome="done",webhook="v.example.com",webhook_kind="Validating",le="0.005"} 1`,
		`hookscope_handshake_duration_seconds_sum{configuration="cfg",outcome="rejected",webhook="v.example.com",webhook_kind="Validating"} 0.04`,
		`hookscope_backend_response_duration_seconds_count{configuration="cfg",webhook="v.example.com",webhook_kind="Validating"} 2`,
		`hookscope_backend_response_duration_seconds_bucket{configuration="cfg",webhook="v.example.com",webhook_kind="Validating",le="0.001"} 1`,
		`hookscope_exporter_spans_total{outcome="exported"} 7`,
		`hookscope_exporter_spans_total{outcome="queue_full"} 2`,
		`hookscope_exporter_spans_total{outcome="export_failed"} 1`,
		`hookscope_exporter_queue_length 4`,
		`hookscope_exporter_queue_capacity 16`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %s", want)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", text)
	}
}

// BenchmarkObserveWire is the metrics' cost of one kernel event: the agent
// calls ObserveWire for every one (some ten per new connection).
func BenchmarkObserveWire(b *testing.B) {
	m, err := NewMetrics(MetricsState{
		Webhooks: func() []Webhook { return nil },
		Findings: func() ([]findings.Finding, []findings.Finding) { return nil, nil },
	})
	if err != nil {
		b.Fatal(err)
	}
	kinds := []string{"connect", "client_hello", "server_hello", "handshake_done", "tcp_close"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.ObserveWire(kinds[i%len(kinds)])
		i++
	}
}
