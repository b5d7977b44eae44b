//go:build linux

// Package scenarios is hookscope's game day: each documented admission
// webhook failure is one e2e-framework feature that injects the failure on a
// real API server, checks that the write fails as users see it, checks that
// the agent detects and names it (and that its span reaches Jaeger), applies
// the documented fix and checks recovery. The run writes
// chaos-report/report.json and report.md.
package scenarios

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/hookscope/hookscope/chaos"
)

var (
	testenv env.Environment
	lab     *chaos.Lab
)

// reportDir is where the game day writes its report: $HOOKSCOPE_REPORT_DIR,
// else chaos-report/ at the repository root.
func reportDir() string {
	if d := os.Getenv("HOOKSCOPE_REPORT_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "chaos-report")
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "scenarios: the game day needs root (network namespaces, eBPF); skipping")
		os.Exit(0)
	}
	testenv = env.NewWithConfig(envconf.New())
	testenv.Setup(func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		dir, err := os.MkdirTemp("", "hookscope-gameday-")
		if err != nil {
			return ctx, err
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		agentBin, cliBin := chaos.BinariesFromEnv()
		lab, err = chaos.StartLab(sctx, chaos.LabOptions{Dir: dir, AgentBinary: agentBin, CLIBinary: cliBin})
		if err != nil {
			return ctx, fmt.Errorf("starting the game day's lab (files in %s): %w", dir, err)
		}
		cfg.WithKubeconfigFile(lab.Provider.Kubeconfig())
		return ctx, nil
	})
	testenv.Finish(func(ctx context.Context, _ *envconf.Config) (context.Context, error) {
		if lab == nil {
			return ctx, nil
		}
		if f, err := os.Open(lab.Provider.APIServerLog()); err == nil {
			if err := lab.Report.AddBaselines(f); err != nil {
				fmt.Fprintf(os.Stderr, "game day: baselines: %v\n", err)
			}
			f.Close()
		}
		werr := lab.Report.Write(reportDir())
		if werr == nil {
			abs, _ := filepath.Abs(reportDir())
			fmt.Fprintf(os.Stderr, "game day report: %s/report.md (lab files: %s)\n", abs, lab.Dir)
		}
		serr := lab.Stop(ctx)
		if werr != nil {
			return ctx, werr
		}
		return ctx, serr
	})
	os.Exit(testenv.Run(m))
}
