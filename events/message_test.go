package events

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

func TestMessages(t *testing.T) {
	resolved := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	svc := &callout.ServiceRef{Namespace: "policy", Name: "gatekeeper-webhook-service", Port: 443}
	pod := &callout.PodRef{Namespace: "policy", Name: "gatekeeper-abc", Node: "n1"}
	b := netip.MustParseAddrPort("10.0.1.5:8443")
	vhook := callout.Ref{Kind: callout.KindValidating, Configuration: "gatekeeper", Name: "validation.gatekeeper.sh"}
	for _, tc := range []struct {
		name                string
		f                   findings.Finding
		reason, failing     string
		recovered, recovers string
	}{
		{
			name: "a validating webhook's expired certificate",
			f: findings.Finding{Class: findings.CertExpired, Webhook: vhook, Effect: findings.WritesRejected, Service: svc, Backend: b, Pod: pod,
				Remediation: "serve a renewed, valid certificate"},
			reason:    ReasonWebhookFailing,
			failing:   `CertExpired: validating webhook "validation.gatekeeper.sh" fails: writes rejected; backend 10.0.1.5:8443 (pod policy/gatekeeper-abc), Service policy/gatekeeper-webhook-service. Fix: serve a renewed, valid certificate`,
			recovers:  ReasonWebhookRecovered,
			recovered: `validating webhook "validation.gatekeeper.sh" no longer fails with CertExpired; backend 10.0.1.5:8443 (pod policy/gatekeeper-abc), Service policy/gatekeeper-webhook-service`,
		},
		{
			name: "what a mutating webhook's failure breaks",
			f: findings.Finding{Class: findings.ServiceNotFound, Webhook: callout.Ref{Kind: callout.KindMutating, Configuration: "vpc", Name: "mpod.vpc.k8s.aws"},
				Effect: findings.WritesRejected, Service: svc,
				Impact: &findings.Impact{Kind: findings.ImpactNodeNotReady, Object: "DaemonSet kube-system/aws-node", Node: "n2", Detail: "since 10:00"}},
			reason:    ReasonWebhookFailing,
			failing:   `ServiceNotFound: mutating webhook "mpod.vpc.k8s.aws" fails: writes rejected; it breaks DaemonSet kube-system/aws-node (NodeNotReady on node n2); Service policy/gatekeeper-webhook-service`,
			recovers:  ReasonWebhookRecovered,
			recovered: `mutating webhook "mpod.vpc.k8s.aws" no longer breaks DaemonSet kube-system/aws-node (NodeNotReady on node n2); Service policy/gatekeeper-webhook-service`,
		},
		{
			name: "an aggregated API",
			f: findings.Finding{Class: findings.NoEndpoints, Webhook: callout.Ref{Kind: callout.KindAPIService, Configuration: "v1beta1.metrics.k8s.io", Name: "v1beta1.metrics.k8s.io"},
				Effect: findings.APIUnavailable},
			reason:    ReasonAPIServiceUnavailable,
			failing:   `NoEndpoints: APIService v1beta1.metrics.k8s.io fails: requests to the API fail`,
			recovers:  ReasonAPIServiceRecovered,
			recovered: `APIService v1beta1.metrics.k8s.io no longer fails with NoEndpoints`,
		},
		{
			name: "a certificate that expires soon, on a conversion webhook",
			f: findings.Finding{Class: findings.CertExpiringSoon, Webhook: callout.Ref{Kind: callout.KindConversion, Configuration: "widgets.example.com", Name: "widgets.example.com"},
				Effect: findings.NoneYet, Certificate: &findings.Certificate{NotAfter: time.Date(2026, 12, 10, 0, 0, 0, 0, time.UTC)}, Remediation: "renew it"},
			reason:    ReasonCertificateExpiringSoon,
			failing:   `CertExpiringSoon: the conversion webhook of CRD widgets.example.com: its serving certificate expires 2026-12-10T00:00:00Z (nothing fails yet). Fix: renew it`,
			recovers:  ReasonCertificateRenewed,
			recovered: `the conversion webhook of CRD widgets.example.com no longer serves a certificate about to expire`,
		},
		{
			name: "a finding this agent stops following is not called a recovery",
			f: findings.Finding{Class: findings.NoEndpoints, Webhook: vhook, Effect: findings.FailsOpen, URL: "https://10.0.3.4:9443/v",
				Evidence: []findings.Evidence{{Source: findings.Agent, Detail: "no longer checked by this agent"}}},
			reason:    ReasonWebhookFailing,
			failing:   `NoEndpoints: validating webhook "validation.gatekeeper.sh" fails open: the writes it matches pass without it; URL https://10.0.3.4:9443/v`,
			recovers:  ReasonWebhookRecovered,
			recovered: `validating webhook "validation.gatekeeper.sh": NoEndpoints is no longer followed by this agent (not seen again after it restarted, or another agent now runs the cluster-wide checks); URL https://10.0.3.4:9443/v`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failing, recovers := Reasons(tc.f)
			if failing != tc.reason || recovers != tc.recovers {
				t.Errorf("reasons %s, %s; want %s, %s", failing, recovers, tc.reason, tc.recovers)
			}
			if got := FailingMessage(tc.f); got != tc.failing {
				t.Errorf("failing:\n got %s\nwant %s", got, tc.failing)
			}
			f := tc.f
			f.Resolved = &resolved
			if got := RecoveredMessage(f); got != tc.recovered {
				t.Errorf("recovered:\n got %s\nwant %s", got, tc.recovered)
			}
		})
	}
}

