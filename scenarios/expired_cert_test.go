//go:build linux

package scenarios

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/hookscope/hookscope/chaos"
)

// The seed's first failure: the webhook's serving certificate expired, and
// the API server rejects every matched write with its x509 text.
const x509Expired = "x509: certificate has expired or is not yet valid"

func TestExpiredServingCertificate(t *testing.T) {
	var (
		wh      *chaos.Webhook
		result  = lab.Report.Scenario("expired serving certificate", "CertExpired")
		finding chaos.AgentFinding
	)
	fail := func(t *testing.T, format string, args ...any) {
		t.Helper()
		msg := sprintf(format, args...)
		result.Failures = append(result.Failures, msg)
		t.Fatal(msg)
	}

	f := features.New("expired serving certificate").
		Setup(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			wh, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "expired-cert", FailurePolicy: admissionv1.Fail})
			if err != nil {
				fail(t, "deploying the webhook: %v", err)
			}
			return ctx
		}).
		Assess("inject: the backend serves an expired certificate", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			cert, err := wh.ExpiredCertificate()
			if err != nil {
				fail(t, "making the expired certificate: %v", err)
			}
			result.InjectedAt = time.Now()
			wh.Server.SetCertificate(cert)
			return ctx
		}).
		Assess("observe: a pod create is rejected with the API server's x509 text", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			start, err := wh.Write(ctx)
			if err == nil {
				fail(t, "the write succeeded through a webhook with an expired certificate")
			}
			result.FirstFailedCallAt = start
			result.FailedCallError = err.Error()
			if !strings.Contains(err.Error(), x509Expired) || !strings.Contains(err.Error(), wh.WebhookName) {
				fail(t, "the write failed with %q, want the webhook's name and %q", err, x509Expired)
			}
			return ctx
		}).
		Assess("detect: the agent names the webhook and the reason", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			finding, err = lab.Agent.WaitForFinding(ctx, wh.WebhookName, 15*time.Second)
			if err != nil {
				fail(t, "%v", err)
			}
			result.DetectedClass = finding.Class
			result.DetectedAt = finding.FirstSeen
			result.DetectedBy = finding.Sources()
			for _, e := range finding.Evidence {
				result.Evidence = append(result.Evidence, e.Source+": "+e.Detail)
			}
			if !result.FirstFailedCallAt.IsZero() {
				result.DetectLatencySeconds = finding.FirstSeen.Sub(result.FirstFailedCallAt).Seconds()
			}
			if finding.Class != "CertExpired" {
				fail(t, "finding class %s, want CertExpired (evidence %v)", finding.Class, result.Evidence)
			}
			if finding.Webhook.Configuration != "expired-cert" || finding.FailurePolicy != "Fail" || finding.Effect != "writes rejected" {
				fail(t, "finding names %+v policy %s effect %q", finding.Webhook, finding.FailurePolicy, finding.Effect)
			}
			return ctx
		}).
		Assess("detect: the finding's span is in Jaeger", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			traces, err := lab.Jaeger.WaitForTraces(wctx, chaos.AgentServiceName,
				map[string]string{"hookscope.finding.id": finding.ID, "hookscope.failure.class": "CertExpired"}, 1)
			if err != nil {
				fail(t, "reading the finding's span from Jaeger: %v", err)
			}
			span := traces[0].Spans[0]
			want := map[string]string{
				"hookscope.webhook.configuration":  "expired-cert",
				"hookscope.webhook.name":           wh.WebhookName,
				"hookscope.webhook.failure_policy": "Fail",
				"hookscope.service.name":           wh.Service,
				"hookscope.service.namespace":      wh.Namespace,
				"k8s.pod.name":                     "expired-cert-webhook-0",
				"k8s.node.name":                    lab.Node,
				"error.type":                       "CertExpired",
			}
			for k, v := range want {
				if span.Tags[k] != v {
					fail(t, "span %s: %s = %q, want %q (tags %v)", span.OperationName, k, span.Tags[k], v, span.Tags)
				}
			}
			result.SpanTraceID = traces[0].TraceID
			return ctx
		}).
		Assess("remediate: the backend serves a valid certificate", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			cert, err := wh.ValidCertificate()
			if err != nil {
				fail(t, "making a valid certificate: %v", err)
			}
			wh.Server.SetCertificate(cert)
			result.Remediation = "serve a renewed, valid certificate"
			return ctx
		}).
		Assess("recover: the pod create succeeds and the finding resolves", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var lastErr error
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
				_, lastErr = wh.Write(ctx)
				return lastErr == nil, nil
			})
			if err != nil {
				fail(t, "the write still fails after the fix: %v", lastErr)
			}
			result.RecoveredAt = time.Now()
			resolved, err := lab.Agent.WaitForResolved(ctx, finding.ID, 15*time.Second)
			if err != nil {
				fail(t, "%v", err)
			}
			result.ResolvedAt = *resolved.Resolved
			result.Recovered = true
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			result.Passed = !t.Failed() && len(result.Failures) == 0 && result.Recovered
			if wh != nil {
				if err := wh.Remove(ctx); err != nil {
					t.Logf("removing the webhook: %v", err)
				}
			}
			return ctx
		}).
		Feature()

	testenv.Test(t, f)
}
