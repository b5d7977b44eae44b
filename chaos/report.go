package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ScenarioResult is one game-day scenario in the report. Later issues add
// fields; the ones with the names are never renamed.
type ScenarioResult struct {
	Name              string    `json:"name"`
	ExpectedClass     string    `json:"expected_class"`
	DetectedClass     string    `json:"detected_class"`
	InjectedAt        time.Time `json:"injected_at"`
	FirstFailedCallAt time.Time `json:"first_failed_call_at"`
	DetectedAt        time.Time `json:"detected_at"`
	// DetectLatencySeconds is DetectedAt - FirstFailedCallAt: negative when
	// hookscope knew before the first write failed.
	DetectLatencySeconds float64 `json:"detect_latency_seconds"`
	Remediation          string  `json:"remediation"`
	Recovered            bool    `json:"recovered"`
	Passed               bool    `json:"passed"`

	// FirstWriteDelaySeconds is how long after the injection the scenario
	// made its first write (a workload's next write after the breakage).
	FirstWriteDelaySeconds float64 `json:"first_write_delay_seconds"`
	// WriteFailed says whether that write failed (false for fail-open).
	WriteFailed bool `json:"write_failed"`
	// FailedCallError is what the API server told the client.
	FailedCallError string `json:"failed_call_error,omitempty"`
	// DetectedBy lists the finding's evidence sources (ebpf, probe, ...).
	DetectedBy []string `json:"detected_by,omitempty"`
	// Evidence is the finding's evidence, as the agent wrote it.
	Evidence []string `json:"evidence,omitempty"`
	// SpanTraceID is the finding's trace as read back from Jaeger.
	SpanTraceID string `json:"span_trace_id,omitempty"`
	// RecoveredAt is when the first write after the remediation succeeded.
	RecoveredAt time.Time `json:"recovered_at"`
	// ResolvedAt is when the agent resolved the finding.
	ResolvedAt time.Time `json:"resolved_at"`
	// Failures lists the checks that failed, if any.
	Failures []string `json:"failures,omitempty"`

	// TimeToDetectSeconds is DetectedAt - InjectedAt (Write derives it).
	TimeToDetectSeconds float64 `json:"time_to_detect_seconds"`
	// DetectedBeforeFirstFailure: the finding came before the first write
	// the API server rejected.
	DetectedBeforeFirstFailure bool `json:"detected_before_first_failure"`
	// WriteAnsweredAt is when the API server answered that write (its
	// failure, for a webhook that times out).
	WriteAnsweredAt time.Time `json:"write_answered_at"`
	// Webhook is the scenario's webhook name, as the API server logs it.
	Webhook string `json:"webhook"`
	// Baselines are the article's own detection methods, measured on the same
	// failure (see Baselines).
	Baselines *Baselines `json:"baselines,omitempty"`
}

// Baselines are when the usual methods would have alerted on the same
// failure, computed from the API server's own log of this run:
//
//   - LogFilterAlarmAt, the article's method: a CloudWatch metric filter on
//     the kube-apiserver log for "failed calling webhook" feeding an alarm
//     with a 1-minute period and one datapoint. The datapoint of the minute
//     holding the first matching line is evaluated when that minute closes,
//     and CloudWatch publishes it about a minute late: the alarm fires at
//     the end of that minute plus 60 s.
//   - MetricsAlertAt, the Prometheus path: apiserver_admission_webhook_
//     rejection_count is scraped every 15 s (from the start of the run) and
//     an alert fires on the first scrape that sees the increase; the
//     counter rises at the same moment as the log line (measured).
//
// Both are null when the API server logged no failed call (nothing was
// rejected: a finding ahead of any failure).
type Baselines struct {
	FirstLoggedFailureAt time.Time `json:"first_logged_failure_at"`
	LogFilterAlarmAt     time.Time `json:"log_filter_alarm_at"`
	MetricsAlertAt       time.Time `json:"metrics_alert_at"`
	// ...Seconds are the same, from the injection, beside hookscope's.
	LogFilterAlarmSeconds float64 `json:"log_filter_alarm_seconds"`
	MetricsAlertSeconds   float64 `json:"metrics_alert_seconds"`
}

