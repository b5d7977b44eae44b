package findings

import (
	"strings"
	"testing"

	"github.com/hookscope/hookscope/callout"
)

// TestCertificateQualityFixes: a certificate the API server rejects for
// its quality is reissued; the caBundle is not what is wrong, and the fix
// must not send the operator there.
func TestCertificateQualityFixes(t *testing.T) {
	svc := callout.Webhook{Ref: callout.Ref{Kind: callout.KindValidating, Configuration: "cfg", Name: "v.hook.dev"},
		Service: &callout.ServiceRef{Namespace: "ns", Name: "svc", Port: 443}}
	url := callout.Webhook{Ref: svc.Ref, URL: "https://10.0.75.4:9443/validate"}
	for _, tc := range []struct {
		class Class
		w     callout.Webhook
		want  []string
	}{
		{InsecureSignature, svc, []string{"reissue the serving certificate behind Service ns/svc", "SHA-256", "rejects SHA-1"}},
		{InsecureSignature, url, []string{"served at https://10.0.75.4:9443/validate", "SHA-256"}},
		{LegacyCommonName, svc, []string{"with the name svc.ns.svc in subjectAltName", "dnsNames", "not only in the Common Name"}},
		{LegacyCommonName, url, []string{"10.0.75.4 in subjectAltName", "IP SAN"}},
	} {
		got := RestoreFix(tc.class, tc.w)
		for _, want := range tc.want {
			if !strings.Contains(got, want) {
				t.Errorf("%s: fix %q does not say %q", tc.class, got, want)
			}
		}
		if strings.Contains(got, "update the caBundle") {
			t.Errorf("%s: fix %q sends the operator to the caBundle", tc.class, got)
		}
		if !tc.class.FailsNewConnections() || tc.class.Aspect() != Connection {
			t.Errorf("%s: a certificate's failure is one of new connections", tc.class)
		}
		if e := EffectOf(callout.Webhook{FailurePolicy: "Fail"}, tc.class); e != WritesRejected {
			t.Errorf("%s: effect %q, want %q", tc.class, e, WritesRejected)
		}
	}
}
