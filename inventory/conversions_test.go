package inventory

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// certManagerCRD is cert-manager's Certificate CRD as the API server
// returns it, its schema cut short.
const certManagerCRD = `{
  "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "certificates.cert-manager.io", "resourceVersion": "42",
    "annotations": {"cert-manager.io/inject-ca-from-secret": "cert-manager/cert-manager-webhook-ca"}},
  "spec": {"group": "cert-manager.io", "scope": "Namespaced",
    "names": {"kind": "Certificate", "plural": "certificates"},
    "versions": [
      {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "description": "` + "a long schema" + `"}}},
      {"name": "v1alpha2", "served": false, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}}],
    "conversion": {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
      "clientConfig": {"service": {"namespace": "cert-manager", "name": "cert-manager-webhook", "path": "/convert"}, "caBundle": "LS0tLQ=="}}}},
  "status": {"acceptedNames": {"kind": "Certificate"}, "storedVersions": ["v1"]}
}`

func unstructuredOf(t *testing.T, raw string) *unstructured.Unstructured {
	t.Helper()
	var u unstructured.Unstructured
	if err := json.Unmarshal([]byte(raw), &u.Object); err != nil {
		t.Fatal(err)
	}
	return &u
}

func TestConversionOf(t *testing.T) {
	c, ok, err := conversionOf(unstructuredOf(t, certManagerCRD))
	if err != nil || !ok {
		t.Fatalf("cert-manager's CRD: %v, %v", ok, err)
	}
	if c.CRD != "certificates.cert-manager.io" || c.Group != "cert-manager.io" || c.Kind != "Certificate" ||
		strings.Join(c.Versions, ",") != "v1" || c.ClientConfig.Service == nil || c.ClientConfig.Service.Name != "cert-manager-webhook" ||
		string(c.ClientConfig.CABundle) != "----" {
		t.Errorf("read %+v", c)
	}
	h := c.Hook()
	if h.Ref != (callout.Ref{Kind: callout.KindConversion, Configuration: c.CRD, Name: c.CRD}) || *h.ClientConfig.Service.Port != 443 || *h.TimeoutSeconds != 30 {
		t.Errorf("hook %+v", h)
	}
	if c.ClientConfig.Service.Port != nil {
		t.Errorf("Hook gave the CRD's own clientConfig a port: %d", *c.ClientConfig.Service.Port)
	}
	if _, ok, err := conversionOf(unstructuredOf(t, `{"metadata": {"name": "widgets.example.com"}, "spec": {"conversion": {"strategy": "None"}}}`)); ok || err != nil {
		t.Errorf("a CRD without a conversion webhook: %v, %v", ok, err)
	}
	if _, _, err := conversionOf(unstructuredOf(t, `{"metadata": {"name": "bad"}, "spec": {"versions": "not a list", "conversion": {"strategy": "Webhook"}}}`)); err == nil {
		t.Error("a CRD whose versions are not a list was read")
	}
}

// TestSlimCRD: what the informer keeps of a CRD is what conversionOf
// reads: never a schema, and only the name of a CRD that converts without
// a webhook.
func TestSlimCRD(t *testing.T) {
	slim, err := slimCRD(unstructuredOf(t, certManagerCRD))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(slim)
	if strings.Contains(string(raw), "schema") || strings.Contains(string(raw), "storedVersions") {
		t.Errorf("kept %s", raw)
	}
	if c, ok, err := conversionOf(slim.(*unstructured.Unstructured)); err != nil || !ok || c.ClientConfig.Service.Name != "cert-manager-webhook" {
		t.Errorf("the slim CRD reads %+v, %v, %v", c, ok, err)
	}
	plain, _ := slimCRD(unstructuredOf(t, `{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com", "resourceVersion": "7"}, "spec": {"group": "example.com", "versions": [{"name": "v1", "schema": {"openAPIV3Schema": {"type": "object"}}}]}}`))
	if raw, _ := json.Marshal(plain); string(raw) != `{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"widgets.example.com","resourceVersion":"7"}}` {
		t.Errorf("a CRD without a conversion webhook kept %s", raw)
	}
}

// TestConversionResolves: the conversion webhook resolves to its Service's
// endpoints like a webhook, with what it converts and fixes that fit it.
func TestConversionResolves(t *testing.T) {
	c, _, _ := conversionOf(unstructuredOf(t, certManagerCRD))
	c.ClientConfig.CABundle = nil // the fixture's is no certificate; the system roots then
	ws := ResolveCallOuts(callout.CallOuts(nil, nil, nil, c), nil, nil)
	describeConversions(ws, []callout.Conversion{c})
	if len(ws) != 1 || ws[0].API != "Certificate.cert-manager.io (versions v1)" || !ws[0].IsConversion() {
		t.Fatalf("resolved %+v", ws)
	}
	class, _ := Problem(ws[0])
	if class != findings.ServiceNotFound || findings.EffectOf(ws[0], class) != findings.ConversionFails {
		t.Errorf("class %s, effect %s", class, findings.EffectOf(ws[0], class))
	}
	fix := findings.Remediation(class, ws[0])
	if !strings.Contains(fix, "no failurePolicy") || !strings.Contains(fix, "Certificate.cert-manager.io (versions v1)") || strings.Contains(fix, "remediate ignore") {
		t.Errorf("fix %q", fix)
	}
}