// TestMessageIsOneBoundedLine: a long fix with line breaks still makes one
// line within an Event's limit, cut at a character boundary.
func TestMessageIsOneBoundedLine(t *testing.T) {
	f := findings.Finding{Class: findings.CertExpired, Webhook: callout.Ref{Kind: callout.KindValidating, Configuration: "c", Name: "w"},
		Effect: findings.WritesRejected, Remediation: "first line\nsecond line " + strings.Repeat("é", 2000)}
	got := FailingMessage(f)
	if len(got) > maxMessage || strings.Contains(got, "\n") || !strings.HasSuffix(got, "...") || !strings.Contains(got, "first line second line") {
		t.Errorf("message of %d bytes: %.80q...", len(got), got)
	}
	if !strings.HasSuffix(strings.TrimSuffix(got, "..."), "é") {
		t.Errorf("cut inside a character: %q", got[len(got)-8:])
	}
}

// TestDecide: a Warning when a finding opens or is re-classed, nothing for
// its other reports, a Normal Event when it ends, none when another
// finding takes its place.
func TestDecide(t *testing.T) {
	r := &Recorder{recorded: map[string]findings.Class{}}
	now := time.Now()
	open := findings.Finding{ID: "a", Class: findings.CallsFailing}
	reclassed := findings.Finding{ID: "a", Class: findings.CertExpired}
	ended := reclassed
	ended.Resolved = &now
	superseded := findings.Finding{ID: "b", Class: findings.CertExpired, Resolved: &now, Superseded: findings.ConnectionRefused}
	type want struct{ warning, ok bool }
	for i, step := range []struct {
		f findings.Finding
		want
	}{
		{open, want{true, true}},
		{open, want{false, false}},
		{reclassed, want{true, true}},
		{reclassed, want{false, false}},
		{ended, want{false, true}},
		{superseded, want{false, false}},
	} {
		warning, ok := r.decide(step.f)
		if (want{warning, ok}) != step.want {
			t.Errorf("step %d (%s %s, resolved %v): warning %v, record %v; want %+v", i, step.f.ID, step.f.Class, step.f.Resolved != nil, warning, ok, step.want)
		}
	}
	if len(r.recorded) != 0 {
		t.Errorf("still tracking %v", r.recorded)
	}
}
