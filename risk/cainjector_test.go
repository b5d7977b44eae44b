package risk_test

import (
	"strings"
	"testing"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/risk"
)

func TestCAInjections(t *testing.T) {
	inject := &callout.CAInjection{Certificate: "policy/policy-serving-cert"}
	hook := callout.Webhook{Ref: callout.Ref{Kind: callout.KindValidating, Configuration: "policy", Name: "v.policy.example.com"}, FailurePolicy: "Fail",
		Service: &callout.ServiceRef{Namespace: "policy", Name: "policy-webhook", Port: 443}, CAInjection: inject}
	ignore := hook
	ignore.FailurePolicy, ignore.Ref.Name = "Ignore", "i.policy.example.com"
	injected := withBundle(hook, []byte("-----BEGIN CERTIFICATE-----"))
	fromSecret := hook
	fromSecret.Ref = callout.Ref{Kind: callout.KindConversion, Configuration: "certificates.cert-manager.io", Name: "certificates.cert-manager.io"}
	fromSecret.CAInjection = &callout.CAInjection{Secret: "cert-manager/cert-manager-webhook-ca"}
	plain := hook
	plain.CAInjection, plain.Ref.Name = nil, "plain.example.com"
	notReady := func(string, string) (callout.Certificate, bool) {
		return callout.Certificate{Ready: callout.Condition{Status: "False", Reason: "DoesNotExist", Message: "Issuing certificate as Secret does not exist"}}, true
	}
	ready := func(string, string) (callout.Certificate, bool) {
		return callout.Certificate{Ready: callout.Condition{Status: "True", Reason: "Ready"}}, true
	}
	missing := func(string, string) (callout.Certificate, bool) { return callout.Certificate{}, false }
	for _, tc := range []struct {
		name  string
		ws    []callout.Webhook
		certs risk.Certificates
		want  []string // substrings of the one risk's "kind severity: detail"; nil: no risk
	}{
		{"empty, the Certificate not Ready", []callout.Webhook{hook}, notReady, []string{"CANotInjected critical: webhook Validating/policy/v.policy.example.com (failurePolicy Fail): its caBundle is empty, left to cert-manager's cainjector, which has not written the CA of Certificate policy/policy-serving-cert (annotation cert-manager.io/inject-ca-from)",
			"x509: certificate signed by unknown authority", "Certificate policy/policy-serving-cert is not Ready (DoesNotExist: Issuing certificate as Secret does not exist)"}},
		{"empty, the Certificate Ready: cainjector", []callout.Webhook{hook}, ready, []string{"CANotInjected critical:", "Certificate policy/policy-serving-cert is Ready; check that cainjector runs"}},
		{"empty, Certificates unknown", []callout.Webhook{hook}, nil, []string{"CANotInjected critical:", "which has not written the CA of Certificate policy/policy-serving-cert (annotation cert-manager.io/inject-ca-from)"}},
		{"empty, failing open", []callout.Webhook{ignore}, nil, []string{"CANotInjected warning:", "every write it matches passes unchecked"}},
		{"empty, a CRD from a Secret", []callout.Webhook{fromSecret}, nil, []string{"CANotInjected critical: the conversion webhook of CRD certificates.cert-manager.io", "Secret cert-manager/cert-manager-webhook-ca (annotation cert-manager.io/inject-ca-from-secret)"}},
		{"injected, the Certificate gone", []callout.Webhook{injected}, missing, []string{"CAInjectionSourceNotReady warning:", "Certificate policy/policy-serving-cert does not exist"}},
		{"injected, the Certificate Ready", []callout.Webhook{injected}, ready, nil},
		{"injected, Certificates unknown", []callout.Webhook{injected}, nil, nil},
		{"no annotation", []callout.Webhook{plain}, notReady, nil},
	} {
		got := risk.CAInjections(tc.ws, tc.certs)
		if wantOne := len(tc.want) > 0; len(got) != map[bool]int{true: 1, false: 0}[wantOne] {
			t.Errorf("%s: risks %+v, want one: %v", tc.name, got, wantOne)
			continue
		}
		if len(got) == 0 {
			continue
		}
		r := got[0]
		text := string(r.Kind) + " " + string(r.Severity) + ": " + r.Detail
		for _, want := range tc.want {
			if !strings.Contains(text, want) {
				t.Errorf("%s: %q does not say %q", tc.name, text, want)
			}
		}
		if !strings.Contains(r.Fix, "cainjector") {
			t.Errorf("%s: fix %q does not name cainjector", tc.name, r.Fix)
		}
	}
}
