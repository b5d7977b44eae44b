package otel

import (
	"io"
	"net/http/httptest"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// TestMonitoringUsesRealMetrics checks that every hookscope_* series the
// shipped alerts and dashboard query is one the agent exposes, read from a
// real scrape of the metrics endpoint: a renamed metric breaks this test,
// not an alert in production.
func TestMonitoringUsesRealMetrics(t *testing.T) {
	ref := callout.Ref{Kind: "Validating", Configuration: "cfg", Name: "v.example.com"}
	backend := netip.MustParseAddrPort("10.0.0.7:8443")
	m, err := NewMetrics(MetricsState{
		Webhooks: func() []Webhook {
			return []Webhook{{Ref: ref, Local: []netip.AddrPort{backend}}}
		},
		Findings: func() ([]findings.Finding, []findings.Finding) {
			return []findings.Finding{{Webhook: ref, Class: findings.CertExpired}}, nil
		},
		EventsDropped: func() (uint64, error) { return 0, nil },
		Unparsed:      func() (map[string]uint64, error) { return map[string]uint64{"out_of_order": 0}, nil },
		Risks: func() []Risk {
			return []Risk{{Webhook: ref, Kind: "BlocksSystemPods", Severity: "critical"}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveProbe(ref, backend, findings.Healthy, time.Millisecond, &findings.Certificate{NotAfter: time.Now().Add(time.Hour)})
	m.ObserveWire("connect")
	m.Report(findings.Finding{Webhook: ref, Class: findings.CertExpired, Effect: "fails open"})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	exposed := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if name, _, ok := strings.Cut(line, "{"); ok && strings.HasPrefix(name, "hookscope_") {
			exposed[name] = true
		} else if f := strings.Fields(line); len(f) == 2 && strings.HasPrefix(f[0], "hookscope_") {
			exposed[f[0]] = true
		}
	}
	series := regexp.MustCompile(`hookscope_[a-z_]+`)
	for _, file := range []string{"../deploy/monitoring/prometheusrule.yaml", "../deploy/monitoring/grafana-dashboard.json"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		used := series.FindAllString(string(b), -1)
		if len(used) == 0 {
			t.Fatalf("%s queries no hookscope metric", file)
		}
		for _, name := range used {
			if name == "hookscope_webhooks" { // the rule group's name
				continue
			}
			if !exposed[name] {
				t.Errorf("%s queries %s, which the agent does not expose (it has %v)", file, name, keysOf(exposed))
			}
		}
	}
}

func keysOf(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
