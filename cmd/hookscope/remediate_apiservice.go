package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"
)

// Aggregated APIs: when the backend of an APIService is down, discovery of
// its group fails and namespaces stay Terminating. An APIService has no
// failurePolicy; the usual unblocking step is to delete it after a backup,
// and to create it again once its backend serves:
//
//	hookscope remediate remove v1beta1.metrics.k8s.io [--yes]
//	hookscope restore hookscope-backup-v1beta1.metrics.k8s.io-<time>.yaml [--yes]
//
// APIServices and CRDs are read through the dynamic client: a handful of
// fields, not the aggregator's or apiextensions' clients.

var (
	apiServicesGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	crdsGVR        = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// getAPIService is APIService name, or nil when there is none.
func getAPIService(ctx context.Context, dyn dynamic.Interface, name string) (*unstructured.Unstructured, error) {
	u, err := dyn.Resource(apiServicesGVR).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading APIService %s (if %s is a webhook, pass --kind %s): %w", name, name, kindWebhook, err)
	}
	return u, nil
}

// aggregatedAPI is what an APIService says, as the operator reads it.
type aggregatedAPI struct {
	name string
	api  string // group/version
	// service is namespace/name[:port], "" when the API server serves it
	// itself.
	service string
	// available is its Available condition's status; reason and message
	// say why.
	available, reason, message string
}

func aggregatedAPIOf(u *unstructured.Unstructured) aggregatedAPI {
	str := func(fields ...string) string {
		v, _, _ := unstructured.NestedString(u.Object, fields...)
		return v
	}
	a := aggregatedAPI{name: u.GetName(), api: str("spec", "group") + "/" + str("spec", "version")}
	if _, ok, _ := unstructured.NestedMap(u.Object, "spec", "service"); ok {
		a.service = str("spec", "service", "namespace") + "/" + str("spec", "service", "name")
		if port, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "service", "port"); ok {
			a.service += fmt.Sprintf(":%v", port)
		}
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Available" {
			a.available, _ = m["status"].(string)
			a.reason, _ = m["reason"].(string)
			a.message, _ = m["message"].(string)
		}
	}
	return a
}

