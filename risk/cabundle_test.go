package risk_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/internal/certs"
	"github.com/hookscope/hookscope/risk"
)

const day = 24 * time.Hour

// caPEM mints a CA named name that expires at notAfter.
func caPEM(t *testing.T, name string, notAfter time.Time) []byte {
	t.Helper()
	ca, err := certs.NewCA(name, certs.Validity(notAfter.Add(-365*day), notAfter))
	if err != nil {
		t.Fatal(err)
	}
	return ca.PEM
}

// withBundle is w with caBundle bundle.
func withBundle(w callout.Webhook, bundle ...[]byte) callout.Webhook {
	for _, b := range bundle {
		w.CABundle = append(w.CABundle, b...)
	}
	return w
}

func TestCABundles(t *testing.T) {
	now := time.Now()
	const horizon = 7 * day
	var (
		longLived = caPEM(t, "webhook-ca-2027", now.Add(700*day))
		in30Days  = caPEM(t, "webhook-ca-renewing", now.Add(30*day))
		in3Days   = caPEM(t, "webhook-ca-old", now.Add(3*day+time.Hour))
		in5Days   = caPEM(t, "webhook-ca-older", now.Add(5*day+time.Hour))
		expired   = caPEM(t, "webhook-ca-gone", now.Add(-2*day-time.Hour))
		notAPEM   = []byte("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t") // base64 of PEM: invalid, said elsewhere
		badBlock  = []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	)
	api := callout.Webhook{Ref: callout.Ref{Kind: callout.KindAPIService, Configuration: "v1beta1.metrics.k8s.io", Name: "v1beta1.metrics.k8s.io"},
		FailurePolicy: "Fail", API: "metrics.k8s.io/v1beta1", Service: &callout.ServiceRef{Namespace: "kube-system", Name: "metrics-server", Port: 443}}
	insecure := api
	insecure.InsecureSkipTLSVerify = true
	conversion := callout.Webhook{Ref: callout.Ref{Kind: callout.KindConversion, Configuration: "widgets.example.com", Name: "widgets.example.com"},
		FailurePolicy: "Fail", Service: &callout.ServiceRef{Namespace: "widgets", Name: "convert", Port: 443}}
	for _, tc := range []struct {
		name string
		w    callout.Webhook
		// want is "" for no risk, else severity: phrases of the detail,
		// separated by " | ".
		want string
		// next is when the result changes by itself (zero: never).
		next time.Time
	}{
		{"a CA valid past the horizon says nothing until it enters it", withBundle(webhookOn("Fail"), in30Days), "", now.Add(23 * day)},
		{"the only CA expires within the horizon: no CA is left to verify with", withBundle(webhookOn("Fail"), in3Days),
			`critical: "webhook-ca-old" in its caBundle expires | (in 3 days) | no other certificate there stays valid | every write it matches is rejected`, now.Add(3*day + time.Hour)},
		{"the only CA has expired: every call fails now", withBundle(webhookOn("Fail"), expired),
			`critical: "webhook-ca-gone" in its caBundle expired | (2 days ago) | certificate has expired`, time.Time{}},
		{"a failing-open webhook is reported too: its checks stop running", withBundle(webhookOn("Ignore"), expired),
			`critical: failurePolicy Ignore | passes unchecked`, time.Time{}},
		{"a rotation in progress: the old CA expires, the new one stays", withBundle(webhookOn("Fail"), in3Days, longLived),
			`warning: "webhook-ca-old" | One other certificate there stays valid | only if the serving certificate chains to it`, now.Add(3*day + time.Hour)},
		{"two CAs expire within the horizon: the sooner is named, the other counted", withBundle(webhookOn("Fail"), in5Days, in3Days),
			`critical: "webhook-ca-old" | and 1 more of its 2 certificates expire within 7 days`, now.Add(3*day + time.Hour)},
		{"a block that does not parse is skipped as the API server skips it", withBundle(webhookOn("Fail"), badBlock, in3Days),
			`critical: "webhook-ca-old"`, now.Add(3*day + time.Hour)},
		{"an aggregated API's caBundle", withBundle(api, expired),
			`critical: aggregated API metrics.k8s.io/v1beta1 (APIService v1beta1.metrics.k8s.io) | discovery fail`, time.Time{}},
		{"a conversion webhook's caBundle", withBundle(conversion, in3Days),
			`critical: the conversion webhook of CRD widgets.example.com | need converting`, now.Add(3*day + time.Hour)},
		{"no caBundle: the API server verifies against the system roots", webhookOn("Fail"), "", time.Time{}},
		{"an APIService that skips verification ignores its caBundle", withBundle(insecure, expired), "", time.Time{}},
		{"a caBundle with no certificate is an invalid configuration, not this risk", withBundle(webhookOn("Fail"), notAPEM), "", time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, next := risk.CABundles([]callout.Webhook{tc.w}, horizon, now)
			if tc.want == "" {
				if len(got) != 0 {
					t.Errorf("risks %+v, want none", got)
				}
			} else {
				if len(got) != 1 {
					t.Fatalf("risks %+v, want one: %s", got, tc.want)
				}
				r := got[0]
				sev, phrases, _ := strings.Cut(tc.want, ": ")
				if r.Kind != risk.CABundleExpiring || string(r.Severity) != sev || r.Webhook != tc.w.Ref || !strings.Contains(r.Fix, "caBundle") {
					t.Errorf("risk %+v, want %s %s of %s with a fix", r, sev, risk.CABundleExpiring, tc.w.Ref)
				}
				for _, p := range strings.Split(phrases, " | ") {
					if !strings.Contains(r.Detail, p) {
						t.Errorf("detail %q does not say %q", r.Detail, p)
					}
				}
			}
			// Certificates carry whole seconds.
			if next.Sub(tc.next).Abs() > time.Second {
				t.Errorf("next change %v, want %v", next, tc.next)
			}
		})
	}
}

