//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/inventory"
)

// aggregatedAPIForTest is an APIService of group/version served by a
// Service that need not exist (the API server accepts it all the same).
func aggregatedAPIForTest(version, group string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": version + "." + group, "labels": map[string]any{"app": "metrics"}},
		"spec": map[string]any{"group": group, "version": version, "groupPriorityMinimum": int64(100), "versionPriority": int64(100),
			"insecureSkipTLSVerify": true, "service": map[string]any{"namespace": "monitoring", "name": "metrics", "port": int64(443)}},
	}}
}

// TestRemediateAggregatedAPI runs remove and restore on APIServices against
// a real API server.
func TestRemediateAggregatedAPI(t *testing.T) {
	ctx, local, c := localCluster(t, "remediate-apis")
	cfg, err := restConfig(local.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	apis := dyn.Resource(apiServicesGVR)
	create := func(t *testing.T, u *unstructured.Unstructured) *unstructured.Unstructured {
		t.Helper()
		got, err := apis.Create(ctx, u, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	exists := func(t *testing.T, name string) bool {
		t.Helper()
		_, err := apis.Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	options := func(t *testing.T) *writeOptions {
		return &writeOptions{kube: kubeFlagsFor(local.Kubeconfig()), backupDir: t.TempDir()}
	}

	t.Run("remove without --yes changes nothing and writes no backup", func(t *testing.T) {
		create(t, aggregatedAPIForTest("v1beta1", "dryrun.example.com"))
		o := options(t)
		var out bytes.Buffer
		if err := removeCallOut(ctx, &out, o, "v1beta1.dryrun.example.com"); err != nil {
			t.Fatal(err)
		}
		if !exists(t, "v1beta1.dryrun.example.com") || !strings.Contains(out.String(), "dry run: nothing changed") {
			t.Fatalf("dry run deleted the APIService, or did not say it is a dry run: %q", out.String())
		}
		if files, _ := filepath.Glob(filepath.Join(o.backupDir, "*")); len(files) != 0 {
			t.Fatalf("dry run wrote %v", files)
		}
	})

	t.Run("remove --yes backs up and deletes the APIService, and restore --yes creates it again as it was", func(t *testing.T) {
		removeThenRestore(ctx, t, dyn, options(t), create(t, aggregatedAPIForTest("v1beta1", "metrics.example.com")))
	})

	t.Run("remove backs up the APIService as it is when it changed after it was read", func(t *testing.T) {
		stale := create(t, aggregatedAPIForTest("v1beta2", "changing.example.com"))
		change(ctx, t, dyn, stale.GetName(), func(u *unstructured.Unstructured) { u.SetLabels(map[string]string{"app": "changed"}) })
		dir := t.TempDir()
		path, err := backupAndDelete(ctx, dir, dyn, stale)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		if exists(t, stale.GetName()) || !strings.Contains(string(b), "app: changed") || len(files) != 1 {
			t.Fatalf("after removing a changed APIService: backups %v, the one returned:\n%s", files, b)
		}
	})

	t.Run("restore replaces an APIService that differs from the backup, and leaves one that does not", func(t *testing.T) {
		restoreOverChanged(ctx, t, dyn, options(t), create(t, aggregatedAPIForTest("v1", "changed.example.com")))
	})

	t.Run("remove refuses an APIService the API server serves itself", func(t *testing.T) {
		o := options(t)
		o.yes = true
		var out bytes.Buffer
		err := removeCallOut(ctx, &out, o, "v1.apps")
		if err == nil || !strings.Contains(err.Error(), "served by the API server itself") || !strings.Contains(err.Error(), "breaks the apps/v1 API") {
			t.Fatalf("remove v1.apps: %v, want a refusal", err)
		}
		if !exists(t, "v1.apps") {
			t.Fatal("remove deleted v1.apps")
		}
	})

	t.Run("remove asks which when a webhook and an APIService share the name, and --kind chooses", func(t *testing.T) {
		removeAmbiguous(ctx, t, c, options(t), create(t, aggregatedAPIForTest("v1alpha1", "both.example.com")))
	})

	t.Run("remove of a name that is neither says so", func(t *testing.T) {
		err := removeCallOut(ctx, &bytes.Buffer{}, options(t), "v9.nothing.example.com")
		if err == nil || !strings.Contains(err.Error(), `no webhook or APIService "v9.nothing.example.com"`) {
			t.Fatalf("remove of an unknown name: %v", err)
		}
		o := options(t)
		o.kind = kindAPIService
		if err := removeCallOut(ctx, &bytes.Buffer{}, o, "v9.nothing.example.com"); err == nil || !strings.Contains(err.Error(), `no APIService "v9.nothing.example.com"`) {
			t.Fatalf("remove --kind apiservice of an unknown name: %v", err)
		}
	})

	t.Run("ignore on an APIService says it has no failurePolicy and to remove it after a backup", func(t *testing.T) {
		create(t, aggregatedAPIForTest("v1beta1", "ignore.example.com"))
		err := setFailurePolicy(ctx, &bytes.Buffer{}, options(t), "v1beta1.ignore.example.com", admissionv1.Ignore)
		if err == nil || !strings.Contains(err.Error(), "no failurePolicy") || !strings.Contains(err.Error(), "Restore its backend (Service monitoring/metrics:443)") ||
			!strings.Contains(err.Error(), "hookscope remediate remove v1beta1.ignore.example.com") {
			t.Fatalf("ignore on an APIService: %v", err)
		}
	})

	t.Run("ignore and remove on a CRD's conversion webhook say to restore its backend", func(t *testing.T) {
		conversionWebhookRefused(ctx, t, dyn, options(t))
	})
}

// change updates APIService name with edit, again when the API server
// wrote its status meanwhile.
func change(ctx context.Context, t *testing.T, dyn dynamic.Interface, name string, edit func(*unstructured.Unstructured)) {
	t.Helper()
	apis := dyn.Resource(apiServicesGVR)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := apis.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		edit(u)
		_, err = apis.Update(ctx, u, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("changing APIService %s: %v", name, err)
	}
}

func removeThenRestore(ctx context.Context, t *testing.T, dyn dynamic.Interface, o *writeOptions, orig *unstructured.Unstructured) {
	apis, name := dyn.Resource(apiServicesGVR), orig.GetName()
	o.yes = true
	var out bytes.Buffer
	if err := removeCallOut(ctx, &out, o, name); err != nil {
		t.Fatal(err)
	}
	if _, err := apis.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after remove --yes, reading %s: %v, want not found", name, err)
	}
	_, rest, ok := strings.Cut(out.String(), "undo: hookscope restore ")
	if !ok {
		t.Fatalf("remove printed no undo command: %q", out.String())
	}
	file := strings.Fields(rest)[0]
	t.Logf("hookscope remediate remove %s --yes:\n%s", name, out.String())
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, server := range []string{"resourceVersion", "uid", "creationTimestamp", "managedFields", "status:"} {
		if strings.Contains(string(b), server) {
			t.Errorf("backup keeps %s, which the API server sets:\n%s", server, b)
		}
	}

	o.yes = false
	out.Reset()
	if err := restore(ctx, &out, o, file); err != nil {
		t.Fatal(err)
	}
	if _, err := apis.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) || !strings.Contains(out.String(), "will be created") {
		t.Fatalf("restore without --yes: %v, output %q", err, out.String())
	}
	o.yes = true
	if err := restore(ctx, &out, o, file); err != nil {
		t.Fatal(err)
	}
	back, err := apis.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("after restore --yes: %v", err)
	}
	t.Logf("hookscope restore %s, then with --yes:\n%s\nthe backup:\n%s", file, out.String(), b)
	if !equality.Semantic.DeepEqual(back.Object["spec"], orig.Object["spec"]) || back.GetLabels()["app"] != "metrics" {
		t.Fatalf("restored %v, labels %v; want spec %v, as before", back.Object["spec"], back.GetLabels(), orig.Object["spec"])
	}
}

func restoreOverChanged(ctx context.Context, t *testing.T, dyn dynamic.Interface, o *writeOptions, orig *unstructured.Unstructured) {
	apis, name := dyn.Resource(apiServicesGVR), orig.GetName()
	saved := orig.DeepCopy()
	stripServerFields(saved)
	file, err := writeBackup(o.backupDir, name, saved.Object)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	o.yes = true
	if err := restore(ctx, &out, o, file); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "already exists as in the backup: nothing to do") {
		t.Fatalf("restore over an APIService as in the backup: %q", out.String())
	}

	change(ctx, t, dyn, name, func(u *unstructured.Unstructured) {
		if err := unstructured.SetNestedField(u.Object, "other", "spec", "service", "name"); err != nil {
			t.Fatal(err)
		}
	})
	out.Reset()
	if err := restore(ctx, &out, o, file); err != nil {
		t.Fatal(err)
	}
	now, err := apis.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc, _, _ := unstructured.NestedString(now.Object, "spec", "service", "name"); svc != "metrics" || !strings.Contains(out.String(), "differs from the backup in spec.service") {
		t.Fatalf("restore over a changed APIService left Service %q; output %q", svc, out.String())
	}
}

