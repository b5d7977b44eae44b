//go:build linux

package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRemediateRoundTrip runs the article's Options 2 and 3 against a real
// API server: a dry run changes nothing; ignore and revert flip
// failurePolicy with a backup; remove takes one webhook out after a backup;
// restore puts the configuration back exactly.
func TestRemediateRoundTrip(t *testing.T) {
	ctx, local, c := localCluster(t, "remediate")

	fail, none := admissionv1.Fail, admissionv1.SideEffectClassNone
	hook := func(name string) admissionv1.ValidatingWebhook {
		return admissionv1.ValidatingWebhook{
			Name: name, FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "hooks", Name: "svc"}},
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"hookscope.dev/none": "x"}},
		}
	}
	vwc := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "policy"},
		Webhooks: []admissionv1.ValidatingWebhook{hook("a.example.com"), hook("b.example.com")}}
	if _, err := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	o := &writeOptions{kube: kubeFlagsFor(local.Kubeconfig()), backupDir: dir}
	policyOfB := func() admissionv1.FailurePolicyType {
		got, err := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "policy", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range got.Webhooks {
			if w.Name == "b.example.com" {
				return *w.FailurePolicy
			}
		}
		return "absent"
	}
	var out bytes.Buffer

	// Dry run: nothing changes, no backup.
	if err := setFailurePolicy(ctx, &out, o, "b.example.com", admissionv1.Ignore); err != nil {
		t.Fatal(err)
	}
	if p := policyOfB(); p != admissionv1.Fail || !strings.Contains(out.String(), "dry run") {
		t.Fatalf("dry run changed failurePolicy to %s; output %q", p, out.String())
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.yaml")); len(files) != 0 {
		t.Fatalf("dry run wrote backups %v", files)
	}

	o.yes = true
	out.Reset()
	if err := setFailurePolicy(ctx, &out, o, "b.example.com", admissionv1.Ignore); err != nil {
		t.Fatal(err)
	}
	if p := policyOfB(); p != admissionv1.Ignore || !strings.Contains(out.String(), "undo: hookscope remediate ignore b.example.com --revert --yes") {
		t.Fatalf("ignore: failurePolicy %s, output %q", p, out.String())
	}
	if err := setFailurePolicy(ctx, &out, o, "b.example.com", admissionv1.Fail); err != nil {
		t.Fatal(err)
	}
	if p := policyOfB(); p != admissionv1.Fail {
		t.Fatalf("revert: failurePolicy %s", p)
	}

	out.Reset()
	if err := removeCallOut(ctx, &out, o, "b.example.com"); err != nil {
		t.Fatal(err)
	}
	if p := policyOfB(); p != "absent" {
		t.Fatalf("remove left b.example.com (%s)", p)
	}
	line := out.String()[strings.Index(out.String(), "undo: hookscope restore ")+len("undo: hookscope restore "):]
	backupFile := strings.Fields(line)[0]
	if err := restore(ctx, &out, o, backupFile); err != nil {
		t.Fatal(err)
	}
	if p := policyOfB(); p != admissionv1.Fail {
		t.Fatalf("restore: b.example.com %s", p)
	}

	if err := setFailurePolicy(ctx, &out, o, "nope.example.com", admissionv1.Ignore); err == nil || !strings.Contains(err.Error(), `no webhook "nope.example.com"`) {
		t.Fatalf("unknown webhook: %v", err)
	}
}
