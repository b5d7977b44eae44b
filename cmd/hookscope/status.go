package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
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
	// Untraced is how many backends run on nodes with no hookscope agent
	// (no kernel sees their calls; the agent holding the Lease probes them).
	Untraced int `json:"untracedBackends,omitempty"`
}

func statusCommand() *cobra.Command {
	var (
		kubeconfig string
		output     string
		probe      bool
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Every webhook: health and why, failurePolicy, backends, certificate expiry, risks",
		Long: `status reads the cluster as the API server sees it: each webhook's Service, endpoints
and backend pods (service not found, no endpoints, Pending pods, a port the Service lacks)
and the risks of its configuration. With --probe it also calls each endpoint the way the
API server does (TLS, ServerName <svc>.<ns>.svc, the caBundle as roots): run it where pod
IPs are reachable (a node, a pod). It only reads.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" && output != "yaml" {
				return fmt.Errorf("--output %q: want table, json or yaml", output)
			}
			cfg, err := restConfig(kubeconfig)
			if err != nil {
				return err
			}
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("building the Kubernetes client: %w", err)
			}
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("building the Kubernetes client: %w", err)
			}
			rows, err := collectStatus(cmd.Context(), client, dyn, probe, timeout)
			if err != nil {
				return err
			}
			return printStatus(cmd.OutOrStdout(), output, rows)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file (default: $KUBECONFIG)")
	f.StringVarP(&output, "output", "o", "table", "table, json or yaml")
	f.BoolVar(&probe, "probe", false, "also probe each endpoint as the API server would (needs pod IPs reachable)")
	f.DurationVar(&timeout, "probe-timeout", 3*time.Second, "bound on one probe")
	return cmd
}

// statusCertHorizon is how soon a caBundle's CA must expire for status to
// call it a risk: the agent's default horizon.
const statusCertHorizon = 7 * 24 * time.Hour

// collectStatus lists every call-out (dyn nil: the webhooks only) with its
// health and risks.
func collectStatus(ctx context.Context, c kubernetes.Interface, dyn dynamic.Interface, probe bool, timeout time.Duration) ([]WebhookStatus, error) {
	inv, err := listCallOuts(ctx, c, dyn)
	if err != nil {
		return nil, err
	}
	risks := map[callout.Ref][]string{}
	backends := map[callout.Ref][]callout.Backend{}
	for _, w := range inv.Webhooks {
		backends[w.Ref] = w.Backends
	}
	cas, _ := risk.CABundles(inv.Webhooks, statusCertHorizon, time.Now())
	all := append(risk.Analyze(inv.Validating, inv.Mutating, nil, backends), risk.AggregatedAPIs(inv.Webhooks)...)
	for _, r := range append(all, cas...) {
		risks[r.Webhook] = append(risks[r.Webhook], string(r.Kind)+"("+string(r.Severity)+")")
	}
	pods := inventory.APIPodLister{Client: c}
	agentNodes := agentNodesOf(ctx, c)
	var rows []WebhookStatus
	for _, w := range inv.Webhooks {
		row := WebhookStatus{Kind: w.Ref.Kind, Configuration: w.Ref.Configuration, Name: w.Ref.Name, FailurePolicy: w.FailurePolicy,
			URL: w.URL, API: w.API, Backends: len(w.Backends), Health: string(findings.Healthy), Risks: risks[w.Ref]}
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

func printStatus(out io.Writer, format string, rows []WebhookStatus) error {
	if rows == nil {
		rows = []WebhookStatus{}
	}
	switch format {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case "yaml":
		b, err := yaml.Marshal(rows)
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WEBHOOK\tKIND\tCONFIGURATION\tPOLICY\tBACKENDS\tHEALTH\tRISKS\tDETAIL")
	for _, r := range rows {
		risk := strings.Join(r.Risks, ",")
		if risk == "" {
			risk = "-"
		}
		backends := fmt.Sprintf("%d/%d", r.Ready, r.Backends)
		if r.Untraced > 0 {
			backends += fmt.Sprintf(" (%d untraced)", r.Untraced)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Kind, r.Configuration, r.FailurePolicy, backends, r.Health, risk, r.Detail)
	}
	return tw.Flush()
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
func listCallOuts(ctx context.Context, c kubernetes.Interface, dyn dynamic.Interface) (inventory.Listed, error) {
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
	if dyn != nil {
		if apis, err = inventory.ListAPIServices(ctx, dyn); err != nil {
			return inventory.Listed{}, err
		}
		if convs, err = inventory.ListConversions(ctx, dyn); err != nil {
			return inventory.Listed{}, err
		}
	}
	return inventory.FromLists(vwcs.Items, mwcs.Items, apis, convs, svcs.Items, slices.Items), nil
}