func removeAmbiguous(ctx context.Context, t *testing.T, c kubernetes.Interface, o *writeOptions, api *unstructured.Unstructured) {
	name := api.GetName()
	fail, none := admissionv1.Fail, admissionv1.SideEffectClassNone
	vwc := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "same-name"}, Webhooks: []admissionv1.ValidatingWebhook{{
		Name: name, FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
		ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "hooks", Name: "svc"}},
		Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
			Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"hookscope.dev/none": "x"}},
	}}}
	if _, err := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := removeCallOut(ctx, &bytes.Buffer{}, o, name)
	if err == nil || !strings.Contains(err.Error(), "names both a webhook (in ValidatingWebhookConfiguration/same-name) and an APIService") ||
		!strings.Contains(err.Error(), "--kind webhook or --kind apiservice") {
		t.Fatalf("remove of a shared name: %v, want to be asked which", err)
	}
	for kind, want := range map[string]string{kindAPIService: "APIService " + name + " (the aggregated API", kindWebhook: "holds only webhook " + name} {
		o.kind = kind
		var out bytes.Buffer
		if err := removeCallOut(ctx, &out, o, name); err != nil || !strings.Contains(out.String(), want) {
			t.Errorf("remove --kind %s: %v, output %q, want %q", kind, err, out.String(), want)
		}
	}
}

