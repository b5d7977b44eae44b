package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/guard"
	kubeapi "github.com/hookscope/hookscope/internal/kube"
	"github.com/hookscope/hookscope/inventory"
	probepkg "github.com/hookscope/hookscope/probe"
	"github.com/hookscope/hookscope/risk"
)

// WebhookStatus is one row of `hookscope status`.
type WebhookStatus struct {
	Kind          string   `json:"kind"`
	Configuration string   `json:"configuration"`
	Name          string   `json:"name"`
	FailurePolicy string   `json:"failurePolicy"`
	Service       string   `json:"service,omitempty"`
	URL           string   `json:"url,omitempty"`
	API           string   `json:"api,omitempty"` // an aggregated API's group/version
	Ready         int      `json:"readyBackends"`
	Backends      int      `json:"backends"`
	Health        string   `json:"health"`
	Detail        string   `json:"detail,omitempty"`
	CertNotAfter  string   `json:"certNotAfter,omitempty"`
	Risks         []string `json:"risks,omitempty"`
	// Guarded says what the agent's guard changed in the webhook and since
	// when ("" when nothing).
	Guarded string `json:"guarded,omitempty"`
	// Untraced is how many backends run on nodes with no hookscope agent
	// (no kernel sees their calls; the agent holding the Lease probes them).
	Untraced int `json:"untracedBackends,omitempty"`

	// risks are the risks whole, for explain.
	risks []risk.Risk
}

