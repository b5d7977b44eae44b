package findings

import (
	"strings"
	"testing"

	"github.com/hookscope/hookscope/callout"
)

// TestURLWebhookFixes: a webhook that calls a URL has no Service, endpoints
// or pods of its own: its fixes name the host, the port and the URL.
func TestURLWebhookFixes(t *testing.T) {
	w := callout.Webhook{Ref: callout.Ref{Kind: callout.KindValidating, Configuration: "ext", Name: "v.ext.example.com"},
		URL: "https://10.0.75.4:9443/validate", TimeoutSeconds: 5}
	for _, tc := range []struct {
		class Class
		want  []string
	}{
		{ConnectionRefused, []string{"nothing listens on 10.0.75.4:9443", "URL https://10.0.75.4:9443/validate"}},
		{Unreachable, []string{"make 10.0.75.4 resolvable and routable"}},
		{ConnectTimeout, []string{"reach 10.0.75.4 on TCP 9443"}},
		{HostnameMismatch, []string{"10.0.75.4 among its names"}},
		{UnknownAuthority, []string{"caBundle of webhook v.ext.example.com in ext"}},
		{WebhookTimeout, []string{"timeoutSeconds (5s)"}},
		{CertExpired, []string{"renew the serving certificate behind URL https://10.0.75.4:9443/validate"}},
		{SlowResponse, []string{"server at https://10.0.75.4:9443/validate answers slowly"}},
		{Class("SomethingNew"), []string{"webhook server behind URL https://10.0.75.4:9443/validate"}},
	} {
		got := RestoreFix(tc.class, w)
		for _, want := range tc.want {
			if !strings.Contains(got, want) {
				t.Errorf("%s: fix %q does not say %q", tc.class, got, want)
			}
		}
		if strings.Contains(got, "Service") || strings.Contains(got, "pods") {
			t.Errorf("%s: fix %q speaks of a Service's pods; the webhook calls a URL", tc.class, got)
		}
	}
	if got := urlFix(ConnectionRefused, callout.Webhook{URL: "https://hook.example.com/v"}); !strings.Contains(got, "hook.example.com:443") {
		t.Errorf("a URL without a port is dialled on 443: %q", got)
	}
}