func conversionWebhookRefused(ctx context.Context, t *testing.T, dyn dynamic.Interface, o *writeOptions) {
	version := func(name string, storage bool) map[string]any {
		return map[string]any{"name": name, "served": true, "storage": storage,
			"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
	}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "widgets.example.com"},
		"spec": map[string]any{"group": "example.com", "scope": "Namespaced",
			"names":    map[string]any{"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
			"versions": []any{version("v1", true), version("v2", false)},
			"conversion": map[string]any{"strategy": "Webhook", "webhook": map[string]any{"conversionReviewVersions": []any{"v1"},
				"clientConfig": map[string]any{"service": map[string]any{"namespace": "widgets", "name": "converter", "path": "/convert"}}}}},
	}}
	if _, err := dyn.Resource(crdsGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := setFailurePolicy(ctx, &bytes.Buffer{}, o, "widgets.example.com", admissionv1.Ignore)
	if err == nil || !strings.Contains(err.Error(), "conversion webhook (Service widgets/converter)") || !strings.Contains(err.Error(), "no failurePolicy") {
		t.Errorf("ignore on a conversion webhook: %v", err)
	}
	o.yes = true
	err = removeCallOut(ctx, &bytes.Buffer{}, o, "widgets.example.com")
	if err == nil || !strings.Contains(err.Error(), "does not remove it") || !strings.Contains(err.Error(), "Restore the conversion webhook's backend") {
		t.Errorf("remove on a conversion webhook: %v", err)
	}
	if _, err := dyn.Resource(crdsGVR).Get(ctx, "widgets.example.com", metav1.GetOptions{}); err != nil {
		t.Errorf("the CRD is gone: %v", err)
	}
}

