//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestStatusOnARealAPIServer: the article's mpod webhook, failing closed on
// kube-system pods with its Service gone, is listed first as
// ServiceNotFound with its risks; a url webhook is listed as healthy.
func TestStatusOnARealAPIServer(t *testing.T) {
	ctx, _, c := localCluster(t, "status")
	fail, none := admissionv1.Fail, admissionv1.SideEffectClassNone
	mwc := &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "aws-load-balancer-webhook"},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name: "mpod.elbv2.k8s.aws", FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "kube-system", Name: "aws-load-balancer-webhook-service"}},
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
		}, {
			Name: "url.example.com", FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionv1.WebhookClientConfig{URL: ptrTo("https://127.0.0.1:1/mutate")},
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"hookscope.dev/none": "x"}},
		}},
	}
	if _, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rows, err := collectStatus(ctx, c, false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Name != "mpod.elbv2.k8s.aws" {
		t.Fatalf("rows %+v, want the broken mpod webhook first", rows)
	}
	mpod := rows[0]
	if mpod.Health != "ServiceNotFound" || mpod.Detail != `service "aws-load-balancer-webhook-service" not found` {
		t.Errorf("mpod health %s %q", mpod.Health, mpod.Detail)
	}
	if !slices.Contains(mpod.Risks, "BlocksSystemPods(critical)") {
		t.Errorf("mpod risks %v, want BlocksSystemPods(critical)", mpod.Risks)
	}
	if rows[1].Health != "Healthy" || rows[1].URL == "" {
		t.Errorf("url webhook %+v", rows[1])
	}

	var table, js bytes.Buffer
	if err := printStatus(&table, "table", rows); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "mpod.elbv2.k8s.aws") || !strings.HasPrefix(table.String(), "WEBHOOK") {
		t.Errorf("table:\n%s", table.String())
	}
	if err := printStatus(&js, "json", rows); err != nil {
		t.Fatal(err)
	}
	var back []WebhookStatus
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back) != 2 {
		t.Errorf("json round trip: %v, %d rows", err, len(back))
	}
	t.Logf("hookscope status:\n%s", table.String())

	var ex bytes.Buffer
	if err := explain(ctx, &ex, c, "mpod.elbv2.k8s.aws", false, time.Second); err != nil {
		t.Fatal(err)
	}
	text := ex.String()
	// It blocks system pods (the CNI) and has no backend: unblock first.
	first := text[strings.Index(text, "1. "):]
	if !strings.Contains(text, `health: ServiceNotFound: service "aws-load-balancer-webhook-service" not found`) ||
		!strings.HasPrefix(first, "1. Option 2: let writes through while it is down: hookscope remediate ignore mpod.elbv2.k8s.aws --yes") {
		t.Errorf("explain:\n%s", text)
	}
	if err := explain(ctx, &ex, c, "nope.example.com", false, time.Second); err == nil {
		t.Error("explain of an unknown webhook did not fail")
	}
	t.Logf("hookscope explain:\n%s", text)
}

func ptrTo[T any](v T) *T { return &v }
