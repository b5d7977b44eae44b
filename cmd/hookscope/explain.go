package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
	kubeapi "github.com/hookscope/hookscope/internal/kube"
	"github.com/hookscope/hookscope/risk"
)

func explainCommand(kube *kubeFlags) *cobra.Command {
	var (
		outputFlag string
		probe      bool
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "explain NAME",
		Short: "Why call-out NAME fails (or could), the evidence, and the fixes ranked for this case",
		Long: `explain follows one call-out (a webhook, an APIService, or a CRD with a conversion
webhook, by the name status prints) from its configuration to its backends, says what
its failure breaks, and ranks the fixes for this case. -o wide adds each risk's
detail and fix; -o table prints its row as status does.`,
		Example: `  hookscope explain mpod.elbv2.k8s.aws
  # every risk in full, with its fix
  hookscope explain v1beta1.metrics.k8s.io -o wide
  # the fixes alone
  hookscope explain validate.kyverno.svc-fail -o jsonpath='{range .fixes[*]}{@}{"\n"}{end}'`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeCallOuts(kube, anyCallOut),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := parseOutput(outputFlag, "text", "wide", "table")
			if err != nil {
				return err
			}
			client, api, err := kube.callOutClients()
			if err != nil {
				return err
			}
			return explainAs(cmd.Context(), cmd.OutOrStdout(), out, client, api, args[0], probe, timeout)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&outputFlag, "output", "o", "text", outputHelp("text", "wide", "table", "json", "yaml"))
	f.BoolVar(&probe, "probe", false, "also probe each endpoint as the API server would (needs pod IPs reachable)")
	f.DurationVar(&timeout, "probe-timeout", 3*time.Second, "bound on one probe")
	return cmd
}

// Explanation is explain's -o json and -o yaml: the call-out as status
// sees it, what its failure breaks, its risks whole, and the fixes, most
// fitting first.
type Explanation struct {
	CallOut WebhookStatus `json:"callOut"`
	// Effect is what its failure breaks; empty while it is healthy.
	Effect string      `json:"effect,omitempty"`
	Risks  []risk.Risk `json:"risks,omitempty"`
	Fixes  []string    `json:"fixes,omitempty"`
}

// explain prints the evidence chain of one call-out and the fixes, most
// fitting first.
func explain(ctx context.Context, out io.Writer, c kubernetes.Interface, api kubeapi.API, name string, probe bool, timeout time.Duration) error {
	return explainAs(ctx, out, &output{format: "text"}, c, api, name, probe, timeout)
}

func explainAs(ctx context.Context, w io.Writer, out *output, c kubernetes.Interface, api kubeapi.API, name string, probe bool, timeout time.Duration) error {
	rows, err := collectStatus(ctx, c, api, probe, timeout)
	if err != nil {
		return err
	}
	var row *WebhookStatus
	for i := range rows {
		if rows[i].Name == name {
			if row != nil {
				return fmt.Errorf("%q names more than one call-out (%s/%s, %s/%s): hookscope status lists them", name, row.Kind, row.Configuration, rows[i].Kind, rows[i].Configuration)
			}
			row = &rows[i]
		}
	}
	if row == nil {
		return fmt.Errorf("no webhook, APIService or conversion webhook %q (hookscope status lists them)", name)
	}
	e := Explanation{CallOut: *row, Risks: row.risks}
	if row.Health != string(findings.Healthy) {
		e.Effect = effectOf(*row)
		e.Fixes = rankFixes(findings.Class(row.Health), *row)
	}
	switch {
	case out.structured():
		return out.printObject(w, "Explanation", e)
	case out.format == "table":
		return printTable(w, statusTable([]WebhookStatus{*row}), false)
	}
	printExplanation(w, e, out.format == "wide")
	return nil
}

// effectOf is what the call-out's failure breaks.
func effectOf(row WebhookStatus) string {
	switch {
	case row.Kind == callout.KindConversion:
		return "reads and writes of " + row.API + " at a version other than the stored one fail, and so do garbage collection and namespace deletion that touch them"
	case row.Kind == callout.KindAPIService:
		return "requests to " + row.API + " fail, and so does the discovery that namespace deletion and garbage collection need"
	case row.FailurePolicy == "Ignore":
		return "the API server lets the writes it matches through unchecked (fails open)"
	}
	return "the API server rejects every write it matches"
}