// removeAPIService deletes APIService u after writing a backup that
// restore can create again. A local APIService is refused: the API server
// serves it itself, so removing it unblocks nothing and breaks its API.
func removeAPIService(ctx context.Context, out io.Writer, o *writeOptions, dyn dynamic.Interface, u *unstructured.Unstructured) error {
	mode, err := o.mode()
	if err != nil {
		return err
	}
	a := aggregatedAPIOf(u)
	if a.service == "" {
		return fmt.Errorf("APIService %s is served by the API server itself (it has no Service): removing it unblocks nothing and breaks the %s API; nothing changed", a.name, a.api)
	}
	fmt.Fprintf(out, "APIService %s (the aggregated API %s, served by Service %s) will be deleted: %s leaves discovery, so namespaces stuck Terminating behind it can finish deleting; its requests fail until it is put back\n",
		a.name, a.api, a.service, a.api)
	switch a.available {
	case "True":
		fmt.Fprintf(out, "note: the API server reports it available: requests to %s that work now will fail once it is removed\n", a.api)
	case "False":
		fmt.Fprintf(out, "the API server reports it unavailable: %s: %s\n", a.reason, a.message)
	}
	switch mode {
	case dryRunClient:
		notApplied(out, mode)
		return nil
	case dryRunServer:
		uid, rv := u.GetUID(), u.GetResourceVersion()
		err := dyn.Resource(apiServicesGVR).Delete(ctx, a.name, metav1.DeleteOptions{DryRun: serverDryRun(mode),
			Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
		if err != nil {
			return fmt.Errorf("deleting APIService %s: %w", a.name, err)
		}
		notApplied(out, mode)
		return nil
	}
	path, err := backupAndDelete(ctx, o.backupDir, dyn, u)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "removed. backup: %s\nundo: hookscope restore %s --yes (once its backend serves again)\n", path, path)
	return nil
}

// backupAndDelete writes the backup of APIService u and deletes it if it
// is still as backed up; when it changed meanwhile (the API server writes
// its status as its backend comes and goes), it reads it again and backs
// that up instead. It returns the backup's path.
func backupAndDelete(ctx context.Context, dir string, dyn dynamic.Interface, u *unstructured.Unstructured) (string, error) {
	api, name := dyn.Resource(apiServicesGVR), u.GetName()
	for attempt := 1; ; attempt++ {
		saved := u.DeepCopy()
		stripServerFields(saved)
		path, err := writeBackup(dir, name, saved.Object)
		if err != nil {
			return "", fmt.Errorf("backing up APIService %s: %w", name, err)
		}
		uid, rv := u.GetUID(), u.GetResourceVersion()
		err = api.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
		if err == nil {
			return path, nil
		}
		if !apierrors.IsConflict(err) || attempt == 3 {
			return "", fmt.Errorf("deleting APIService %s (backup kept at %s): %w", name, path, err)
		}
		os.Remove(path) // of a version that is no more
		if u, err = api.Get(ctx, name, metav1.GetOptions{}); err != nil {
			return "", fmt.Errorf("reading APIService %s again: %w", name, err)
		}
	}
}

// stripServerFields removes what the API server sets, so that the object
// can be created again.
func stripServerFields(u *unstructured.Unstructured) {
	for _, f := range []string{"resourceVersion", "uid", "creationTimestamp", "managedFields", "generation", "selfLink",
		"deletionTimestamp", "deletionGracePeriodSeconds"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	unstructured.RemoveNestedField(u.Object, "status")
}

// restoreAPIService creates the APIService of backup b again. One that
// exists as in the backup is left alone; one that differs is replaced by
// the backup, as restore does for webhook configurations.
func restoreAPIService(ctx context.Context, out io.Writer, mode string, dyn dynamic.Interface, b []byte, path string) error {
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return fmt.Errorf("reading backup %s: %w", path, err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		return fmt.Errorf("reading backup %s: %w", path, err)
	}
	if gv := u.GetAPIVersion(); gv != "apiregistration.k8s.io/v1" {
		return fmt.Errorf("reading backup %s: an APIService of apiVersion %q; only apiregistration.k8s.io/v1 is restored", path, gv)
	}
	if u.GetName() == "" {
		return fmt.Errorf("reading backup %s: the APIService has no name", path)
	}
	stripServerFields(u)
	a := aggregatedAPIOf(u)
	api := dyn.Resource(apiServicesGVR)
	cur, err := api.Get(ctx, a.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		fmt.Fprintf(out, "APIService %s (the aggregated API %s, Service %s) will be created as in the backup\n", a.name, a.api, a.service)
		if mode == dryRunClient {
			notApplied(out, mode)
			return nil
		}
		_, err = api.Create(ctx, u, metav1.CreateOptions{DryRun: serverDryRun(mode)})
	case err != nil:
		return fmt.Errorf("reading APIService %s: %w", a.name, err)
	default:
		differ := differingFields("spec", cur.Object["spec"], u.Object["spec"])
		if len(differ) == 0 {
			fmt.Fprintf(out, "APIService %s already exists as in the backup: nothing to do\n", a.name)
			return nil
		}
		fmt.Fprintf(out, "APIService %s exists and differs from the backup in %s: it will be replaced by the backup\n", a.name, strings.Join(differ, ", "))
		if mode == dryRunClient {
			notApplied(out, mode)
			return nil
		}
		// Replace whatever version is there now: the API server writes
		// the status as the backend comes and goes.
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if cur, err = api.Get(ctx, a.name, metav1.GetOptions{}); err != nil {
				return err
			}
			u.SetResourceVersion(cur.GetResourceVersion())
			_, err = api.Update(ctx, u, metav1.UpdateOptions{DryRun: serverDryRun(mode)})
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("restoring APIService %s: %w", a.name, err)
	}
	if mode == dryRunServer {
		notApplied(out, mode)
		return nil
	}
	fmt.Fprintf(out, "restored APIService %s\n", a.name)
	return nil
}

// differingFields names the fields of two objects (under prefix) whose
// values differ, one level down.
func differingFields(prefix string, now, want any) []string {
	n, nok := now.(map[string]any)
	w, wok := want.(map[string]any)
	if !nok || !wok {
		if equality.Semantic.DeepEqual(now, want) {
			return nil
		}
		return []string{prefix}
	}
	var differ []string
	for k, v := range n {
		if !equality.Semantic.DeepEqual(v, w[k]) {
			differ = append(differ, prefix+"."+k)
		}
	}
	for k := range w {
		if _, ok := n[k]; !ok {
			differ = append(differ, prefix+"."+k)
		}
	}
	slices.Sort(differ)
	return differ
}

// noFailurePolicy is an error when name is an APIService or a CRD's
// conversion webhook, which have no failurePolicy to relax, saying what to
// do instead; nil otherwise. It only words the error of a name that is no
// admission webhook, so what it cannot read it leaves to that error.
func noFailurePolicy(ctx context.Context, dyn dynamic.Interface, name string) error {
	if u, err := getAPIService(ctx, dyn, name); err == nil && u != nil {
		a := aggregatedAPIOf(u)
		if a.service == "" {
			return fmt.Errorf("%s is an APIService served by the API server itself, not an admission webhook: it has no failurePolicy and no backend, so there is nothing to let through", name)
		}
		return fmt.Errorf("%s is an APIService (the aggregated API %s), not an admission webhook: it has no failurePolicy, so the API server cannot skip it while it is down. "+
			"Restore its backend (Service %s); to unblock namespaces stuck Terminating meanwhile, remove it after a backup: hookscope remediate remove %s (a dry run; then again with --yes)",
			name, a.api, a.service, name)
	}
	if backend, ok := conversionWebhookOf(ctx, dyn, name); ok {
		return fmt.Errorf("%s is a CustomResourceDefinition whose conversion webhook (%s) the API server calls, not an admission webhook: it has no failurePolicy, so the API server cannot skip it while it is down. "+
			"Restore its backend", name, backend)
	}
	return nil
}

// notRemovable is an error when name is a CRD's conversion webhook, which
// remove does not take out; nil otherwise. Like noFailurePolicy, it only
// words the error of a name that is neither a webhook nor an APIService.
func notRemovable(ctx context.Context, dyn dynamic.Interface, name string) error {
	backend, ok := conversionWebhookOf(ctx, dyn, name)
	if !ok {
		return nil
	}
	return fmt.Errorf("%s is a CustomResourceDefinition whose conversion webhook (%s) the API server calls, not an admission webhook or APIService: "+
		"hookscope does not remove it, as deleting the CustomResourceDefinition deletes every object of it. Restore the conversion webhook's backend", name, backend)
}

// conversionWebhookOf is the backend of CRD name's conversion webhook
// ("Service namespace/name" or "URL ..."), and whether it has one.
func conversionWebhookOf(ctx context.Context, dyn dynamic.Interface, name string) (string, bool) {
	u, err := dyn.Resource(crdsGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", false
	}
	if s, _, _ := unstructured.NestedString(u.Object, "spec", "conversion", "strategy"); s != "Webhook" {
		return "", false
	}
	cc := []string{"spec", "conversion", "webhook", "clientConfig"}
	if url, ok, _ := unstructured.NestedString(u.Object, append(cc, "url")...); ok {
		return "URL " + url, true
	}
	ns, _, _ := unstructured.NestedString(u.Object, append(cc, "service", "namespace")...)
	svc, _, _ := unstructured.NestedString(u.Object, append(cc, "service", "name")...)
	return "Service " + ns + "/" + svc, true
}
