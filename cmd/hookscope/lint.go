package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookscope/hookscope/inventory"
	"github.com/hookscope/hookscope/risk"
)

// lint runs the agent's risk rules on manifests, before they are applied:
// what `hookscope status` would say of the webhook configurations,
// APIServices and CRDs' conversion webhooks once installed. It reads no
// cluster.
type lintOptions struct {
	files       []string
	failOn      string
	output      string
	certHorizon time.Duration
	namespace   string // of the namespaced objects that name none, as kubectl apply -n
}

// lintClock is the time caBundles are judged at (tests fix it).
var lintClock = time.Now

// The --fail-on thresholds: the risk severities, and none.
var failOnValues = []string{string(risk.Critical), string(risk.Warning), string(risk.Info), "none"}

func lintCommand(kube *kubeFlags) *cobra.Command {
	o := &lintOptions{}
	cmd := &cobra.Command{
		Use:   "lint -f FILE|DIR|-",
		Short: "Check webhook configurations in manifests (a Helm chart's output, a directory) for the risks status reports, before they are applied",
		Long: `lint reads manifests (multi-document YAML or JSON, kubectl's List, a Helm chart's
rendered output, a directory of them read recursively) and judges the admission webhook
configurations, APIServices and CRD conversion webhooks in them with the rules the agent
applies in the cluster: webhooks that fail closed on kube-system pods, leases, nodes or
authentication, on their own pods, with no exclusion; timeouts that stack past the
lease-renewal budget; one replica; no PodDisruptionBudget; a NetworkPolicy that shuts
the API server out; a caBundle whose CA expires; configurations the API server rejects.
The Services, Deployments, StatefulSets, PodDisruptionBudgets, NetworkPolicies and
Namespaces among the manifests say where the webhooks' pods run and how many there are;
other objects are skipped. Everything one run reads is judged as one cluster: the
timeouts of two charts' webhooks on the same requests add up. -n names the namespace of
the objects that name none (as for kubectl apply; default: default).

Exit status: 0 when no risk is as severe as --fail-on; 1 when one is; 2 when an input
could not be read (its error names the file, the document and its line; every other
document is still judged).`,
		Example: `  # a chart, before it is installed
  helm template kyverno kyverno/kyverno -n kyverno | hookscope lint -f -
  # a directory of manifests; fail CI on warnings too
  hookscope lint -f deploy/ --fail-on=warning
  # SARIF for code scanning
  hookscope lint -f manifests.yaml -o sarif > hookscope.sarif`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.namespace = namespaceFilter(cmd, kube)
			return runLint(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o, lintClock())
		},
	}
	f := cmd.Flags()
	f.StringSliceVarP(&o.files, "filename", "f", nil, `manifests to check: files, directories (recursive: .yaml, .yml, .json) or - for stdin; repeat or separate with commas`)
	f.StringVar(&o.failOn, "fail-on", string(risk.Critical), "exit 1 when a risk is at least this severe: critical, warning, info or none")
	f.StringVarP(&o.output, "output", "o", "text", "text, json or sarif (SARIF 2.1.0, for code scanning)")
	f.DurationVar(&o.certHorizon, "cert-horizon", 30*24*time.Hour, "report a caBundle CA that expires within this horizon")
	_ = cmd.MarkFlagRequired("filename")
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	return cmd
}

// lintFinding is one risk and where its object was read.
type lintFinding struct {
	risk.Risk
	Where manifestPlace `json:"-"`
}

// lintResult is what lint found in its inputs.
type lintResult struct {
	Findings []lintFinding
	Errors   []error
	// Judged counts the call-outs judged; Skipped the objects that are
	// none and say nothing of one.
	Judged, Skipped int
}

func runLint(stdin io.Reader, out, errOut io.Writer, o *lintOptions, now time.Time) error {
	if !slices.Contains(failOnValues, o.failOn) {
		return fmt.Errorf("--fail-on %q: want %s", o.failOn, strings.Join(failOnValues, ", "))
	}
	if o.output != "text" && o.output != "json" && o.output != "sarif" {
		return fmt.Errorf("-o %q: want text, json or sarif", o.output)
	}
	if len(o.files) == 0 {
		return fmt.Errorf("no input: -f FILE, -f DIR or -f - (stdin)")
	}
	objs, errs := readManifests(o.files, stdin)
	res := lintObjects(objs, o.namespace, o.certHorizon, now)
	res.Errors = append(errs, res.Errors...)
	if err := writeLint(out, o.output, res); err != nil {
		return err
	}
	for _, e := range res.Errors {
		fmt.Fprintln(errOut, "hookscope lint:", e)
	}
	switch {
	case len(res.Errors) > 0:
		return &exitError{code: 2}
	case failing(res.Findings, o.failOn) > 0:
		return &exitError{code: 1}
	}
	return nil
}

// failing counts the findings at least as severe as failOn.
func failing(fs []lintFinding, failOn string) int {
	n := 0
	for _, f := range fs {
		if failOn != "none" && severityRank(f.Severity) <= severityRank(risk.Severity(failOn)) {
			n++
		}
	}
	return n
}

func severityRank(s risk.Severity) int {
	switch s {
	case risk.Critical:
		return 0
	case risk.Warning:
		return 1
	}
	return 2
}

// lintObjects judges the call-outs among objs.
func lintObjects(objs []manifestObject, namespace string, horizon time.Duration, now time.Time) lintResult {
	set, errs := collectManifests(objs, namespace)
	res := lintResult{Errors: errs, Skipped: set.skipped}
	listed := inventory.FromLists(set.vwcs, set.mwcs, set.apis, set.convs, set.services, nil)
	listed.Webhooks = set.withBackends(listed.Webhooks)
	res.Judged = len(listed.Webhooks)
	backends := set.backendsByRef(listed.Webhooks)
	var risks []risk.Risk
	risks = append(risks, risk.Analyze(listed.Validating, listed.Mutating, set.namespaces, backends)...)
	risks = append(risks, risk.AggregatedAPIs(listed.Webhooks)...)
	cas, _ := risk.CABundles(listed.Webhooks, horizon, now)
	risks = append(risks, cas...)
	risks = append(risks, risk.DisruptionBudgets(listed.Webhooks, set.budgets, set.pod)...)
	risks = append(risks, risk.NetworkPolicies(listed.Webhooks, set.policies, set.pod)...)
	for _, r := range risks {
		res.Findings = append(res.Findings, lintFinding{Risk: r, Where: set.places[r.Webhook.Kind+"/"+r.Webhook.Configuration]})
	}
	// The most severe first, then as the inputs read.
	slices.SortStableFunc(res.Findings, func(x, y lintFinding) int {
		return cmp.Or(cmp.Compare(severityRank(x.Severity), severityRank(y.Severity)), strings.Compare(x.Where.file, y.Where.file),
			cmp.Compare(x.Where.doc, y.Where.doc), strings.Compare(x.Webhook.Name, y.Webhook.Name), strings.Compare(string(x.Kind), string(y.Kind)))
	})
	return res
}
