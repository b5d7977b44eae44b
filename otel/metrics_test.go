package otel

import (
	"io"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hookscope/hookscope/agent"
)

func TestMetricsEndpoint(t *testing.T) {
	ref := agent.WebhookRef{Kind: "Validating", Configuration: "cfg", Name: "v.example.com"}
	other := agent.WebhookRef{Kind: "Mutating", Configuration: "cfg2", Name: "m.example.com"}
	backend := netip.MustParseAddrPort("10.0.0.7:8443")
	open := []agent.Finding{{Webhook: ref, Class: agent.CertExpired, Effect: "writes rejected"}}
	m, err := NewMetrics(MetricsState{
		Webhooks: func() []agent.WebhookStatus {
			return []agent.WebhookStatus{{Webhook: agent.Webhook{Ref: ref}, Local: []netip.AddrPort{backend}}, {Webhook: agent.Webhook{Ref: other}}}
		},
		Findings:      func() ([]agent.Finding, []agent.Finding) { return open, nil },
		EventsDropped: func() (uint64, error) { return 3, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveProbe(ref, agent.ProbeResult{Target: backend, Class: agent.CertExpired, Handshake: 2 * time.Millisecond,
		Leaf: &agent.CertificateWindow{NotAfter: time.Now().Add(-time.Hour)}})
	m.ObserveWire("handshake_rejected")
	m.ObserveFinding(open[0])

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	for _, want := range []string{
		`hookscope_webhook_health{class="CertExpired",configuration="cfg",effect="writes rejected",webhook="v.example.com"} 1`,
		`hookscope_webhook_health{class="Healthy",configuration="cfg2",effect="none",webhook="m.example.com"} 1`,
		`hookscope_findings_open{class="CertExpired"} 1`,
		`hookscope_findings_total{class="CertExpired",effect="writes rejected"} 1`,
		`hookscope_probe_duration_seconds_count{class="CertExpired"} 1`,
		`hookscope_wire_events_total{kind="handshake_rejected"} 1`,
		`hookscope_bpf_events_dropped_total 3`,
		`hookscope_cert_expiry_seconds{backend="10.0.0.7:8443",configuration="cfg",webhook="v.example.com"} -3`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %s", want)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", text)
	}
}