// printExplanation writes the explanation as prose; wide adds each risk's
// detail and fix.
func printExplanation(out io.Writer, e Explanation, wide bool) {
	row := e.CallOut
	switch row.Kind {
	case callout.KindConversion:
		fmt.Fprintf(out, "conversion webhook of CRD %s (%s): the API server calls it to convert the custom resources between versions; it cannot fail open\n", row.Name, row.API)
	case callout.KindAPIService:
		fmt.Fprintf(out, "aggregated API %s (APIService %s): the API server proxies its requests and discovery; it cannot fail open\n", row.API, row.Name)
	default:
		fmt.Fprintf(out, "%s webhook %s (configuration %s), failurePolicy %s\n", row.Kind, row.Name, row.Configuration, row.FailurePolicy)
	}
	if row.Service != "" {
		fmt.Fprintf(out, "  calls Service %s: %d of %d endpoints ready\n", row.Service, row.Ready, row.Backends)
	} else {
		fmt.Fprintf(out, "  calls URL %s\n", row.URL)
	}
	if e.Effect == "" {
		fmt.Fprintf(out, "  health: Healthy (%s)\n", row.Detail)
	} else {
		fmt.Fprintf(out, "  health: %s: %s\n  effect: %s\n", row.Health, row.Detail, e.Effect)
	}
	if row.CertNotAfter != "" {
		fmt.Fprintf(out, "  serving certificate valid until %s\n", row.CertNotAfter)
	}
	for _, r := range e.Risks {
		fmt.Fprintf(out, "  risk: %s(%s)\n", r.Kind, r.Severity)
		if wide {
			fmt.Fprintf(out, "    %s\n    fix: %s\n", r.Detail, r.Fix)
		}
	}
	if len(e.Fixes) == 0 {
		return
	}
	fmt.Fprintln(out, "fixes, most fitting first:")
	for i, fix := range e.Fixes {
		fmt.Fprintf(out, "  %d. %s\n", i+1, fix)
	}
}

// rankFixes orders the fixes for the failure: restoring the backend
// (Option 1, the findings' own fix for the class) when the cause is known
// and local; letting writes through with failurePolicy Ignore (Option 2)
// when writes must go on now; removing the webhook after a backup (Option
// 3) when it has no backend to restore.
func rankFixes(class findings.Class, r WebhookStatus) []string {
	restore := ""
	if class != findings.CallsFailing && class != findings.TLSHandshakeFailed {
		restore = "Option 1: " + findings.RestoreFix(class, r.webhook())
	}
	ignore := "Option 2: let writes through while it is down: hookscope remediate ignore " + r.Name + " --yes (undo: --revert)"
	remove := "Option 3: remove it after a backup: hookscope remediate remove " + r.Name + " --yes (undo: hookscope restore FILE --yes)"
	var fixes []string
	switch {
	case r.Kind == callout.KindConversion:
		// No failurePolicy, and no safe way around it: restoring the
		// backend is the fix.
		fixes = append(fixes, restore)
	case r.Kind == callout.KindAPIService:
		// No failurePolicy to relax: deleting the APIService (after a
		// backup) is what unblocks namespaces while its backend is down.
		fixes = append(fixes, restore, "Option 2: unblock namespace deletion while it is down: back up and delete it: hookscope remediate remove "+r.Name+
			" (a dry run), then again with --yes; once its backend serves again: hookscope restore FILE --yes (FILE: the backup remove names)")
	case r.FailurePolicy == "Ignore":
		// Writes already go through: fixing the backend is all there is.
		fixes = append(fixes, restore)
	case class == findings.PatchDoesNotApply:
		// The API server rejects a patch it cannot apply whatever the
		// failurePolicy: Ignore changes nothing; removing the webhook does.
		fixes = append(fixes, restore, remove)
	case class == findings.ServiceNotFound && strings.Contains(strings.Join(r.Risks, ","), "BlocksSystemPods"):
		// It blocks system pods (the CNI): unblock the cluster first.
		fixes = append(fixes, ignore, restore, remove)
	case class == findings.ServiceNotFound:
		// Nothing serves it: a leftover of an uninstalled chart.
		fixes = append(fixes, restore, remove, ignore)
	default:
		fixes = append(fixes, restore, ignore, remove)
	}
	var out []string
	for _, f := range fixes {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// webhook is the row as the findings' fix texts read it.
func (r WebhookStatus) webhook() callout.Webhook {
	w := callout.Webhook{Ref: callout.Ref{Kind: r.Kind, Configuration: r.Configuration, Name: r.Name}, FailurePolicy: r.FailurePolicy, URL: r.URL, API: r.API}
	if ns, rest, ok := strings.Cut(r.Service, "/"); ok {
		name, _, _ := strings.Cut(rest, ":")
		w.Service = &callout.ServiceRef{Namespace: ns, Name: name}
	}
	return w
}
