package main

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestMain runs the CLI itself when a test starts this test binary with
// HOOKSCOPE_TEST_RUN_CLI=1 (cli_test.go): the binary under test, with the
// environment (HOME, KUBECONFIG) of a user's shell.
func TestMain(m *testing.M) {
	if os.Getenv("HOOKSCOPE_TEST_RUN_CLI") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestKubectlPlugin: run as kubectl-hookscope (kubectl's plugin name), the
// CLI's help and examples speak of `kubectl hookscope`; run as hookscope,
// of hookscope.
func TestKubectlPlugin(t *testing.T) {
	for invoked, want := range map[string]string{"kubectl-hookscope": "kubectl hookscope status -o wide", "hookscope": "hookscope status -o wide"} {
		root := rootCommand(invoked)
		var out strings.Builder
		root.SetOut(&out)
		root.SetArgs([]string{"status", "--help"})
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), want) || (invoked == "hookscope" && strings.Contains(out.String(), "kubectl hookscope")) {
			t.Errorf("invoked as %s: help lacks %q:\n%s", invoked, want, out.String())
		}
	}
}

// TestHelp: every command has examples, and nothing a user reads speaks
// of the project's internals.
func TestHelp(t *testing.T) {
	var walk func(prefix string, cmds []*cobra.Command)
	root := rootCommand("hookscope")
	walk = func(prefix string, cmds []*cobra.Command) {
		for _, c := range cmds {
			if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
				continue
			}
			path := prefix + " " + c.Name()
			if c.Runnable() && c.Example == "" {
				t.Errorf("%s: no examples", path)
			}
			var out strings.Builder
			c.SetOut(&out)
			_ = c.Help()
			for _, word := range []string{"seed", "issue ", "the article"} {
				if strings.Contains(strings.ToLower(out.String()), word) {
					t.Errorf("%s --help speaks of %q:\n%s", path, word, out.String())
				}
			}
			walk(path, c.Commands())
		}
	}
	walk("hookscope", root.Commands())
}

// TestAgentTakesNoKubectlFlags: the agent reads its ServiceAccount (or
// its own --kubeconfig): the CLI's --context is refused, not ignored, and
// its help lists the agent's flags only.
func TestAgentTakesNoKubectlFlags(t *testing.T) {
	root := rootCommand("hookscope")
	root.SetArgs([]string{"agent", "--context", "prod", "--no-ebpf"})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "the agent does not take [--context]") {
		t.Errorf("agent --context: %v", err)
	}
	var out strings.Builder
	root = rootCommand("hookscope")
	root.SetOut(&out)
	root.SetArgs([]string{"agent", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "--kubeconfig") || strings.Contains(out.String(), "--context") || strings.Contains(out.String(), "Global Flags") {
		t.Errorf("agent --help:\n%s", out.String())
	}
}

// TestDryRunMode: --yes applies, as --dry-run=none does; without either a
// write is only shown; --yes with a dry run is a contradiction.
func TestDryRunMode(t *testing.T) {
	for _, tc := range []struct {
		yes    bool
		dryRun string
		want   string // "" for an error
	}{
		{false, "", dryRunClient}, {true, "", dryRunNone}, {false, "none", dryRunNone}, {true, "none", dryRunNone},
		{false, "client", dryRunClient}, {false, "server", dryRunServer},
		{true, "client", ""}, {true, "server", ""}, {false, "all", ""},
	} {
		got, err := (&writeOptions{yes: tc.yes, dryRun: tc.dryRun}).mode()
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("--yes=%v --dry-run=%q: %q, %v; want %q", tc.yes, tc.dryRun, got, err, tc.want)
		}
	}
}
