package callout

import (
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
)

// TestClientConfigProblems: each rule names its field once, with the value
// as written (never a URL's password), and a callable configuration has
// none.
func TestClientConfigProblems(t *testing.T) {
	port := func(p int32) *int32 { return &p }
	svc := func(ns, name string, p *int32) *admissionv1.ServiceReference {
		return &admissionv1.ServiceReference{Namespace: ns, Name: name, Port: p}
	}
	url := func(s string) *string { return &s }
	for _, c := range []struct {
		name   string
		cc     admissionv1.WebhookClientConfig
		fields []string
		value  string // of the first problem
		why    string // in the first problem's reasons
		not    string // nowhere in the problems
	}{
		{name: "a Service", cc: admissionv1.WebhookClientConfig{Service: svc("kube-system", "webhook", port(443))}},
		{name: "a URL", cc: admissionv1.WebhookClientConfig{URL: url("https://policy.example.com:8443/validate")}},
		{name: "neither", fields: []string{"clientConfig"}, why: "neither a service nor a url"},
		{name: "both", cc: admissionv1.WebhookClientConfig{Service: svc("ns", "webhook", nil), URL: url("https://h/")},
			fields: []string{"clientConfig"}, why: "both a service and a url"},
		{name: "a name no Service can have", cc: admissionv1.WebhookClientConfig{Service: svc("ns", "Bad_Name", nil)},
			fields: []string{"service.name"}, value: "Bad_Name", why: "DNS-1035 label"},
		{name: "a namespace name that cannot exist", cc: admissionv1.WebhookClientConfig{Service: svc("Kube.System", "webhook", nil)},
			fields: []string{"service.namespace"}, value: "Kube.System", why: "RFC 1123 label"},
		{name: "a port out of range", cc: admissionv1.WebhookClientConfig{Service: svc("ns", "webhook", port(70000))},
			fields: []string{"service.port"}, value: "70000", why: "not a port"},
		{name: "an http URL with a password, query and fragment", cc: admissionv1.WebhookClientConfig{URL: url("http://admin:s3cret@h/v?x=1#f")},
			fields: []string{"url"}, value: "http://admin:xxxxx@h/v?x=1#f", why: `its scheme is "http", not https`, not: "s3cret"},
		{name: "a URL that does not parse", cc: admissionv1.WebhookClientConfig{URL: url("https://admin:s3cret@policy example.com/")},
			fields: []string{"url"}, why: "invalid", not: "s3cret"},
		{name: "a caBundle with no PEM certificate", cc: admissionv1.WebhookClientConfig{Service: svc("ns", "webhook", nil), CABundle: []byte("not a certificate")},
			fields: []string{"caBundle"}, value: "17 bytes", why: "no PEM certificate"},
		{name: "every problem at once", cc: admissionv1.WebhookClientConfig{Service: svc("Bad", "Bad", port(0)), URL: url("ftp://h"), CABundle: []byte("x")},
			fields: []string{"clientConfig", "service.namespace", "service.name", "service.port", "url", "caBundle"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps := ClientConfigProblems(c.cc)
			var fields []string
			for _, p := range ps {
				fields = append(fields, p.Field)
				if len(p.Why) == 0 {
					t.Errorf("problem %+v says nothing", p)
				}
			}
			if !slices.Equal(fields, c.fields) {
				t.Fatalf("fields %v, want %v (%+v)", fields, c.fields, ps)
			}
			if len(ps) == 0 {
				return
			}
			if ps[0].Value != c.value {
				t.Errorf("value %q, want %q", ps[0].Value, c.value)
			}
			if !strings.Contains(strings.Join(ps[0].Why, "; "), c.why) {
				t.Errorf("reasons %q lack %q", ps[0].Why, c.why)
			}
			if c.not != "" && strings.Contains(strings.Join(append(ps[0].Why, ps[0].Value), " "), c.not) {
				t.Errorf("problem %+v shows %q", ps[0], c.not)
			}
		})
	}
}
