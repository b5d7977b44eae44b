package callout

import (
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCAInjectionOf(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        *CAInjection
		source      string
	}{
		{"none", map[string]string{"meta.helm.sh/release-name": "x"}, nil, ""},
		{"a Certificate", map[string]string{AnnotationInjectCAFrom: "kyverno/kyverno-svc-tls"}, &CAInjection{Certificate: "kyverno/kyverno-svc-tls"},
			"Certificate kyverno/kyverno-svc-tls (annotation cert-manager.io/inject-ca-from)"},
		{"a Secret (cert-manager's own CRDs)", map[string]string{AnnotationInjectCAFromSecret: "cert-manager/cert-manager-webhook-ca"},
			&CAInjection{Secret: "cert-manager/cert-manager-webhook-ca"}, "Secret cert-manager/cert-manager-webhook-ca (annotation cert-manager.io/inject-ca-from-secret)"},
		{"the API server's CA", map[string]string{AnnotationInjectAPIServerCA: "true"}, &CAInjection{APIServerCA: true},
			"the API server's own CA (annotation cert-manager.io/inject-apiserver-ca)"},
		{"the API server's CA, off", map[string]string{AnnotationInjectAPIServerCA: "false"}, nil, ""},
	} {
		got := CAInjectionOf(tc.annotations)
		if (got == nil) != (tc.want == nil) || (got != nil && (*got != *tc.want || got.Source() != tc.source)) {
			t.Errorf("%s: %+v, want %+v (%q)", tc.name, got, tc.want, tc.source)
		}
	}
	for ref, ok := range map[string]bool{"ns/name": true, "name": false, "ns/": false, "/name": false, "a/b/c": false} {
		if _, _, got := (CAInjection{Certificate: ref}).CertificateRef(); got != ok {
			t.Errorf("CertificateRef of %q: %v, want %v", ref, got, ok)
		}
	}
}

// TestHooksCarryCAInjection: every webhook of an annotated configuration,
// validating or mutating, carries what cainjector is to write.
func TestHooksCarryCAInjection(t *testing.T) {
	meta := metav1.ObjectMeta{Name: "kyverno-resource-validating-webhook-cfg", Annotations: map[string]string{AnnotationInjectCAFrom: "kyverno/kyverno-svc-tls"}}
	vwc := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: meta, Webhooks: []admissionv1.ValidatingWebhook{{Name: "a"}, {Name: "b"}}}
	mwc := &admissionv1.MutatingWebhookConfiguration{ObjectMeta: meta, Webhooks: []admissionv1.MutatingWebhook{{Name: "c"}}}
	plain := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "plain"}, Webhooks: []admissionv1.ValidatingWebhook{{Name: "d"}}}
	hooks := Hooks([]*admissionv1.ValidatingWebhookConfiguration{vwc, plain}, []*admissionv1.MutatingWebhookConfiguration{mwc})
	for _, h := range hooks {
		annotated := h.Ref.Configuration == meta.Name
		if annotated != (h.CAInjection != nil) || (annotated && h.CAInjection.Certificate != "kyverno/kyverno-svc-tls") {
			t.Errorf("%s: CAInjection %+v", h.Ref, h.CAInjection)
		}
	}
	api := APIService{Name: "v1beta1.x.example.com", Service: &ServiceRef{Namespace: "x", Name: "x"}, CAInjection: &CAInjection{Certificate: "x/x"}}
	conv := Conversion{CRD: "widgets.example.com", CAInjection: &CAInjection{Secret: "x/ca"}}
	if api.Hook().CAInjection != api.CAInjection || conv.Hook().CAInjection != conv.CAInjection {
		t.Errorf("an APIService's or a CRD's hook lost its CAInjection")
	}
}