// metricsScrapeInterval is the Prometheus baseline's scrape interval.
const metricsScrapeInterval = 15 * time.Second

// AddBaselines computes each scenario's baselines from the kube-apiserver
// log (klog text) of the run.
func (r *Report) AddBaselines(apiserverLog io.Reader) error {
	first := map[string]time.Time{} // webhook -> first logged failure after its injection
	r.mu.Lock()
	defer r.mu.Unlock()
	sc := bufio.NewScanner(apiserverLog)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	year := r.Started.Year()
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "failed calling webhook") {
			continue
		}
		at, ok := klogTime(line, year)
		if !ok {
			continue
		}
		for _, s := range r.Scenarios {
			if s.Webhook == "" || s.InjectedAt.IsZero() || at.Before(s.InjectedAt) {
				continue
			}
			if _, seen := first[s.Webhook]; !seen && strings.Contains(line, `"`+s.Webhook+`"`) {
				first[s.Webhook] = at
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the kube-apiserver log: %w", err)
	}
	for _, s := range r.Scenarios {
		at, ok := first[s.Webhook]
		if !ok {
			continue
		}
		b := &Baselines{FirstLoggedFailureAt: at}
		b.LogFilterAlarmAt = at.Truncate(time.Minute).Add(time.Minute).Add(time.Minute)
		scrapes := at.Sub(r.Started) / metricsScrapeInterval
		b.MetricsAlertAt = r.Started.Add((scrapes + 1) * metricsScrapeInterval)
		b.LogFilterAlarmSeconds = b.LogFilterAlarmAt.Sub(s.InjectedAt).Seconds()
		b.MetricsAlertSeconds = b.MetricsAlertAt.Sub(s.InjectedAt).Seconds()
		s.Baselines = b
	}
	return nil
}

// klogTime reads the time of a klog line: "W1125 02:45:05.657908 ...".
func klogTime(line string, year int) (time.Time, bool) {
	if len(line) < 21 {
		return time.Time{}, false
	}
	t, err := time.Parse("0102 15:04:05.000000", line[1:21])
	if err != nil {
		return time.Time{}, false
	}
	return t.AddDate(year, 0, 0), true
}

// Report is the game day's outcome: chaos-report/report.json and report.md.
type Report struct {
	mu       sync.Mutex
	Provider string `json:"provider"`
	// KubernetesVersion is the API server's version.
	KubernetesVersion string            `json:"kubernetes_version"`
	Started           time.Time         `json:"started"`
	Finished          time.Time         `json:"finished"`
	DurationSeconds   float64           `json:"duration_seconds"`
	Scenarios         []*ScenarioResult `json:"scenarios"`
	Passed            bool              `json:"passed"`
}

// NewReport starts a report for a provider.
func NewReport(provider string) *Report {
	return &Report{Provider: provider, Started: time.Now(), Scenarios: []*ScenarioResult{}}
}

// Scenario adds a scenario to the report and returns it for the steps to fill.
func (r *Report) Scenario(name, expectedClass string) *ScenarioResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &ScenarioResult{Name: name, ExpectedClass: expectedClass}
	r.Scenarios = append(r.Scenarios, s)
	return s
}

// Write finishes the report and writes report.json and report.md into dir.
func (r *Report) Write(dir string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Finished = time.Now()
	r.DurationSeconds = r.Finished.Sub(r.Started).Seconds()
	r.Passed = len(r.Scenarios) > 0
	for _, s := range r.Scenarios {
		r.Passed = r.Passed && s.Passed
		if !s.DetectedAt.IsZero() {
			s.TimeToDetectSeconds = s.DetectedAt.Sub(s.InjectedAt).Seconds()
			s.DetectedBeforeFirstFailure = s.WriteFailed && s.DetectedAt.Before(s.FirstFailedCallAt)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.markdown()), 0o644); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	page, err := r.html()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.html"), page, 0o644); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	return nil
}

