package findings

import (
	"strings"
	"testing"

	"github.com/hookscope/hookscope/callout"
)

// TestWrongAnswerFixes: a webhook that answers, but wrongly, is sent to
// its answer (not its certificate or its endpoints); a patch that does not
// apply rejects writes whatever the failurePolicy, so Ignore is never the
// way around it.
func TestWrongAnswerFixes(t *testing.T) {
	svc := callout.Webhook{Ref: callout.Ref{Kind: callout.KindMutating, Configuration: "pod-identity", Name: "pod-identity-webhook.amazonaws.com"},
		FailurePolicy: "Ignore", Service: &callout.ServiceRef{Namespace: "kube-system", Name: "pod-identity-webhook", Port: 443, Path: "/mutate"}}
	url := callout.Webhook{Ref: callout.Ref{Kind: callout.KindValidating, Configuration: "ext", Name: "v.ext.example.com"},
		FailurePolicy: "Fail", URL: "https://10.0.75.4:9443/validate"}
	for _, c := range []struct {
		class Class
		w     callout.Webhook
		want  []string
	}{
		{InvalidResponse, svc, []string{"Service kube-system/pod-identity-webhook", "apiVersion admission.k8s.io/v1 and kind AdmissionReview", "response.uid copied from request.uid"}},
		{PatchDoesNotApply, svc, []string{"fix the JSONPatch", "Service kube-system/pod-identity-webhook", "Ignore does not help", "hookscope remediate remove pod-identity-webhook.amazonaws.com"}},
		{WrongPath, svc, []string{"clientConfig.service.path, now /mutate"}},
		{ServerError, svc, []string{"logs of the webhook pods behind Service kube-system/pod-identity-webhook", "HTTP 5xx"}},
		{InvalidResponse, url, []string{"URL https://10.0.75.4:9443/validate", "response.uid", "failurePolicy Ignore to let them through"}},
		{WrongPath, url, []string{"10.0.75.4:9443 answers HTTP 404", "point the webhook's url at the path it serves"}},
		{ServerError, url, []string{"the server at https://10.0.75.4:9443/validate answers HTTP 5xx"}},
	} {
		got := Remediation(c.class, c.w)
		for _, want := range c.want {
			if !strings.Contains(got, want) {
				t.Errorf("%s of %s: fix %q does not say %q", c.class, c.w.Ref, got, want)
			}
		}
		if c.class == PatchDoesNotApply && strings.Contains(got, "remediate ignore") {
			t.Errorf("%s: fix %q offers failurePolicy Ignore, which does not help", c.class, got)
		}
		if c.w.URL != "" && (strings.Contains(got, "Service") || strings.Contains(got, "pods")) {
			t.Errorf("%s: fix %q speaks of a Service's pods; the webhook calls a URL", c.class, got)
		}
	}
}

// TestWrongAnswerEffects: the API server rejects a patch that does not
// apply even for a webhook that fails open; the other wrong answers are
// failed calls, which failurePolicy Ignore lets through.
func TestWrongAnswerEffects(t *testing.T) {
	ignore := callout.Webhook{Ref: callout.Ref{Kind: callout.KindMutating}, FailurePolicy: "Ignore"}
	for _, c := range []struct {
		class Class
		want  Effect
	}{
		{PatchDoesNotApply, WritesRejected},
		{InvalidResponse, FailsOpen},
		{WrongPath, FailsOpen},
		{ServerError, FailsOpen},
	} {
		if got := EffectOf(ignore, c.class); got != c.want {
			t.Errorf("%s with failurePolicy Ignore: %q, want %q", c.class, got, c.want)
		}
		if c.class.FailsNewConnections() {
			t.Errorf("%s fails new connections; the connection works, the answer does not", c.class)
		}
	}
}
