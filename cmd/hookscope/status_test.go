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
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/hookscope/hookscope/internal/certs"
)

// TestStatusOnARealAPIServer: the article's mpod webhook, failing closed on
// kube-system pods with its Service gone, is listed first as
// ServiceNotFound with its risks; a url webhook is listed as healthy.
func TestStatusOnARealAPIServer(t *testing.T) {
	ctx, local, c := localCluster(t, "status")
	api := callOutAPI(t, local)
	fail, none := admissionv1.Fail, admissionv1.SideEffectClassNone
	expiring, err := certs.NewCA("expiring-ca", certs.Validity(time.Now().Add(-time.Hour), time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	mwc := &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "aws-load-balancer-webhook"},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name: "mpod.elbv2.k8s.aws", FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "kube-system", Name: "aws-load-balancer-webhook-service"}},
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
		}, {
			Name: "url.example.com", FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionv1.WebhookClientConfig{URL: ptrTo("https://127.0.0.1:1/mutate"), CABundle: expiring.PEM},
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"hookscope.dev/none": "x"}},
		}},
	}
	if _, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rows, err := collectStatus(ctx, c, api, false, time.Second)
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
	if !slices.Contains(rows[1].Risks, "CABundleExpiring(critical)") {
		t.Errorf("url webhook risks %v, want CABundleExpiring(critical): its only CA expires within the hour", rows[1].Risks)
	}

	var table, js bytes.Buffer
	if err := printStatus(&table, &output{format: "table"}, rows); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "mpod.elbv2.k8s.aws") || !strings.HasPrefix(table.String(), "NAME") {
		t.Errorf("table:\n%s", table.String())
	}
	jsonOut, err := parseOutput("json")
	if err != nil {
		t.Fatal(err)
	}
	if err := printStatus(&js, jsonOut, rows); err != nil {
		t.Fatal(err)
	}
	var back StatusList
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Items) != 2 {
		t.Errorf("json round trip: %v, %d rows", err, len(back.Items))
	}
	t.Logf("hookscope status:\n%s", table.String())

	var ex bytes.Buffer
	if err := explain(ctx, &ex, c, api, "mpod.elbv2.k8s.aws", false, time.Second); err != nil {
		t.Fatal(err)
	}
	text := ex.String()
	// It blocks system pods (the CNI) and has no backend: unblock first.
	first := text[strings.Index(text, "1. "):]
	if !strings.Contains(text, `health: ServiceNotFound: service "aws-load-balancer-webhook-service" not found`) ||
		!strings.HasPrefix(first, "1. Option 2: let writes through while it is down: hookscope remediate ignore mpod.elbv2.k8s.aws --yes") {
		t.Errorf("explain:\n%s", text)
	}
	if err := explain(ctx, &ex, c, api, "nope.example.com", false, time.Second); err == nil {
		t.Error("explain of an unknown webhook did not fail")
	}
	t.Logf("hookscope explain:\n%s", text)
}

// TestStatusShowsAggregatedAPIs: metrics-server's APIService with its
// Service gone is listed, and explained, as an aggregated API, with fixes
// that fit one (no failurePolicy to relax).
func TestStatusShowsAggregatedAPIs(t *testing.T) {
	ctx, local, c := localCluster(t, "status-apis")
	cfg, err := restConfig(local.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	api := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": "v1beta1.metrics.k8s.io"},
		"spec": map[string]any{"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100, "versionPriority": 100,
			"insecureSkipTLSVerify": true, "service": map[string]any{"namespace": "kube-system", "name": "metrics-server"}},
	}}
	gvr := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	if _, err := dyn.Resource(gvr).Create(ctx, api, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rows, err := collectStatus(ctx, c, callOutAPI(t, local), false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var row *WebhookStatus
	for i := range rows {
		if rows[i].Kind == "APIService" {
			row = &rows[i]
		}
	}
	if row == nil || row.Name != "v1beta1.metrics.k8s.io" || row.API != "metrics.k8s.io/v1beta1" || row.Health != "ServiceNotFound" ||
		row.Service != "kube-system/metrics-server:443" {
		t.Fatalf("rows %+v, want metrics-server's APIService, ServiceNotFound", rows)
	}
	if !slices.Contains(row.Risks, "InsecureSkipTLSVerify(info)") {
		t.Errorf("risks %v, want InsecureSkipTLSVerify(info)", row.Risks)
	}
	var ex bytes.Buffer
	if err := explain(ctx, &ex, c, callOutAPI(t, local), "v1beta1.metrics.k8s.io", false, time.Second); err != nil {
		t.Fatal(err)
	}
	text := ex.String()
	for _, want := range []string{"aggregated API metrics.k8s.io/v1beta1 (APIService v1beta1.metrics.k8s.io)",
		"effect: requests to metrics.k8s.io/v1beta1 fail", "1. Option 1: restore Service kube-system/metrics-server",
		"2. Option 2: unblock namespace deletion while it is down: back up and delete it"} {
		if !strings.Contains(text, want) {
			t.Errorf("explain lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "remediate ignore") {
		t.Errorf("explain offers failurePolicy Ignore to an APIService:\n%s", text)
	}
	t.Logf("hookscope explain:\n%s", text)
}
