package chaos

import (
	"encoding/json"
	"fmt"
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

	// DetectAfterInjectionSeconds is DetectedAt - InjectedAt.
	DetectAfterInjectionSeconds float64 `json:"detect_after_injection_seconds"`
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
}

// Report is the game day's outcome: chaos-report/report.json and report.md.
type Report struct {
	mu        sync.Mutex
	Provider  string            `json:"provider"`
	Started   time.Time         `json:"started"`
	Finished  time.Time         `json:"finished"`
	Scenarios []*ScenarioResult `json:"scenarios"`
	Passed    bool              `json:"passed"`
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
	r.Passed = len(r.Scenarios) > 0
	for _, s := range r.Scenarios {
		r.Passed = r.Passed && s.Passed
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
	b.WriteString("| scenario | expected | detected | first write after injection | detected after injection | detection latency | detected by | remediation | recovered | result |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Scenarios {
		res := "pass"
		if !s.Passed {
			res = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.3f s | %s | %s | %s | %s | %v | %s |\n", s.Name, s.ExpectedClass, orDash(s.DetectedClass),
			s.FirstWriteDelaySeconds, afterInjection(s), latency(s), orDash(strings.Join(s.DetectedBy, " + ")), orDash(s.Remediation), s.Recovered, res)
	}
	b.WriteString("\nDetection latency runs from the start of the first write after the injection (rejected, or let through\n")
	b.WriteString("unchecked when the webhook fails open) to the agent's finding; negative means the agent knew before that\n")
	b.WriteString("write. It includes the API server's own retry of a call whose connection was reset. Failures that send no\n")
	b.WriteString("packet are measured against a write 1 s after the injection.\n")
	for _, s := range r.Scenarios {
		fmt.Fprintf(&b, "\n## %s\n\n", s.Name)
		if s.FailedCallError != "" {
			fmt.Fprintf(&b, "The API server answered the write with:\n\n```\n%s\n```\n\n", s.FailedCallError)
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
	return fmt.Sprintf("%.3f s", s.DetectAfterInjectionSeconds)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
