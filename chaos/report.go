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
	b.WriteString("| scenario | expected | detected | detection latency | detected by | remediation | recovered | result |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Scenarios {
		res := "pass"
		if !s.Passed {
			res = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %v | %s |\n", s.Name, s.ExpectedClass, orDash(s.DetectedClass),
			latency(s), orDash(strings.Join(s.DetectedBy, " + ")), orDash(s.Remediation), s.Recovered, res)
	}
	b.WriteString("\nDetection latency is measured from the start of the first write the API server rejected to the agent's finding;\n")
	b.WriteString("negative means the agent knew before that write.\n")
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

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
