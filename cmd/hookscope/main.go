// Command hookscope is hookscope's one binary: `hookscope agent` is the node
// agent the DaemonSet runs; the triage commands come beside it.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hookscope/hookscope/cmd/internal/agentcmd"
)

func main() {
	root := rootCommand(filepath.Base(os.Args[0]))
	err := root.Execute()
	var exit *exitError
	switch {
	case errors.As(err, &exit):
		if exit.msg != "" {
			fmt.Fprintln(os.Stderr, "hookscope:", exit.msg)
		}
		os.Exit(exit.code)
	case err != nil:
		fmt.Fprintln(os.Stderr, "hookscope:", err)
		os.Exit(1)
	}
}

// exitError ends the command with code, having printed what it had to
// (lint's verdict for CI: 1 for risks at or above --fail-on, 2 for input
// it could not read).
type exitError struct {
	code int
	msg  string // printed to stderr when not empty
}

func (e *exitError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("exit status %d", e.code)
}

// rootCommand is the CLI. Installed on the PATH as kubectl-hookscope (make
// build writes that link beside the binary), it is the kubectl plugin
// `kubectl hookscope`, and its help says so.
func rootCommand(invokedAs string) *cobra.Command {
	root := &cobra.Command{
		Use:   "hookscope",
		Short: "Find the admission webhook that is breaking API writes, and why",
		Long: `hookscope finds the call-out that is breaking the API server's writes and reads (an
admission webhook, a CRD's conversion webhook, an aggregated API), says why, and applies
the documented fixes. The commands reach the cluster as kubectl does: $KUBECONFIG (a
list of files), else ~/.kube/config, else the pod's ServiceAccount; --context, --as and
the other connection flags work as they do for kubectl.`,
		Example: `  # every call-out, broken first
  hookscope status
  # why one fails, and the fixes for this case
  hookscope explain mpod.elbv2.k8s.aws --context prod
  # what every node's agent reports, open and recently resolved
  hookscope findings
  # check a chart's webhooks before it is installed
  helm template my-release ./chart | hookscope lint -f -`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	kube := newKubeFlags()
	kube.AddFlags(root.PersistentFlags())
	completeContexts(root, kube)
	agent := agentcmd.Command()
	agentIgnoresKubeFlags(agent)
	agent.Example = `  # what the DaemonSet runs (deploy/ has the chart), on each node
  hookscope agent --node-name $NODE_NAME --otlp-endpoint otel-collector.observability:4317
  # on a machine outside the cluster, without eBPF: probes and the API server's signals only
  hookscope agent --kubeconfig ~/.kube/config --no-ebpf --listen 127.0.0.1:9477`
	root.AddCommand(agent, statusCommand(kube), explainCommand(kube), findingsCommand(kube), remediateCommand(kube),
		restoreCommand(kube), lintCommand(kube), versionCommand())
	if strings.HasPrefix(invokedAs, "kubectl-") {
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl hookscope"}
		asPlugin(root)
	}
	return root
}

// asPlugin makes the examples of cmd and its subcommands read as the
// kubectl plugin is typed: kubectl hookscope status.
func asPlugin(cmd *cobra.Command) {
	cmd.Example = strings.NewReplacer("  hookscope ", "  kubectl hookscope ", "| hookscope ", "| kubectl hookscope ").Replace(cmd.Example)
	for _, c := range cmd.Commands() {
		asPlugin(c)
	}
}

// ptrTo is a pointer to a copy of v.
func ptrTo[T any](v T) *T { return &v }
