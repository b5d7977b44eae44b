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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// The documented fixes, as explicit and reversible writes:
//
//	Option 2: hookscope remediate ignore NAME [--revert]  failurePolicy Ignore (and back to Fail)
//	Option 3: hookscope remediate remove NAME             delete the webhook after a backup
//	          hookscope restore FILE                      put a backup back
//
// and, for an aggregated API whose backend is down (namespaces stuck
// Terminating behind it), remove NAME deletes its APIService after a
// backup, and restore FILE creates it again (remediate_apiservice.go).
//
// Every write shows what it would change and changes nothing unless it is
// applied (--yes, or --dry-run=none); --dry-run=server sends it to the API
// server as a dry run, which validates and admits it and stores nothing.
// An applied write backs the object up to a file first, and prints what
// changed and how to undo it.

type writeOptions struct {
	kube          *kubeFlags
	configuration string
	backupDir     string
	yes           bool
	dryRun        string // --dry-run as given: "", none, client or server
	kind          string // remove only: "", kindWebhook or kindAPIService
}

// The values of remove's --kind, when NAME names both a webhook and an
// APIService.
const (
	kindWebhook    = "webhook"
	kindAPIService = "apiservice"
)

// The --dry-run modes, as kubectl names them.
const (
	dryRunNone   = "none"   // apply
	dryRunClient = "client" // show the change, send nothing
	dryRunServer = "server" // send it as a dry run: the API server validates and admits it, stores nothing
)

// dryRunHelp says how --dry-run and --yes combine, in every write's help.
const dryRunHelp = `Nothing changes unless the write is applied: without --yes (or --dry-run=none) it is
shown only (--dry-run=client, the default); --dry-run=server sends it to the API server
as a dry run, so the API server validates and admits it, and stores nothing: a change
the API server would refuse (an invalid object, RBAC, an admission policy) fails there.`

func (o *writeOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.configuration, "configuration", "", "the webhook configuration, when NAME is in more than one")
	f.StringVar(&o.backupDir, "backup-dir", ".", "where backups are written")
	f.BoolVar(&o.yes, "yes", false, "apply the change (the same as --dry-run=none)")
	f.StringVar(&o.dryRun, "dry-run", "", `"client" (the default without --yes): only show the change; "server": the API server validates it and stores nothing; "none": apply it`)
}

// mode is the dry-run mode --dry-run and --yes make: --yes applies, and
// contradicts a --dry-run other than none.
func (o *writeOptions) mode() (string, error) {
	switch o.dryRun {
	case "":
		if o.yes {
			return dryRunNone, nil
		}
		return dryRunClient, nil
	case dryRunNone:
		return dryRunNone, nil
	case dryRunClient, dryRunServer:
		if o.yes {
			return "", fmt.Errorf("--yes applies the change and --dry-run=%s does not: give one of them", o.dryRun)
		}
		return o.dryRun, nil
	}
	return "", fmt.Errorf("--dry-run %q: want none, client or server", o.dryRun)
}

// serverDryRun is the dryRun option of a write: DryRunAll in mode server.
func serverDryRun(mode string) []string {
	if mode == dryRunServer {
		return []string{metav1.DryRunAll}
	}
	return nil
}

// notApplied is the line that ends a write that changed nothing.
func notApplied(out io.Writer, mode string) {
	if mode == dryRunServer {
		fmt.Fprintln(out, "server dry run: the API server accepted the change; nothing changed (--yes applies it)")
		return
	}
	fmt.Fprintln(out, "dry run: nothing changed; --yes applies it, --dry-run=server has the API server check it first")
}

func (o *writeOptions) client() (kubernetes.Interface, error) {
	c, _, err := o.kube.clients()
	return c, err
}

func (o *writeOptions) dynamicClient() (dynamic.Interface, error) {
	_, dyn, err := o.kube.clients()
	return dyn, err
}

func remediateCommand(kube *kubeFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remediate",
		Short: "Apply one of the documented fixes to a failing webhook or aggregated API (shown only unless --yes)",
		Long:  "remediate applies the fixes explain ranks, each a reversible write.\n\n" + dryRunHelp,
		Example: `  # let writes through while the webhook is down, and back
  hookscope remediate ignore mpod.elbv2.k8s.aws --yes
  hookscope remediate ignore mpod.elbv2.k8s.aws --revert --yes
  # remove an aggregated API whose backend is down; check with the API server first
  hookscope remediate remove v1beta1.metrics.k8s.io --dry-run=server`,
	}
	cmd.AddCommand(ignoreCommand(kube), removeCommand(kube))
	return cmd
}

func ignoreCommand(kube *kubeFlags) *cobra.Command {
	o := &writeOptions{kube: kube}
	var revert bool
	cmd := &cobra.Command{
		Use:   "ignore NAME",
		Short: "Set failurePolicy Ignore on webhook NAME so writes go through while it is down (--revert: back to Fail)",
		Long: `ignore sets failurePolicy Ignore on admission webhook NAME: while it is down, the API
server lets the writes it matches through unchecked instead of rejecting them.
--revert sets failurePolicy Fail again. The configuration is backed up first.

` + dryRunHelp,
		Example: `  # show the change
  hookscope remediate ignore mpod.elbv2.k8s.aws
  # have the API server validate it (and check that you may make it)
  hookscope remediate ignore mpod.elbv2.k8s.aws --dry-run=server
  # apply it, then undo it once the backend serves again
  hookscope remediate ignore mpod.elbv2.k8s.aws --yes
  hookscope remediate ignore mpod.elbv2.k8s.aws --revert --yes`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeCallOuts(kube, webhooksOnly),
		RunE: func(cmd *cobra.Command, args []string) error {
			to := admissionv1.Ignore
			if revert {
				to = admissionv1.Fail
			}
			return setFailurePolicy(cmd.Context(), cmd.OutOrStdout(), o, args[0], to)
		},
	}
	o.flags(cmd)
	cmd.Flags().BoolVar(&revert, "revert", false, "set failurePolicy back to Fail")
	return cmd
}

