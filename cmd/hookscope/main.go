// Command hookscope is hookscope's one binary: `hookscope agent` is the node
// agent the DaemonSet runs; the triage commands come beside it.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "hookscope",
		Short:         "Find the admission webhook that is breaking API writes, and why",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(agentCommand(), statusCommand(), explainCommand(), remediateCommand(), restoreCommand())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hookscope:", err)
		os.Exit(1)
	}
}
