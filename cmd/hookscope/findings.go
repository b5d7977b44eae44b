package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
)

// findingsOptions are the flags of `hookscope findings`.
type findingsOptions struct {
	output   string
	all      bool
	within   time.Duration
	watch    bool
	interval time.Duration
	query    agentQuery
}

// defaultAgentNamespace is the chart's and the kustomize base's namespace.
const defaultAgentNamespace = "hookscope"

func findingsCommand(kube *kubeFlags) *cobra.Command {
	o := findingsOptions{}
	cmd := &cobra.Command{
		Use:   "findings",
		Short: "Every agent's open and recently resolved findings, with the node that saw each",
		Long: `findings gathers the findings of every hookscope agent in the cluster: the agent on a
webhook backend's node reports what its kernel and probes see there, and the agent holding
the Lease reports the cluster-wide failures (a Service gone, no endpoints, what a failure
breaks). Each row names the node whose agent reports it.

The agents are read through the API server (as kubectl get --raw
/api/v1/namespaces/NS/pods/POD:PORT/proxy/findings would): you need get and list on pods
and get on pods/proxy in the agents' namespace (-n, default hookscope), and the agents
must serve their findings on their peer port (the chart's agent.peerFindings=true).
An agent that cannot be read is named on stderr and the others are listed.`,
		Example: `  # open findings and those resolved in the last 15 minutes, with the node that saw each
  hookscope findings
  # every finding the agents still hold, resolved ones included, with more columns
  hookscope findings --all -o wide
  # follow them: print each finding that opens, changes or resolves
  hookscope findings --watch
  # agents installed in another namespace, as JSON
  hookscope findings -n monitoring -o json
  # node, call-out and class, one finding a line
  hookscope findings -o jsonpath='{range .items[*]}{.node}{" "}{.webhook.name}{" "}{.class}{"\n"}{end}'`,
		Args:              cobra.NoArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := parseOutput(o.output, "table", "wide")
			if err != nil {
				return err
			}
			client, _, err := kube.clients()
			if err != nil {
				return err
			}
			o.query.namespace = namespaceFilter(cmd, kube)
			if o.query.namespace == "" {
				o.query.namespace = defaultAgentNamespace
			}
			if o.all {
				o.within = 0
			}
			gather := func(ctx context.Context) (FindingList, error) {
				list, err := gatherFindings(ctx, client, o.query)
				list.Items = recent(list.Items, o.within, time.Now())
				return list, err
			}
			if o.watch {
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				return watchFindings(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), out, gather, o.interval)
			}
			list, err := gather(cmd.Context())
			warnUnreachable(cmd.ErrOrStderr(), list.Unreachable)
			if err != nil {
				return err
			}
			if len(list.Items) == 0 && !out.structured() {
				fmt.Fprintln(cmd.ErrOrStderr(), noFindingsLine(o.within))
				return nil
			}
			return printFindings(cmd.OutOrStdout(), out, list, true, time.Now())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "table", outputHelp("table", "wide", "json", "yaml"))
	f.BoolVar(&o.all, "all", false, "also list every resolved finding the agents still hold (each keeps its latest 200)")
	f.DurationVar(&o.within, "resolved-within", 15*time.Minute, "list the findings resolved this recently, beside the open ones")
	f.BoolVarP(&o.watch, "watch", "w", false, "after the list, read the agents again every --interval and print each finding that opens, changes or resolves, until interrupted")
	f.DurationVar(&o.interval, "interval", 2*time.Second, "how often --watch reads the agents")
	f.StringVarP(&o.query.selector, "selector", "l", "app.kubernetes.io/name=hookscope-agent", "labels of the agent pods")
	f.IntVar(&o.query.port, "port", 0, "the agents' port that serves /findings (default: each agent's peer port, from its pod's arguments)")
	f.DurationVar(&o.query.timeout, "agent-timeout", 5*time.Second, "bound on one agent's answer")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]cobra.Completion{"table", "wide", "json", "yaml", "jsonpath="}, cobra.ShellCompDirectiveNoFileComp|cobra.ShellCompDirectiveNoSpace))
	return cmd
}

// noFindingsLine is what findings says when there is nothing to list.
func noFindingsLine(within time.Duration) string {
	if within <= 0 {
		return "No findings: every agent read reports none."
	}
	return fmt.Sprintf("No open findings, and none resolved in the last %s (--all lists older ones).", duration.HumanDuration(within))
}

// warnUnreachable names on w each agent that could not be read.
func warnUnreachable(w io.Writer, unreachable []UnreachableAgent) {
	for _, u := range unreachable {
		node := u.Node
		if node == "" {
			node = "no node"
		}
		fmt.Fprintf(w, "Warning: agent %s (%s) not read: %s\n", u.Agent, node, u.Reason)
	}
}

// printFindings prints the list: a table (headers: with its header line),
// or the list as one object.
func printFindings(w io.Writer, out *output, list FindingList, headers bool, now time.Time) error {
	if list.Items == nil {
		list.Items = []NodeFinding{}
	}
	if out.structured() {
		return out.printObject(w, "FindingList", list)
	}
	p := printers.NewTablePrinter(printers.PrintOptions{Wide: out.format == "wide", NoHeaders: !headers})
	return p.PrintObj(findingsTable(list.Items, now), w)
}

// findingsTable is the rows as a table: kubectl's columns of priority 1
// are shown by -o wide only.
func findingsTable(rows []NodeFinding, now time.Time) *metav1.Table {
	t := &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{
		{Name: "Node", Type: "string"}, {Name: "Class", Type: "string"}, {Name: "Call-Out", Type: "string"},
		{Name: "Effect", Type: "string"}, {Name: "Since", Type: "string"}, {Name: "Resolved", Type: "string"},
		{Name: "Kind", Type: "string", Priority: 1}, {Name: "Configuration", Type: "string", Priority: 1},
		{Name: "Backend", Type: "string", Priority: 1}, {Name: "Impact", Type: "string", Priority: 1},
		{Name: "Agent", Type: "string", Priority: 1}, {Name: "ID", Type: "string", Priority: 1},
	}}
	for _, r := range rows {
		resolved := "-"
		if r.Resolved != nil {
			resolved = ago(now, *r.Resolved)
		}
		backend := "-"
		switch {
		case r.Backend.IsValid():
			backend = r.Backend.String()
		case r.URL != "":
			backend = r.URL
		}
		impact := "-"
		if r.Impact != nil {
			impact = strings.TrimSpace(r.Impact.Kind + " " + r.Impact.Object)
		}
		t.Rows = append(t.Rows, metav1.TableRow{Cells: []any{dashed(r.Node), string(r.Class), r.Webhook.Name, string(r.Effect),
			duration.HumanDuration(now.Sub(r.FirstSeen)), resolved,
			r.Webhook.Kind, dashed(r.Webhook.Configuration), backend, impact, r.Agent, r.ID}})
	}
	return t
}

// ago is how long before now t was, as kubectl writes ages.
func ago(now, t time.Time) string { return duration.HumanDuration(now.Sub(t)) + " ago" }

func dashed(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
