package findings

import (
	"strings"
	"testing"

	"github.com/hookscope/hookscope/callout"
)

// TestDeniesCriticalPodsFix: a denial is no failed call: the fix exempts
// the pods from the policy, and failurePolicy Ignore is never offered.
func TestDeniesCriticalPodsFix(t *testing.T) {
	w := callout.Webhook{Ref: callout.Ref{Kind: callout.KindValidating, Configuration: "kyverno-resource-validating-webhook-cfg", Name: "validate.kyverno.svc-fail"},
		FailurePolicy: "Fail", Service: &callout.ServiceRef{Namespace: "kyverno", Name: "kyverno-svc", Port: 443}}
	got := Remediation(DeniesCriticalPods, w)
	for _, want := range []string{"exempt the pods the cluster needs from the policy behind webhook validate.kyverno.svc-fail", "PolicyException", "excludedNamespaces", "failurePolicy Ignore does not help"} {
		if !strings.Contains(got, want) {
			t.Errorf("fix %q does not say %q", got, want)
		}
	}
	if strings.Contains(got, "remediate ignore") || strings.Contains(got, "Service kyverno/kyverno-svc") {
		t.Errorf("fix %q offers failurePolicy Ignore, or the backend's fix", got)
	}
}

// TestCAInjectionFix: an unknown authority of a call-out whose caBundle
// cainjector writes sends the operator to cainjector and the source the
// annotation names, not to edit the caBundle by hand; other classes keep
// their fixes.
func TestCAInjectionFix(t *testing.T) {
	hook := callout.Webhook{Ref: callout.Ref{Kind: callout.KindValidating, Configuration: "policy", Name: "v.policy.example.com"}, FailurePolicy: "Fail",
		Service: &callout.ServiceRef{Namespace: "policy", Name: "policy-webhook", Port: 443}, CAInjection: &callout.CAInjection{Certificate: "policy/policy-serving-cert"}}
	withBundle := hook
	withBundle.CABundle = []byte("-----BEGIN CERTIFICATE-----")
	fromSecret := hook
	fromSecret.CAInjection = &callout.CAInjection{Secret: "cert-manager/cert-manager-webhook-ca"}
	fromSecret.Ref = callout.Ref{Kind: callout.KindConversion, Configuration: "certificates.cert-manager.io", Name: "certificates.cert-manager.io"}
	url := hook
	url.Service, url.URL = nil, "https://10.0.75.4:9443/validate"
	for _, tc := range []struct {
		name string
		w    callout.Webhook
		want []string
	}{
		{"empty caBundle", hook, []string{"the caBundle of webhook v.policy.example.com in policy is empty", "cainjector has not written the CA of Certificate policy/policy-serving-cert (annotation cert-manager.io/inject-ca-from)",
			"kubectl -n policy describe certificate policy-serving-cert", "cert-manager-cainjector"}},
		{"a caBundle that does not verify", withBundle, []string{"does not verify the serving certificate, and cert-manager's cainjector writes it from Certificate policy/policy-serving-cert"}},
		{"a Secret, a CRD", fromSecret, []string{"CRD certificates.cert-manager.io's conversion webhook", "Secret cert-manager/cert-manager-webhook-ca holds ca.crt", "allow-direct-injection"}},
		{"a URL webhook", url, []string{"cainjector has not written the CA of Certificate policy/policy-serving-cert"}},
	} {
		got := RestoreFix(UnknownAuthority, tc.w)
		for _, want := range tc.want {
			if !strings.Contains(got, want) {
				t.Errorf("%s: fix %q does not say %q", tc.name, got, want)
			}
		}
	}
	if got := RestoreFix(CertExpired, hook); strings.Contains(got, "cainjector") {
		t.Errorf("an expired certificate's fix speaks of cainjector: %q", got)
	}
	plain := hook
	plain.CAInjection = nil
	if got := RestoreFix(UnknownAuthority, plain); strings.Contains(got, "cainjector") {
		t.Errorf("a caBundle no annotation leaves to cainjector: %q", got)
	}
}
