package main

import (
	"strings"
	"testing"
)

// TestKubectlPlugin: run as kubectl-hookscope (kubectl's plugin name), the
// CLI's help speaks of `kubectl hookscope`; run as hookscope, of hookscope.
func TestKubectlPlugin(t *testing.T) {
	for invoked, want := range map[string]string{"kubectl-hookscope": "kubectl hookscope status", "hookscope": "hookscope status"} {
		root := rootCommand(invoked)
		var out strings.Builder
		root.SetOut(&out)
		root.SetArgs([]string{"status", "--help"})
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), want) || (invoked == "hookscope" && strings.Contains(out.String(), "kubectl")) {
			t.Errorf("invoked as %s: help lacks %q:\n%s", invoked, want, out.String())
		}
	}
}