func statusCommand(kube *kubeFlags) *cobra.Command {
	var (
		outputFlag string
		probe      bool
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Every call-out: health and why, failurePolicy, backends, certificate expiry, risks",
		Long: `status reads the cluster as the API server sees it: each admission webhook's, conversion
webhook's and aggregated API's Service, endpoints and backend pods (service not found, no
endpoints, Pending pods, a port the Service lacks) and the risks of its configuration.
Broken call-outs come first. With --probe it also calls each endpoint the way the API
server does (TLS, ServerName <svc>.<ns>.svc, the caBundle as roots): run it where pod IPs
are reachable (a node, a pod). It only reads.

Call-outs are cluster-scoped: -n NAMESPACE lists only those whose Service is in NAMESPACE.`,
		Example: `  hookscope status
  # more columns: the Service or URL, the API, the serving certificate's expiry
  hookscope status -o wide --probe
  # another cluster of the kubeconfig, as another user
  hookscope status --context staging --as jane
  # the call-outs served from one namespace, as JSON
  hookscope status -n kyverno -o json
  # the names of the broken ones
  hookscope status -o jsonpath='{range .items[?(@.health!="Healthy")]}{.name}{"\n"}{end}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := parseOutput(outputFlag, "table", "wide", "name")
			if err != nil {
				return err
			}
			client, api, err := kube.callOutClients()
			if err != nil {
				return err
			}
			rows, err := collectStatus(cmd.Context(), client, api, probe, timeout)
			if err != nil {
				return err
			}
			rows = inNamespace(rows, namespaceFilter(cmd, kube))
			if len(rows) == 0 && !out.structured() {
				fmt.Fprintln(cmd.ErrOrStderr(), "No call-outs found.")
				return nil
			}
			return printStatus(cmd.OutOrStdout(), out, rows)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&outputFlag, "output", "o", "table", outputHelp("table", "wide", "name", "json", "yaml"))
	f.BoolVar(&probe, "probe", false, "also probe each endpoint as the API server would (needs pod IPs reachable)")
	f.DurationVar(&timeout, "probe-timeout", 3*time.Second, "bound on one probe")
	return cmd
}

// inNamespace are the rows whose Service is in ns (all when ns is "").
func inNamespace(rows []WebhookStatus, ns string) []WebhookStatus {
	if ns == "" {
		return rows
	}
	var out []WebhookStatus
	for _, r := range rows {
		if strings.HasPrefix(r.Service, ns+"/") {
			out = append(out, r)
		}
	}
	return out
}

// statusCertHorizon is how soon a caBundle's CA must expire for status to
// call it a risk: the agent's default horizon.
const statusCertHorizon = 7 * 24 * time.Hour

// collectStatus lists every call-out with its
// health and risks.
func collectStatus(ctx context.Context, c kubernetes.Interface, api kubeapi.API, probe bool, timeout time.Duration) ([]WebhookStatus, error) {
	inv, err := listCallOuts(ctx, c, api)
	if err != nil {
		return nil, err
	}
	risks := map[callout.Ref][]risk.Risk{}
	backends := map[callout.Ref][]callout.Backend{}
	for _, w := range inv.Webhooks {
		backends[w.Ref] = w.Backends
	}
	cas, _ := risk.CABundles(inv.Webhooks, statusCertHorizon, time.Now())
	all := append(risk.Analyze(inv.Validating, inv.Mutating, nil, backends), risk.AggregatedAPIs(inv.Webhooks)...)
	for _, r := range append(all, cas...) {
		risks[r.Webhook] = append(risks[r.Webhook], r)
	}
	pods := inventory.APIPodLister{Client: api}
	agentNodes := agentNodesOf(ctx, c)
	var rows []WebhookStatus
	for _, w := range inv.Webhooks {
		row := WebhookStatus{Kind: w.Ref.Kind, Configuration: w.Ref.Configuration, Name: w.Ref.Name, FailurePolicy: w.FailurePolicy,
			URL: w.URL, API: w.API, Backends: len(w.Backends), Health: string(findings.Healthy), risks: risks[w.Ref]}
		for _, r := range row.risks {
			row.Risks = append(row.Risks, string(r.Kind)+"("+string(r.Severity)+")")
		}
		row.Guarded = guardedLine(inv, w.Ref)
		if w.Service != nil {
			row.Service = fmt.Sprintf("%s/%s:%d", w.Service.Namespace, w.Service.Name, w.Service.Port)
		}
		for _, b := range w.Backends {
			if b.Ready {
				row.Ready++
			}
			if agentNodes != nil && (b.Pod == nil || !agentNodes[b.Pod.Node]) {
				row.Untraced++
			}
		}
		class, detail, _ := inventory.Diagnose(ctx, w, pods)
		if class != findings.Healthy && class != "" {
			row.Health, row.Detail = string(class), detail
		}
		if probe && class == findings.Healthy && w.Service != nil {
			for _, b := range w.Backends {
				r := probepkg.Probe(ctx, b.Addr, w.Service.ServerName(), w.CABundle, timeout)
				if r.Leaf != nil && row.CertNotAfter == "" {
					row.CertNotAfter = r.Leaf.NotAfter.UTC().Format(time.RFC3339)
				}
				if r.Class != findings.Healthy {
					row.Health, row.Detail = string(r.Class), b.Addr.String()+": "+r.Detail
					break
				}
			}
		}
		if row.Health == string(findings.Healthy) && row.Detail == "" && !probe {
			row.Detail = "objects look callable (--probe checks TLS)"
		}
		rows = append(rows, row)
	}
	// Broken first, then by name: what an SRE reads in an incident.
	sort.SliceStable(rows, func(i, j int) bool {
		bi, bj := rows[i].Health != string(findings.Healthy), rows[j].Health != string(findings.Healthy)
		if bi != bj {
			return bi
		}
		return rows[i].Name < rows[j].Name
	})
	return rows, nil
}

// StatusList is status's -o json and -o yaml: the rows, as kubectl prints
// a list.
type StatusList struct {
	Items []WebhookStatus `json:"items"`
}

func printStatus(w io.Writer, out *output, rows []WebhookStatus) error {
	if rows == nil {
		rows = []WebhookStatus{}
	}
	switch {
	case out.structured():
		return out.printObject(w, "StatusList", StatusList{Items: rows})
	case out.format == "name":
		for _, r := range rows {
			fmt.Fprintln(w, r.Name)
		}
		return nil
	}
	return printTable(w, statusTable(rows), out.format == "wide")
}

// statusTable is the rows as a table: kubectl's columns of priority 1 are
// shown by -o wide only.
func statusTable(rows []WebhookStatus) *metav1.Table {
	t := &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string"}, {Name: "Kind", Type: "string"}, {Name: "Configuration", Type: "string"},
		{Name: "Policy", Type: "string"}, {Name: "Backends", Type: "string"}, {Name: "Health", Type: "string"},
		{Name: "Risks", Type: "string"}, {Name: "Detail", Type: "string"},
		{Name: "Calls", Type: "string", Priority: 1}, {Name: "API", Type: "string", Priority: 1},
		{Name: "Cert-Not-After", Type: "string", Priority: 1},
	}}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, r := range rows {
		backends := fmt.Sprintf("%d/%d", r.Ready, r.Backends)
		if r.Untraced > 0 {
			backends += fmt.Sprintf(" (%d untraced)", r.Untraced)
		}
		calls := r.Service
		if calls == "" {
			calls = r.URL
		}
		detail := r.Detail
		if r.Guarded != "" {
			detail = strings.TrimPrefix(detail+"; "+r.Guarded, "; ")
		}
		t.Rows = append(t.Rows, metav1.TableRow{Cells: []any{r.Name, r.Kind, r.Configuration, dash(r.FailurePolicy), backends,
			r.Health, dash(strings.Join(r.Risks, ",")), dash(detail), dash(calls), dash(r.API), dash(r.CertNotAfter)}})
	}
	return t
}

// agentNodes are the nodes hookscope's agents run on, from their pods
// (label app.kubernetes.io/name=hookscope-agent, any namespace); nil when
// none are found (no agent installed, or not readable): then nothing is
// called untraced.
func agentNodesOf(ctx context.Context, c kubernetes.Interface) map[string]bool {
	list, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=hookscope-agent"})
	if err != nil || len(list.Items) == 0 {
		return nil
	}
	nodes := map[string]bool{}
	for _, p := range list.Items {
		if p.Spec.NodeName != "" {
			nodes[p.Spec.NodeName] = true
		}
	}
	return nodes
}

// listCallOuts lists and resolves every call-out once (dyn nil: the
// webhooks only).
// guardedLine is what the guard changed in webhook ref, from its
// configuration's annotation.
func guardedLine(inv inventory.Listed, ref callout.Ref) string {
	for _, c := range inv.Validating {
		if ref.Kind == callout.KindValidating && c.Name == ref.Configuration {
			return guard.Changed(c.Annotations, ref.Name)
		}
	}
	for _, c := range inv.Mutating {
		if ref.Kind == callout.KindMutating && c.Name == ref.Configuration {
			return guard.Changed(c.Annotations, ref.Name)
		}
	}
	return ""
}

func listCallOuts(ctx context.Context, c kubernetes.Interface, api kubeapi.API) (inventory.Listed, error) {
	vwcs, err := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return inventory.Listed{}, fmt.Errorf("listing validating webhook configurations: %w", err)
	}
	mwcs, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return inventory.Listed{}, fmt.Errorf("listing mutating webhook configurations: %w", err)
	}
	svcs, err := c.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return inventory.Listed{}, fmt.Errorf("listing Services: %w", err)
	}
	slices, err := c.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return inventory.Listed{}, fmt.Errorf("listing EndpointSlices: %w", err)
	}
	var (
		apis  []callout.APIService
		convs []callout.Conversion
	)
	if apis, err = inventory.ListAPIServices(ctx, api); err != nil {
		return inventory.Listed{}, err
	}
	if convs, err = inventory.ListConversions(ctx, api); err != nil {
		return inventory.Listed{}, err
	}
	return inventory.FromLists(vwcs.Items, mwcs.Items, apis, convs, svcs.Items, slices.Items), nil
}
