package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	kubeapi "github.com/hookscope/hookscope/internal/kube"
)

// kubeFlags are kubectl's connection flags (--kubeconfig, --context, -n,
// --as, --request-timeout, ...), read as kubectl reads them: the
// kubeconfig files of $KUBECONFIG (a list), else ~/.kube/config, else the
// pod's ServiceAccount. The CLI commands share one set, persistent on the
// root, so `hookscope --context prod status` and `hookscope status
// --context prod` mean the same.
type kubeFlags struct {
	*genericclioptions.ConfigFlags
}

func newKubeFlags() *kubeFlags {
	return &kubeFlags{genericclioptions.NewConfigFlags(true)}
}

// kubeFlagsFor is a set that reads one kubeconfig file (tests).
func kubeFlagsFor(kubeconfig string) *kubeFlags {
	f := newKubeFlags()
	*f.KubeConfig = kubeconfig
	return f
}

// restConfig is the client configuration the flags and kubeconfig files
// name, with the error an operator can act on when there is none.
func (k *kubeFlags) restConfig() (*rest.Config, error) {
	noConfig := errors.New("no cluster to talk to: no kubeconfig at --kubeconfig, $KUBECONFIG or ~/.kube/config, and not running in a pod")
	cfg, err := k.ToRESTConfig()
	if clientcmd.IsEmptyConfig(err) {
		return nil, noConfig
	}
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	// With no kubeconfig at all, client-go's loader falls back to
	// http://localhost:8080, which is never what a user meant.
	if raw, err := k.ToRawKubeConfigLoader().RawConfig(); err == nil && len(raw.Clusters) == 0 && *k.APIServer == "" &&
		strings.Contains(cfg.Host, "localhost:8080") {
		return nil, noConfig
	}
	cfg.UserAgent = "hookscope/" + versionString() + " " + rest.DefaultKubernetesUserAgent()
	return cfg, nil
}

// clients are the typed and the dynamic client (APIServices and CRDs are
// read through the dynamic one).
func (k *kubeFlags) clients() (kubernetes.Interface, dynamic.Interface, error) {
	cfg, c, err := k.clientset()
	if err != nil {
		return nil, nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("building the Kubernetes client: %w", err)
	}
	return c, dyn, nil
}

// clientset is the typed clientset, and the configuration it was built from.
func (k *kubeFlags) clientset() (*rest.Config, kubernetes.Interface, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, nil, err
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("building the Kubernetes client: %w", err)
	}
	return cfg, c, nil
}

// callOutClients are the typed clientset and the API the inventory lists
// call-outs and pods with.
func (k *kubeFlags) callOutClients() (kubernetes.Interface, kubeapi.API, error) {
	cfg, c, err := k.clientset()
	if err != nil {
		return nil, nil, err
	}
	api, err := kubeapi.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("building the Kubernetes client: %w", err)
	}
	return c, api, nil
}

// namespaceFilter is the namespace -n names on the command line, "" when
// it was not given: call-outs are cluster-scoped, so the kubeconfig
// context's namespace filters nothing, and only an explicit -n narrows
// status to the call-outs served from that namespace.
func namespaceFilter(cmd *cobra.Command, k *kubeFlags) string {
	if f := cmd.Flags().Lookup("namespace"); f != nil && f.Changed {
		return *k.Namespace
	}
	return ""
}

// agentIgnoresKubeFlags makes the agent refuse the CLI's connection flags
// other than --kubeconfig, which it declares itself: it runs in a pod with
// its ServiceAccount, and a flag it would silently ignore is worse than an
// error.
func agentIgnoresKubeFlags(agent *cobra.Command) {
	agent.PreRunE = func(cmd *cobra.Command, _ []string) error {
		var set []string
		cmd.InheritedFlags().VisitAll(func(f *pflag.Flag) {
			if f.Changed && f.Name != "kubeconfig" {
				set = append(set, "--"+f.Name)
			}
		})
		if len(set) > 0 {
			return fmt.Errorf("the agent does not take %v: it reads its pod's ServiceAccount, or the file --kubeconfig names", set)
		}
		return nil
	}
	// Its help lists its own flags only.
	agent.SetUsageTemplate(withoutGlobalFlags(agent.UsageTemplate()))
}

// withoutGlobalFlags is cobra's usage template without its Global Flags
// section.
func withoutGlobalFlags(tmpl string) string {
	const section = "{{if .HasAvailableInheritedFlags}}\n\nGlobal Flags:\n{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}"
	return strings.Replace(tmpl, section, "", 1)
}
