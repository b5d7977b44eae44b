package otel

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hookscope/hookscope/findings"
)

// TestWireEventsAddTheKernelsCounts: hookscope.wire.events counts, per
// kind, the events the agent read and those the kernel only counted.
func TestWireEventsAddTheKernelsCounts(t *testing.T) {
	m, err := NewMetrics(MetricsState{
		Webhooks: func() []Webhook { return nil },
		Findings: func() (open, resolved []findings.Finding) { return nil, nil },
		WireCounted: func() (map[string]uint64, error) {
			return map[string]uint64{"connect": 5, "tcp_syn": 3}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveWire("connect")
	m.ObserveWire("client_hello")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`hookscope_wire_events_total{kind="connect"} 6`,
		`hookscope_wire_events_total{kind="tcp_syn"} 3`,
		`hookscope_wire_events_total{kind="client_hello"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("no %s in:\n%s", want, grep(string(body), "hookscope_wire_events"))
		}
	}
}

// grep is the lines of s that contain sub.
func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
