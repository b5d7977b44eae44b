package main

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Which call-outs a command's NAME completes to.
type completeSet int

const (
	anyCallOut   completeSet = iota // explain: webhooks, APIServices with a Service, CRDs with a conversion webhook
	webhooksOnly                    // remediate ignore: admission webhooks, the only ones with a failurePolicy
	removable                       // remediate remove: webhooks and APIServices with a Service
)

// completionTimeout bounds the reads behind one completion: a shell that
// waits on an unreachable cluster is worse than no names.
const completionTimeout = 5 * time.Second

// completeCallOuts completes NAME with the call-outs of the cluster the
// connection flags name (--context included).
func completeCallOuts(kube *kubeFlags, set completeSet) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		names, err := callOutNames(ctx, kube, set)
		if err != nil {
			cobra.CompDebugln("listing call-outs: "+err.Error(), true)
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, n := range names {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// callOutNames are the names of the call-outs of set, sorted, each once.
func callOutNames(ctx context.Context, kube *kubeFlags, set completeSet) ([]string, error) {
	c, dyn, err := kube.clients()
	if err != nil {
		return nil, err
	}
	var names []string
	vwcs, err := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, cfg := range vwcs.Items {
		for _, w := range cfg.Webhooks {
			names = append(names, w.Name)
		}
	}
	mwcs, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, cfg := range mwcs.Items {
		for _, w := range cfg.Webhooks {
			names = append(names, w.Name)
		}
	}
	if set != webhooksOnly {
		// What cannot be listed (RBAC) is left out, not an error: the
		// webhooks are the names most asked for.
		if apis, err := dyn.Resource(apiServicesGVR).List(ctx, metav1.ListOptions{}); err == nil {
			for _, a := range apis.Items {
				if _, ok, _ := unstructured.NestedMap(a.Object, "spec", "service"); ok {
					names = append(names, a.GetName())
				}
			}
		}
	}
	if set == anyCallOut {
		if crds, err := dyn.Resource(crdsGVR).List(ctx, metav1.ListOptions{}); err == nil {
			for _, crd := range crds.Items {
				if s, _, _ := unstructured.NestedString(crd.Object, "spec", "conversion", "strategy"); s == "Webhook" {
					names = append(names, crd.GetName())
				}
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// backupFiles completes restore's FILE with YAML files.
func backupFiles(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return []cobra.Completion{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
}

// completeContexts completes --context with the kubeconfig's contexts
// (and --cluster, --user with its clusters and users), as kubectl does.
func completeContexts(root *cobra.Command, kube *kubeFlags) {
	names := func(of func(raw clientcmdapi.Config) []string) cobra.CompletionFunc {
		return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
			raw, err := kube.ToRawKubeConfigLoader().RawConfig()
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
			}
			out := of(raw)
			slices.Sort(out)
			return out, cobra.ShellCompDirectiveNoFileComp
		}
	}
	_ = root.RegisterFlagCompletionFunc("context", names(func(raw clientcmdapi.Config) []string { return slices.Collect(maps.Keys(raw.Contexts)) }))
	_ = root.RegisterFlagCompletionFunc("cluster", names(func(raw clientcmdapi.Config) []string { return slices.Collect(maps.Keys(raw.Clusters)) }))
	_ = root.RegisterFlagCompletionFunc("user", names(func(raw clientcmdapi.Config) []string { return slices.Collect(maps.Keys(raw.AuthInfos)) }))
	_ = root.RegisterFlagCompletionFunc("namespace", completeNamespaces(kube))
}

// completeNamespaces completes -n with the cluster's namespaces.
func completeNamespaces(kube *kubeFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		c, _, err := kube.clients()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		list, err := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			cobra.CompDebugln("listing namespaces: "+err.Error(), true)
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, ns := range list.Items {
			if strings.HasPrefix(ns.Name, toComplete) {
				out = append(out, ns.Name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
