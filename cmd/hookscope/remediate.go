package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// The article's fixes, as explicit and reversible writes:
//
//	Option 2: hookscope remediate ignore NAME [--revert]  failurePolicy Ignore (and back to Fail)
//	Option 3: hookscope remediate remove NAME             delete the webhook after a backup
//	          hookscope restore FILE                      put a backup back
//
// and, for an aggregated API whose backend is down (namespaces stuck
// Terminating behind it), remove NAME deletes its APIService after a
// backup, and restore FILE creates it again (remediate_apiservice.go).
//
// Every write is a dry run unless --yes is given, backs the object up to a
// file first, and prints what changed and how to undo it.

type writeOptions struct {
	kubeconfig    string
	configuration string
	backupDir     string
	yes           bool
	kind          string // remove only: "", kindWebhook or kindAPIService
}

// The values of remove's --kind, when NAME names both a webhook and an
// APIService.
const (
	kindWebhook    = "webhook"
	kindAPIService = "apiservice"
)

func (o *writeOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file (default: $KUBECONFIG)")
	f.StringVar(&o.configuration, "configuration", "", "the webhook configuration, when NAME is in more than one")
	f.StringVar(&o.backupDir, "backup-dir", ".", "where backups are written")
	f.BoolVar(&o.yes, "yes", false, "apply the change (without it, only show it)")
}

func (o *writeOptions) client() (kubernetes.Interface, error) {
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return nil, err
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the Kubernetes client: %w", err)
	}
	return c, nil
}

func (o *writeOptions) dynamicClient() (dynamic.Interface, error) {
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return nil, err
	}
	c, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the Kubernetes client: %w", err)
	}
	return c, nil
}

func remediateCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "remediate", Short: "Apply one of the documented fixes to a failing webhook or aggregated API (dry run unless --yes)"}
	var revert bool
	ignore := &cobra.Command{
		Use:   "ignore NAME",
		Short: "Set failurePolicy Ignore on webhook NAME so writes go through while it is down (--revert: back to Fail)",
		Args:  cobra.ExactArgs(1),
	}
	iopts := &writeOptions{}
	iopts.flags(ignore)
	ignore.Flags().BoolVar(&revert, "revert", false, "set failurePolicy back to Fail")
	ignore.RunE = func(cmd *cobra.Command, args []string) error {
		to := admissionv1.Ignore
		if revert {
			to = admissionv1.Fail
		}
		return setFailurePolicy(cmd.Context(), cmd.OutOrStdout(), iopts, args[0], to)
	}

	removeCmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Delete webhook NAME from its configuration, or APIService NAME (e.g. v1beta1.metrics.k8s.io), after writing a backup",
		Args:  cobra.ExactArgs(1),
	}
	ro := &writeOptions{}
	ro.flags(removeCmd)
	removeCmd.Flags().StringVar(&ro.kind, "kind", "", "webhook or apiservice, when NAME names both")
	removeCmd.RunE = func(cmd *cobra.Command, args []string) error {
		return removeCallOut(cmd.Context(), cmd.OutOrStdout(), ro, args[0])
	}
	cmd.AddCommand(ignore, removeCmd)
	return cmd
}

func restoreCommand() *cobra.Command {
	o := &writeOptions{}
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Put a webhook configuration or an APIService back from a backup that remediate wrote",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return restore(cmd.Context(), cmd.OutOrStdout(), o, args[0])
		},
	}
	o.flags(cmd)
	return cmd
}

// located is one webhook inside its configuration.
type located struct {
	kind   string // ValidatingWebhookConfiguration or MutatingWebhookConfiguration
	config string
	index  int
	policy admissionv1.FailurePolicyType
	count  int // webhooks in the configuration
	object any // the configuration, for the backup
}

// findWebhooks is every webhook called name, in configuration if given.
func findWebhooks(ctx context.Context, c kubernetes.Interface, name, configuration string) ([]located, error) {
	var found []located
	vwcs, err := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing validating webhook configurations: %w", err)
	}
	for i := range vwcs.Items {
		cfg := &vwcs.Items[i]
		for j, w := range cfg.Webhooks {
			if w.Name == name && (configuration == "" || configuration == cfg.Name) {
				cfg.APIVersion, cfg.Kind = "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"
				found = append(found, located{cfg.Kind, cfg.Name, j, policyOf(w.FailurePolicy), len(cfg.Webhooks), cfg})
			}
		}
	}
	mwcs, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing mutating webhook configurations: %w", err)
	}
	for i := range mwcs.Items {
		cfg := &mwcs.Items[i]
		for j, w := range cfg.Webhooks {
			if w.Name == name && (configuration == "" || configuration == cfg.Name) {
				cfg.APIVersion, cfg.Kind = "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"
				found = append(found, located{cfg.Kind, cfg.Name, j, policyOf(w.FailurePolicy), len(cfg.Webhooks), cfg})
			}
		}
	}
	return found, nil
}