func (r *Report) markdown() string {
	var b strings.Builder
	verdict := "PASSED"
	if !r.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "# hookscope game day: %s\n\n", verdict)
	fmt.Fprintf(&b, "Provider: %s. Started %s, took %s.\n\n", r.Provider, r.Started.Format(time.RFC3339), r.Finished.Sub(r.Started).Round(time.Second))
	b.WriteString("| scenario | expected | detected | first write after injection | detected after injection | detection latency | log filter + 1-min alarm | 15 s metrics alert | detected by | remediation | recovered | result |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Scenarios {
		res := "pass"
		if !s.Passed {
			res = "**FAIL**"
		}
		logAlarm, metricsAlert := "-", "-"
		if s.Baselines != nil {
			logAlarm = fmt.Sprintf("%.1f s", s.Baselines.LogFilterAlarmSeconds)
			metricsAlert = fmt.Sprintf("%.1f s", s.Baselines.MetricsAlertSeconds)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.3f s | %s | %s | %s | %s | %s | %s | %v | %s |\n", s.Name, s.ExpectedClass, orDash(s.DetectedClass),
			s.FirstWriteDelaySeconds, afterInjection(s), latency(s), logAlarm, metricsAlert, orDash(strings.Join(s.DetectedBy, " + ")), orDash(s.Remediation), s.Recovered, res)
	}
	b.WriteString("\nDetection latency runs from the start of the first write after the injection (rejected, or let through\n")
	b.WriteString("unchecked when the webhook fails open) to the agent's finding; negative means the agent knew before that\n")
	b.WriteString("write. It includes the API server's own retry of a call whose connection was reset. Failures that send no\n")
	b.WriteString("packet are measured against a write 1 s after the injection. The two baselines, also from the injection,\n")
	b.WriteString("are a CloudWatch log filter on \"failed calling webhook\" with a 1-minute alarm (AWS's documented method)\n")
	b.WriteString("and a 15 s Prometheus scrape of the API server's rejection counter, computed from this run's kube-apiserver\n")
	b.WriteString("log (model in chaos/report.go); `-` where the API server logged no failed call.\n")
	for _, s := range r.Scenarios {
		fmt.Fprintf(&b, "\n## %s\n\n", s.Name)
		if s.FailedCallError != "" {
			fmt.Fprintf(&b, "The API server answered the write with:\n\n```\n%s\n```\n\n", s.FailedCallError)
		}
		if lead := s.WriteAnsweredAt.Sub(s.DetectedAt); s.WriteFailed && !s.DetectedAt.IsZero() && !s.WriteAnsweredAt.IsZero() {
			if lead > 0 {
				fmt.Fprintf(&b, "The agent named it %.3f s before the API server failed that write.\n\n", lead.Seconds())
			} else {
				fmt.Fprintf(&b, "The agent named it %.3f s after the API server failed that write.\n\n", -lead.Seconds())
			}
		}
		if len(s.Evidence) > 0 {
			b.WriteString("The agent's evidence:\n\n")
			for _, e := range s.Evidence {
				fmt.Fprintf(&b, "- %s\n", e)
			}
			b.WriteString("\n")
		}
		if s.SpanTraceID != "" {
			fmt.Fprintf(&b, "Span read back from Jaeger: trace %s.\n\n", s.SpanTraceID)
		}
		for _, f := range s.Failures {
			fmt.Fprintf(&b, "- FAILED: %s\n", f)
		}
	}
	return b.String()
}

func latency(s *ScenarioResult) string {
	if s.DetectedAt.IsZero() || s.FirstFailedCallAt.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%.3f s", s.DetectLatencySeconds)
}

func afterInjection(s *ScenarioResult) string {
	if s.DetectedAt.IsZero() || s.InjectedAt.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%.3f s", s.TimeToDetectSeconds)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
