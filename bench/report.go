// Package bench writes `make bench`'s report: the figures the issues ask
// for, measured side by side in one run, as bench-report/report.json and a
// Markdown summary. Key names are a contract: later work adds keys, never
// renames them.
package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Report is bench-report/report.json.
type Report struct {
	GeneratedAt time.Time `json:"generated_at"`
	Kernel      string    `json:"kernel,omitempty"`
	// BPF is each program's cost per run, from the kernel's bpf_stats.
	BPF []ProgramCost `json:"bpf"`
	// ThroughputRatio is bulk TLS throughput to a backend with the agent's
	// programs attached over throughput with none, in one run.
	ThroughputRatio float64     `json:"throughput_ratio"`
	Throughput      *Throughput `json:"throughput,omitempty"`
}

// ProgramCost is one program's cost on one path.
type ProgramCost struct {
	Program string `json:"program"`
	// Path is "webhook" (traffic of a traced backend) or "rejected"
	// (everything else, turned away at the first map lookup).
	Path       string  `json:"path"`
	NsPerEvent float64 `json:"ns_per_event"`
	Events     int64   `json:"events"`
}

// Throughput is the bulk transfer behind ThroughputRatio.
type Throughput struct {
	Bytes             int64   `json:"bytes_per_run"`
	Runs              int     `json:"runs"`
	AttachedMBps      float64 `json:"attached_mb_per_second"`
	DetachedMBps      float64 `json:"detached_mb_per_second"`
	AttachedPrograms  string  `json:"attached_programs"`
	TransferDirection string  `json:"transfer"`
}

// Goals are the targets the summary compares against.
const (
	GoalNsPerTracepointEvent = 100.0
	GoalThroughputRatio      = 0.98
)

// Write writes report.json and report.md into dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing the bench report: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("writing the bench report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the bench report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.Markdown()), 0o644); err != nil {
		return fmt.Errorf("writing the bench report: %w", err)
	}
	return nil
}

// Markdown is the human summary, with each figure next to its goal.
func (r *Report) Markdown() string {
	var s strings.Builder
	fmt.Fprintf(&s, "# hookscope bench, %s\n\n", r.GeneratedAt.UTC().Format(time.RFC3339))
	if r.Kernel != "" {
		fmt.Fprintf(&s, "Kernel %s. All figures from one run, side by side.\n\n", r.Kernel)
	}
	s.WriteString("## eBPF programs (bpf_stats)\n\n| program | path | ns per event | events | goal |\n|---|---|---:|---:|---|\n")
	for _, c := range r.BPF {
		goal := "-"
		if strings.HasPrefix(c.Program, "tp_") || strings.Contains(c.Program, "tracepoint") {
			goal = fmt.Sprintf("<= %.0f ns: %s", GoalNsPerTracepointEvent, verdict(c.NsPerEvent <= GoalNsPerTracepointEvent))
		}
		fmt.Fprintf(&s, "| %s | %s | %.1f | %d | %s |\n", c.Program, c.Path, c.NsPerEvent, c.Events, goal)
	}
	if t := r.Throughput; t != nil {
		fmt.Fprintf(&s, "\n## Throughput\n\n%s, %d runs of %d MiB each way, alternated.\n\n", t.TransferDirection, t.Runs, t.Bytes>>20)
		fmt.Fprintf(&s, "| attached (%s) | detached | ratio | goal |\n|---:|---:|---:|---|\n", t.AttachedPrograms)
		fmt.Fprintf(&s, "| %.1f MB/s | %.1f MB/s | %.4f | >= %.2f: %s |\n", t.AttachedMBps, t.DetachedMBps, r.ThroughputRatio,
			GoalThroughputRatio, verdict(r.ThroughputRatio >= GoalThroughputRatio))
	}
	return s.String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