// onlyOne is the one webhook found, or an error that says where the
// several are.
func onlyOne(found []located, name string) (located, error) {
	switch len(found) {
	case 0:
		return located{}, fmt.Errorf("no webhook %q in any webhook configuration", name)
	case 1:
		return found[0], nil
	}
	return located{}, fmt.Errorf("webhook %q is in %s: choose one with --configuration", name, whereAre(found))
}

func whereAre(found []located) string {
	var where []string
	for _, f := range found {
		where = append(where, f.kind+"/"+f.config)
	}
	return strings.Join(where, ", ")
}

func policyOf(p *admissionv1.FailurePolicyType) admissionv1.FailurePolicyType {
	if p == nil {
		return admissionv1.Fail
	}
	return *p
}

// backup writes the whole configuration to a file and returns its path.
func backup(dir string, l located) (string, error) {
	if m, ok := l.object.(interface {
		SetManagedFields([]metav1.ManagedFieldsEntry)
	}); ok {
		m.SetManagedFields(nil)
	}
	path, err := writeBackup(dir, l.config, l.object)
	if err != nil {
		return "", fmt.Errorf("backing up %s/%s: %w", l.kind, l.config, err)
	}
	return path, nil
}

// writeBackup writes object as YAML to a new file named after name and the
// time, and returns its path. It never overwrites an earlier backup: two
// writes in one second get two files.
func writeBackup(dir, name string, object any) (string, error) {
	b, err := yaml.Marshal(object)
	if err != nil {
		return "", err
	}
	stem := filepath.Join(dir, fmt.Sprintf("hookscope-backup-%s-%s", name, time.Now().UTC().Format("20060102T150405Z")))
	for n := 1; ; n++ {
		path := stem + ".yaml"
		if n > 1 {
			path = fmt.Sprintf("%s-%d.yaml", stem, n)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return path, err
	}
}

// patch applies a JSON patch that first tests the webhook's name at its
// index, so a configuration changed meanwhile is never edited blindly.
func patch(ctx context.Context, c kubernetes.Interface, l located, name string, ops ...map[string]any) error {
	all := append([]map[string]any{{"op": "test", "path": fmt.Sprintf("/webhooks/%d/name", l.index), "value": name}}, ops...)
	body, err := json.Marshal(all)
	if err != nil {
		return err
	}
	if l.kind == "ValidatingWebhookConfiguration" {
		_, err = c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Patch(ctx, l.config, types.JSONPatchType, body, metav1.PatchOptions{})
	} else {
		_, err = c.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, l.config, types.JSONPatchType, body, metav1.PatchOptions{})
	}
	if err != nil {
		return fmt.Errorf("patching %s/%s: %w", l.kind, l.config, err)
	}
	return nil
}

func setFailurePolicy(ctx context.Context, out io.Writer, o *writeOptions, name string, to admissionv1.FailurePolicyType) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	found, err := findWebhooks(ctx, c, name, o.configuration)
	if err != nil {
		return err
	}
	if len(found) == 0 && o.configuration == "" {
		// Say so when NAME is a call-out that has no failurePolicy.
		dyn, err := o.dynamicClient()
		if err != nil {
			return err
		}
		if err := noFailurePolicy(ctx, dyn, name); err != nil {
			return err
		}
	}
	l, err := onlyOne(found, name)
	if err != nil {
		return err
	}
	if l.policy == to {
		fmt.Fprintf(out, "%s/%s webhook %s already has failurePolicy %s: nothing to do\n", l.kind, l.config, name, to)
		return nil
	}
	fmt.Fprintf(out, "%s/%s webhook %s: failurePolicy %s -> %s\n", l.kind, l.config, name, l.policy, to)
	if !o.yes {
		fmt.Fprintln(out, "dry run: nothing changed; add --yes to apply")
		return nil
	}
	path, err := backup(o.backupDir, l)
	if err != nil {
		return err
	}
	if err := patch(ctx, c, l, name, map[string]any{"op": "add", "path": fmt.Sprintf("/webhooks/%d/failurePolicy", l.index), "value": string(to)}); err != nil {
		return err
	}
	undo := "hookscope remediate ignore " + name + " --revert --yes"
	if to == admissionv1.Fail {
		undo = "hookscope remediate ignore " + name + " --yes"
	}
	fmt.Fprintf(out, "changed. backup: %s\nundo: %s (or hookscope restore %s --yes)\n", path, undo, path)
	return nil
}