func removeCommand(kube *kubeFlags) *cobra.Command {
	o := &writeOptions{kube: kube}
	cmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Delete webhook NAME from its configuration, or APIService NAME (e.g. v1beta1.metrics.k8s.io), after writing a backup",
		Long: `remove takes admission webhook NAME out of its configuration (the whole configuration
when it is the only one there), or deletes APIService NAME, after writing a backup that
restore puts back. When NAME names both, --kind chooses.

` + dryRunHelp,
		Example: `  hookscope remediate remove mpod.elbv2.k8s.aws --dry-run=server
  hookscope remediate remove mpod.elbv2.k8s.aws --yes --backup-dir ~/backups
  # namespaces stuck Terminating behind a down aggregated API
  hookscope remediate remove v1beta1.metrics.k8s.io --yes`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeCallOuts(kube, removable),
		RunE: func(cmd *cobra.Command, args []string) error {
			return removeCallOut(cmd.Context(), cmd.OutOrStdout(), o, args[0])
		},
	}
	o.flags(cmd)
	cmd.Flags().StringVar(&o.kind, "kind", "", "webhook or apiservice, when NAME names both")
	return cmd
}

func restoreCommand(kube *kubeFlags) *cobra.Command {
	o := &writeOptions{kube: kube}
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Put a webhook configuration or an APIService back from a backup that remediate wrote",
		Long: `restore puts back the webhook configuration or APIService a backup holds: it replaces
the one there, or creates it when there is none.

` + dryRunHelp,
		Example: `  hookscope restore hookscope-backup-aws-load-balancer-webhook-20260101T120000Z.yaml --dry-run=server
  hookscope restore hookscope-backup-aws-load-balancer-webhook-20260101T120000Z.yaml --yes`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: backupFiles,
		RunE: func(cmd *cobra.Command, args []string) error {
			return restore(cmd.Context(), cmd.OutOrStdout(), o, args[0])
		},
	}
	o.flags(cmd)
	cmd.Flags().Lookup("backup-dir").Hidden = true // restore writes no backup
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
func patch(ctx context.Context, c kubernetes.Interface, l located, name, mode string, ops ...map[string]any) error {
	all := append([]map[string]any{{"op": "test", "path": fmt.Sprintf("/webhooks/%d/name", l.index), "value": name}}, ops...)
	body, err := json.Marshal(all)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{DryRun: serverDryRun(mode)}
	if l.kind == "ValidatingWebhookConfiguration" {
		_, err = c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Patch(ctx, l.config, types.JSONPatchType, body, opts)
	} else {
		_, err = c.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, l.config, types.JSONPatchType, body, opts)
	}
	if err != nil {
		return fmt.Errorf("patching %s/%s: %w", l.kind, l.config, err)
	}
	return nil
}

func setFailurePolicy(ctx context.Context, out io.Writer, o *writeOptions, name string, to admissionv1.FailurePolicyType) error {
	mode, err := o.mode()
	if err != nil {
		return err
	}
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
	set := map[string]any{"op": "add", "path": fmt.Sprintf("/webhooks/%d/failurePolicy", l.index), "value": string(to)}
	switch mode {
	case dryRunServer:
		if err := patch(ctx, c, l, name, mode, set); err != nil {
			return err
		}
		fallthrough
	case dryRunClient:
		notApplied(out, mode)
		return nil
	}
	path, err := backup(o.backupDir, l)
	if err != nil {
		return err
	}
	if err := patch(ctx, c, l, name, mode, set); err != nil {
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
	if _, err := o.mode(); err != nil {
		return err
	}
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
	mode, err := o.mode()
	if err != nil {
		return err
	}
	whole := l.count == 1
	if whole {
		fmt.Fprintf(out, "%s/%s holds only webhook %s: the configuration will be deleted\n", l.kind, l.config, name)
	} else {
		fmt.Fprintf(out, "%s/%s: webhook %s will be removed (%d others stay)\n", l.kind, l.config, name, l.count-1)
	}
	if mode == dryRunClient {
		notApplied(out, mode)
		return nil
	}
	path := ""
	if mode == dryRunNone {
		if path, err = backup(o.backupDir, l); err != nil {
			return err
		}
	}
	del := metav1.DeleteOptions{DryRun: serverDryRun(mode)}
	switch {
	case whole && l.kind == "ValidatingWebhookConfiguration":
		err = c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, l.config, del)
	case whole:
		err = c.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, l.config, del)
	default:
		err = patch(ctx, c, l, name, mode, map[string]any{"op": "remove", "path": fmt.Sprintf("/webhooks/%d", l.index)})
	}
	switch {
	case err != nil && path != "":
		return fmt.Errorf("removing webhook %s (backup kept at %s): %w", name, path, err)
	case err != nil:
		return fmt.Errorf("removing webhook %s: %w", name, err)
	case mode == dryRunServer:
		notApplied(out, mode)
		return nil
	}
	fmt.Fprintf(out, "removed. backup: %s\nundo: hookscope restore %s --yes\n", path, path)
	return nil
}