// TestExplainOffersRemediateCommandsForAnAggregatedAPI: the fixes explain
// ranks for a down APIService are hookscope's own dry run, --yes and
// restore, not kubectl.
func TestExplainOffersRemediateCommandsForAnAggregatedAPI(t *testing.T) {
	row := WebhookStatus{Kind: callout.KindAPIService, Name: "v1beta1.metrics.k8s.io", Configuration: "v1beta1.metrics.k8s.io",
		API: "metrics.k8s.io/v1beta1", Service: "kube-system/metrics-server:443"}
	fixes := strings.Join(rankFixes(findings.NoEndpoints, row), "\n")
	for _, want := range []string{"hookscope remediate remove v1beta1.metrics.k8s.io (a dry run), then again with --yes", "hookscope restore FILE --yes"} {
		if !strings.Contains(fixes, want) {
			t.Errorf("fixes lack %q:\n%s", want, fixes)
		}
	}
	for _, unwanted := range []string{"kubectl", "remediate ignore"} {
		if strings.Contains(fixes, unwanted) {
			t.Errorf("fixes offer %q:\n%s", unwanted, fixes)
		}
	}
}

// TestExplainOffersNoIgnoreForAPatchThatDoesNotApply: the API server
// rejects a mutating webhook's patch it cannot apply whatever the
// failurePolicy, so explain does not offer Ignore.
func TestExplainOffersNoIgnoreForAPatchThatDoesNotApply(t *testing.T) {
	row := WebhookStatus{Kind: callout.KindMutating, Name: "mpod.example.com", Configuration: "pod-mutator", FailurePolicy: "Fail",
		Service: "hooks/pod-mutator:443"}
	fixes := strings.Join(rankFixes(findings.PatchDoesNotApply, row), "\n")
	if strings.Contains(fixes, "remediate ignore") || !strings.Contains(fixes, "hookscope remediate remove mpod.example.com") {
		t.Errorf("fixes for a patch that does not apply:\n%s", fixes)
	}
}

// TestStatusSaysWhatTheGuardChanged: a webhook the agent's guard changed
// says so in status, from its configuration's annotation.
func TestStatusSaysWhatTheGuardChanged(t *testing.T) {
	cfg := &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "lbc", Annotations: map[string]string{
		"guard.hookscope.dev/original": `{"mpod.elbv2.k8s.aws":{"namespaceSelector":null,"excluded":"kube-system","since":"2026-12-06T05:00:00Z","reason":"mpod.elbv2.k8s.aws keeps DaemonSet kube-system/aws-node from running"}}`}}}
	inv := inventory.Listed{Mutating: []*admissionv1.MutatingWebhookConfiguration{cfg}}
	got := guardedLine(inv, callout.Ref{Kind: callout.KindMutating, Configuration: "lbc", Name: "mpod.elbv2.k8s.aws"})
	if want := "the guard has excluded namespace kube-system since 2026-12-06T05:00:00Z: mpod.elbv2.k8s.aws keeps DaemonSet kube-system/aws-node from running"; got != want {
		t.Errorf("guarded line %q, want %q", got, want)
	}
	if got := guardedLine(inv, callout.Ref{Kind: callout.KindMutating, Configuration: "lbc", Name: "other"}); got != "" {
		t.Errorf("a webhook the guard did not change: %q", got)
	}
	table := statusTable([]WebhookStatus{{Name: "mpod.elbv2.k8s.aws", Health: "ServiceNotFound", Detail: "service gone", Guarded: "the guard has excluded namespace kube-system"}})
	if cell := table.Rows[0].Cells[7]; cell != "service gone; the guard has excluded namespace kube-system" {
		t.Errorf("detail cell %q", cell)
	}
}