// removeCallOut takes the call-out called name out after a backup: a
// webhook, or an APIService (an aggregated API). One verb for both rather
// than a remove-apiservice: the operator's step is the same (delete it
// after a backup, put it back with restore FILE), and status and explain
// show both by name alone, so the name they print is the name remove
// takes. An APIService is named <version>.<group> and a webhook by a DNS
// name, so one name can be both; then nothing is guessed, and --kind
// chooses.
func removeCallOut(ctx context.Context, out io.Writer, o *writeOptions, name string) error {
	kind := o.kind
	switch {
	case kind != "" && kind != kindWebhook && kind != kindAPIService:
		return fmt.Errorf("--kind %q: want %s or %s", kind, kindWebhook, kindAPIService)
	case kind == kindAPIService && o.configuration != "":
		return fmt.Errorf("--configuration is for webhooks; an APIService is not in a webhook configuration")
	case o.configuration != "":
		kind = kindWebhook
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	dyn, err := o.dynamicClient()
	if err != nil {
		return err
	}
	var hooks []located
	if kind != kindAPIService {
		if hooks, err = findWebhooks(ctx, c, name, o.configuration); err != nil {
			return err
		}
	}
	var api *unstructured.Unstructured
	if kind != kindWebhook {
		if api, err = getAPIService(ctx, dyn, name); err != nil {
			return err
		}
	}
	switch {
	case len(hooks) > 0 && api != nil:
		return fmt.Errorf("%q names both a webhook (in %s) and an APIService: choose one with --kind %s or --kind %s",
			name, whereAre(hooks), kindWebhook, kindAPIService)
	case api != nil:
		return removeAPIService(ctx, out, o, dyn, api)
	case kind == kindAPIService:
		return fmt.Errorf("no APIService %q (hookscope status lists the aggregated APIs)", name)
	case kind == "" && len(hooks) == 0:
		if err := notRemovable(ctx, dyn, name); err != nil {
			return err
		}
		return fmt.Errorf("no webhook or APIService %q (hookscope status lists them)", name)
	}
	l, err := onlyOne(hooks, name)
	if err != nil {
		return err
	}
	return removeWebhook(ctx, out, o, c, l, name)
}

func removeWebhook(ctx context.Context, out io.Writer, o *writeOptions, c kubernetes.Interface, l located, name string) error {
	whole := l.count == 1
	if whole {
		fmt.Fprintf(out, "%s/%s holds only webhook %s: the configuration will be deleted\n", l.kind, l.config, name)
	} else {
		fmt.Fprintf(out, "%s/%s: webhook %s will be removed (%d others stay)\n", l.kind, l.config, name, l.count-1)
	}
	if !o.yes {
		fmt.Fprintln(out, "dry run: nothing changed; add --yes to apply (a backup is written first)")
		return nil
	}
	path, err := backup(o.backupDir, l)
	if err != nil {
		return err
	}
	switch {
	case whole && l.kind == "ValidatingWebhookConfiguration":
		err = c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, l.config, metav1.DeleteOptions{})
	case whole:
		err = c.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, l.config, metav1.DeleteOptions{})
	default:
		err = patch(ctx, c, l, name, map[string]any{"op": "remove", "path": fmt.Sprintf("/webhooks/%d", l.index)})
	}
	if err != nil {
		return fmt.Errorf("removing webhook %s (backup kept at %s): %w", name, path, err)
	}
	fmt.Fprintf(out, "removed. backup: %s\nundo: hookscope restore %s --yes\n", path, path)
	return nil
}

func restore(ctx context.Context, out io.Writer, o *writeOptions, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading backup: %w", err)
	}
	var head metav1.TypeMeta
	if err := yaml.Unmarshal(b, &head); err != nil {
		return fmt.Errorf("reading backup %s: %w", path, err)
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	switch head.Kind {
	case "APIService":
		dyn, err := o.dynamicClient()
		if err != nil {
			return err
		}
		return restoreAPIService(ctx, out, o.yes, dyn, b, path)
	case "ValidatingWebhookConfiguration":
		var cfg admissionv1.ValidatingWebhookConfiguration
		if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
			return fmt.Errorf("reading backup %s: %w", path, err)
		}
		return restoreConfig(ctx, out, o.yes, head.Kind, c.AdmissionregistrationV1().ValidatingWebhookConfigurations(), &cfg, len(cfg.Webhooks))
	case "MutatingWebhookConfiguration":
		var cfg admissionv1.MutatingWebhookConfiguration
		if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
			return fmt.Errorf("reading backup %s: %w", path, err)
		}
		return restoreConfig(ctx, out, o.yes, head.Kind, c.AdmissionregistrationV1().MutatingWebhookConfigurations(), &cfg, len(cfg.Webhooks))
	}
	return fmt.Errorf("reading backup %s: kind %q is neither a webhook configuration nor an APIService", path, head.Kind)
}

// configClient is what restore needs of the typed client of either kind of
// webhook configuration.
type configClient[T metav1.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
}

// restoreConfig replaces the configuration if it exists, else creates it.
func restoreConfig[T metav1.Object](ctx context.Context, out io.Writer, yes bool, kind string, api configClient[T], cfg T, webhooks int) error {
	fmt.Fprintf(out, "%s/%s with %d webhooks will be put back as in the backup\n", kind, cfg.GetName(), webhooks)
	if !yes {
		fmt.Fprintln(out, "dry run: nothing changed; add --yes to apply")
		return nil
	}
	cur, err := api.Get(ctx, cfg.GetName(), metav1.GetOptions{})
	switch {
	case err == nil:
		cfg.SetResourceVersion(cur.GetResourceVersion())
		_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
	case apierrors.IsNotFound(err):
		cfg.SetResourceVersion("")
		cfg.SetUID("")
		_, err = api.Create(ctx, cfg, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("restoring %s/%s: %w", kind, cfg.GetName(), err)
	}
	fmt.Fprintf(out, "restored %s/%s\n", kind, cfg.GetName())
	return nil
}
