// Command hookscope-agent is the node agent alone, as the image ships it:
// `hookscope agent` of the CLI binary without the triage commands, and
// without client-go's typed clientset, whose scheme registers every API
// group Kubernetes has. That keeps about 22 MB of binary (60 MB -> 38 MB,
// measured), and their resident pages, off every node. The image installs it as /hookscope, so
// the DaemonSet runs `hookscope agent ...` either way.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/hookscope/hookscope/cmd/internal/agentcmd"
)

func main() {
	root := &cobra.Command{
		Use:           "hookscope",
		Short:         "hookscope's node agent (the CLI's triage commands are in the hookscope binary)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(agentcmd.Command())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hookscope:", err)
		os.Exit(1)
	}
}