func TestCABundlesNamesTheFieldToRotate(t *testing.T) {
	now := time.Now()
	expired := caPEM(t, "gone", now.Add(-day))
	api := callout.Webhook{Ref: callout.Ref{Kind: callout.KindAPIService, Configuration: "v1.x.io", Name: "v1.x.io"}, FailurePolicy: "Fail", CABundle: expired}
	conversion := callout.Webhook{Ref: callout.Ref{Kind: callout.KindConversion, Configuration: "w.x.io", Name: "w.x.io"}, FailurePolicy: "Fail", CABundle: expired}
	for w, field := range map[*callout.Webhook]string{&api: "spec.caBundle", &conversion: "spec.conversion.webhook.clientConfig.caBundle"} {
		got, _ := risk.CABundles([]callout.Webhook{*w}, day, now)
		if len(got) != 1 || !strings.Contains(got[0].Fix, field) || !strings.Contains(got[0].Fix, "cert-manager") {
			t.Errorf("%s: %+v, want a fix naming %s and cert-manager's cainjector", w.Ref, got, field)
		}
	}
}

// BenchmarkCABundles judges 500 call-outs, each with its own two-CA
// bundle, as every analysis does.
func BenchmarkCABundles(b *testing.B) {
	now := time.Now()
	ws := make([]callout.Webhook, 500)
	for i := range ws {
		old, err := certs.NewCA("old", certs.Validity(now.Add(-365*day), now.Add(3*day)))
		if err != nil {
			b.Fatal(err)
		}
		renewed, err := certs.NewCA("new", certs.Validity(now.Add(-day), now.Add(365*day)))
		if err != nil {
			b.Fatal(err)
		}
		ws[i] = withBundle(webhookOn("Fail"), old.PEM, renewed.PEM)
	}
	b.ResetTimer()
	for range b.N {
		risk.CABundles(ws, 7*day, now)
	}
}
