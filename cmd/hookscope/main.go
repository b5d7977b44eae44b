// Command hookscope is hookscope's one binary: `hookscope agent` is the node
// agent the DaemonSet runs; the triage commands come beside it.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	root := rootCommand(filepath.Base(os.Args[0]))
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hookscope:", err)
		os.Exit(1)
	}
}

// rootCommand is the CLI. Installed on the PATH as kubectl-hookscope (make
// build writes that link beside the binary), it is the kubectl plugin
// `kubectl hookscope`, and its help says so.
func rootCommand(invokedAs string) *cobra.Command {
	root := &cobra.Command{
		Use:           "hookscope",
		Short:         "Find the admission webhook that is breaking API writes, and why",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	if strings.HasPrefix(invokedAs, "kubectl-") {
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl hookscope"}
	}
	root.AddCommand(agentCommand(), statusCommand(), explainCommand(), remediateCommand(), restoreCommand())
	return root
}
