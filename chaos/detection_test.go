//go:build linux

package chaos_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hookscope/hookscope/chaos"
)

// TestGameDayFailsWhenDetectionIsRemoved runs one scenario of the game day
// (service not found) with the agent's detector for it switched off
// (--object-checks=false: no object checks, no API server signals), and
// requires the scenario to fail at its detection step, and the report to
// say so. A game day that passed here would prove nothing.
func TestGameDayFailsWhenDetectionIsRemoved(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the game day against a local cluster")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the game day creates network namespaces and routes")
	}
	bin := os.Getenv("HOOKSCOPE_BIN")
	if bin == "" {
		t.Skip("HOOKSCOPE_BIN (the hookscope binary the game day runs) is not set; make test sets it")
	}
	_, here, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(here))
	reportDir := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-run", "^TestServiceNotFound$", "./scenarios/")
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"HOOKSCOPE_BIN="+bin,
		"HOOKSCOPE_REPORT_DIR="+reportDir,
		"HOOKSCOPE_AGENT_EXTRA_ARGS=--object-checks=false",
	)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the game day passed with its detector removed:\n%s", out)
	}
	if ctx.Err() != nil {
		t.Fatalf("the game day did not finish: %v\n%s", ctx.Err(), out)
	}

	b, err := os.ReadFile(filepath.Join(reportDir, "report.json"))
	if err != nil {
		t.Fatalf("no report from the failed game day (%v); output:\n%s", err, out)
	}
	var rep chaos.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Passed || len(rep.Scenarios) != 1 {
		t.Fatalf("report passed=%v with %d scenarios, want one failed scenario", rep.Passed, len(rep.Scenarios))
	}
	s := rep.Scenarios[0]
	if s.Passed || s.DetectedClass != "" || !s.WriteFailed {
		t.Errorf("scenario %q: passed=%v detected=%q write failed=%v; want the write to fail and nothing detected", s.Name, s.Passed, s.DetectedClass, s.WriteFailed)
	}
	if !strings.Contains(strings.Join(s.Failures, "\n"), "ServiceNotFound") {
		t.Errorf("failures %q do not name the missing detection", s.Failures)
	}
	t.Logf("without its detector the scenario failed as it must: %s", strings.Join(s.Failures, "; "))
}
