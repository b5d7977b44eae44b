package inventory

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/internal/kube/kubefake"
)

// TestCallOutsCarryCAInjection: each kind of call-out carries what its
// annotations ask cainjector to write, as the inventory resolves it.
func TestCallOutsCarryCAInjection(t *testing.T) {
	conv, _, err := conversionOf(unstructuredOf(t, certManagerCRD))
	if err != nil {
		t.Fatal(err)
	}
	api, err := apiServiceOf(unstructuredOf(t, `{"metadata": {"name": "v1beta1.x.example.com", "annotations": {"cert-manager.io/inject-ca-from": "x/x-serving"}},
		"spec": {"group": "x.example.com", "version": "v1beta1", "service": {"namespace": "x", "name": "x"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	vwc := admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "policy", Annotations: map[string]string{callout.AnnotationInjectCAFrom: "policy/policy-serving-cert"}},
		Webhooks:   []admissionv1.ValidatingWebhook{{Name: "v.policy.example.com", ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "policy", Name: "policy"}}}},
	}
	listed := FromLists([]admissionv1.ValidatingWebhookConfiguration{vwc}, nil, []callout.APIService{api}, []callout.Conversion{conv}, nil, nil)
	want := map[string]callout.CAInjection{
		"v.policy.example.com":         {Certificate: "policy/policy-serving-cert"},
		"v1beta1.x.example.com":        {Certificate: "x/x-serving"},
		"certificates.cert-manager.io": {Secret: "cert-manager/cert-manager-webhook-ca"},
	}
	if len(listed.Webhooks) != len(want) {
		t.Fatalf("resolved %d call-outs, want %d", len(listed.Webhooks), len(want))
	}
	for _, w := range listed.Webhooks {
		if w.CAInjection == nil || *w.CAInjection != want[w.Ref.Name] {
			t.Errorf("%s: CAInjection %+v, want %+v", w.Ref, w.CAInjection, want[w.Ref.Name])
		}
	}
}

const servingCert = `{"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
  "metadata": {"name": "policy-serving-cert", "namespace": "policy", "resourceVersion": "5", "labels": {"app": "policy"}},
  "spec": {"secretName": "policy-serving-cert", "dnsNames": ["policy.policy.svc"], "issuerRef": {"name": "selfsigned", "kind": "Issuer"}},
  "status": {"conditions": [
    {"type": "Issuing", "status": "True", "reason": "DoesNotExist", "message": "Issuing certificate as Secret does not exist"},
    {"type": "Ready", "status": "False", "reason": "DoesNotExist", "message": "Issuing certificate as Secret does not exist"}]}}`

// TestWatchCertificates: the Certificates are watched only once the
// cluster has cert-manager's CRD, kept as their Ready condition, and read
// by namespace and name.
func TestWatchCertificates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	crd := unstructuredOf(t, certManagerCRD)
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	cert := unstructuredOf(t, servingCert)
	api := kubefake.New(map[schema.GroupVersionResource]string{
		crdsGVR: "CustomResourceDefinitionList", certificatesGVR: "CertificateList", apiServicesGVR: "APIServiceList"}, cert)
	inv := New(api, slog.New(slog.NewTextHandler(io.Discard, nil)))
	inv.WatchConversions(api)
	inv.ReadCertificates(api)
	inv.startCallOutInformers(ctx)
	if err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) { return inv.crds.HasSynced(), nil }); err != nil {
		t.Fatal(err)
	}
	inv.WatchCertificates(ctx)
	if inv.certs.inf.Load() != nil || inv.Certificates() != nil {
		t.Fatal("Certificates watched without cert-manager's CRD")
	}
	if _, err := api.Dynamic.Resource(crdsGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var read func(namespace, name string) (callout.Certificate, bool)
	err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		inv.WatchCertificates(ctx)
		read = inv.Certificates()
		return read != nil, nil
	})
	if err != nil {
		t.Fatal("Certificates not read once the CRD exists")
	}
	got, found := read("policy", "policy-serving-cert")
	want := callout.Condition{Status: "False", Reason: "DoesNotExist", Message: "Issuing certificate as Secret does not exist"}
	if !found || got.Ready != want {
		t.Errorf("policy/policy-serving-cert: %+v, %v; want Ready %+v", got, found, want)
	}
	if _, found := read("policy", "other"); found {
		t.Error("a Certificate that does not exist was found")
	}
	slim, _ := slimCertificate(cert)
	raw, _ := json.Marshal(slim)
	if want := `{"apiVersion":"cert-manager.io/v1","kind":"Certificate","metadata":{"name":"policy-serving-cert","namespace":"policy","resourceVersion":"5"},"status":{"conditions":[{"message":"Issuing certificate as Secret does not exist","reason":"DoesNotExist","status":"False","type":"Ready"}]}}`; string(raw) != want {
		t.Errorf("slim Certificate %s", raw)
	}
}
