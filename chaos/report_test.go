package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAddBaselines(t *testing.T) {
	start := time.Date(2026, 11, 25, 2, 44, 0, 0, time.UTC)
	r := &Report{Started: start}
	s := &ScenarioResult{Name: "x", Webhook: "mpod.example.com", InjectedAt: time.Date(2026, 11, 25, 2, 45, 4, 0, time.UTC)}
	quiet := &ScenarioResult{Name: "y", Webhook: "quiet.example.com", InjectedAt: start}
	r.Scenarios = []*ScenarioResult{s, quiet}
	log := strings.Join([]string{
		`W1125 02:45:01.000000 1 dispatcher.go:225] Failed calling webhook, failing closed mpod.example.com: failed calling webhook "mpod.example.com": before the injection`,
		`I1125 02:45:05.100000 1 other.go:1] unrelated`,
		`W1125 02:45:05.657908 23852 dispatcher.go:225] Failed calling webhook, failing closed mpod.example.com: failed calling webhook "mpod.example.com": failed to call webhook: Post "https://svc.ns.svc:443/mutate?timeout=5s": service "svc" not found`,
		`W1125 02:45:09.000000 23852 dispatcher.go:225] Failed calling webhook, failing closed mpod.example.com: failed calling webhook "mpod.example.com": later`,
	}, "\n")
	if err := r.AddBaselines(strings.NewReader(log)); err != nil {
		t.Fatal(err)
	}
	b := s.Baselines
	if b == nil {
		t.Fatal("no baselines")
	}
	if want := time.Date(2026, 11, 25, 2, 45, 5, 657908000, time.UTC); !b.FirstLoggedFailureAt.Equal(want) {
		t.Errorf("first logged failure %v, want %v", b.FirstLoggedFailureAt, want)
	}
	// The minute 02:45 closes at 02:46, published a minute later.
	if want := time.Date(2026, 11, 25, 2, 47, 0, 0, time.UTC); !b.LogFilterAlarmAt.Equal(want) {
		t.Errorf("log filter alarm %v, want %v", b.LogFilterAlarmAt, want)
	}
	// Scrapes at 02:44:00 + k*15 s: the first after 02:45:05.66 is 02:45:15.
	if want := time.Date(2026, 11, 25, 2, 45, 15, 0, time.UTC); !b.MetricsAlertAt.Equal(want) {
		t.Errorf("metrics alert %v, want %v", b.MetricsAlertAt, want)
	}
	if b.LogFilterAlarmSeconds != 116 || b.MetricsAlertSeconds != 11 {
		t.Errorf("seconds from injection: %v %v", b.LogFilterAlarmSeconds, b.MetricsAlertSeconds)
	}
	if quiet.Baselines != nil {
		t.Errorf("a webhook the API server never logged got baselines %+v", quiet.Baselines)
	}
}

func TestReportFiles(t *testing.T) {
	start := time.Date(2026, 11, 25, 2, 44, 0, 0, time.UTC)
	r := &Report{Provider: "local", Started: start}
	s := &ScenarioResult{Name: "service not found <x>", ExpectedClass: "ServiceNotFound", DetectedClass: "ServiceNotFound",
		InjectedAt: start.Add(time.Second), FirstFailedCallAt: start.Add(2 * time.Second), DetectedAt: start.Add(1500 * time.Millisecond),
		WriteFailed: true, WriteAnsweredAt: start.Add(2250 * time.Millisecond), Passed: true, Recovered: true, RecoveredAt: start.Add(5 * time.Second),
		Baselines: &Baselines{MetricsAlertAt: start.Add(15 * time.Second), LogFilterAlarmAt: start.Add(2 * time.Minute)}}
	late := &ScenarioResult{Name: "blocked path", ExpectedClass: "BlockedBeforeNode", DetectedClass: "BlockedBeforeNode",
		InjectedAt: start, FirstFailedCallAt: start, WriteAnsweredAt: start.Add(2 * time.Second), DetectedAt: start.Add(2400 * time.Millisecond),
		WriteFailed: true, Passed: true, Recovered: true}
	r.Scenarios = []*ScenarioResult{s, late}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	if !r.Passed || !s.DetectedBeforeFirstFailure || s.TimeToDetectSeconds != 0.5 {
		t.Errorf("passed %v, before first failure %v, time to detect %v", r.Passed, s.DetectedBeforeFirstFailure, s.TimeToDetectSeconds)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"The agent named it 0.750 s before the API server failed that write.", "The agent named it 0.400 s after the API server failed that write."} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	page, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "hookscope: ServiceNotFound (&#43;0.500 s)", "log filter &#43; 1-min alarm (&#43;119.000 s)", "service not found &lt;x&gt;"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
}
