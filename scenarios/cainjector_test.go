//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/hookscope/hookscope/chaos"
)

// TestEmptyCABundleWithInjectAnnotation: a webhook configuration that
// leaves its caBundle to cert-manager's cainjector
// (cert-manager.io/inject-ca-from) while the Certificate it names is not
// issued yet (cert-manager #5519, #6340): the caBundle is empty, the API
// server verifies the serving certificate against its system roots and
// every call fails with an unknown authority. hookscope says so as a risk
// before any write, and its finding's fix names cainjector and the
// Certificate, not a caBundle to paste by hand. The fix: the Certificate
// is issued and cainjector writes the CA (the game day plays both).
func TestEmptyCABundleWithInjectAnnotation(t *testing.T) {
	var (
		wh      *chaos.Webhook
		finding chaos.AgentFinding
		cert    string
		result  = lab.Report.Scenario("an empty caBundle with the inject annotation (cainjector has not injected)", "UnknownAuthority")
	)
	fail := failer(result)
	const notIssued = "Issuing certificate as Secret does not exist"
	f := features.New("empty caBundle left to cainjector").
		Setup(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if wh, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "cainjector", FailurePolicy: admissionv1.Fail}); err != nil {
				fail(t, "deploying the webhook: %v", err)
			}
			result.Webhook = wh.WebhookName
			cert = wh.Namespace + "/" + wh.Spec.Name + "-serving-cert"
			if err := lab.EnsureCertificateCRD(ctx); err != nil {
				fail(t, "%v", err)
			}
			if err := lab.SetCertificate(ctx, wh.Namespace, wh.Spec.Name+"-serving-cert", false, "DoesNotExist", notIssued); err != nil {
				fail(t, "%v", err)
			}
			return ctx
		}).
		Assess("inject: the configuration leaves its caBundle to cainjector, and the Certificate is not issued", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			result.InjectedAt = time.Now()
			if err := wh.SetCAInjection(ctx, chaos.InjectCAFrom, cert, nil); err != nil {
				fail(t, "%v", err)
			}
			return ctx
		}).
		Assess("risk: before any write, the empty caBundle is a critical risk that names cainjector and the Certificate", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			r, err := riskOf(ctx, wh.WebhookName, "CANotInjected", 30*time.Second)
			if err != nil {
				fail(t, "%v", err)
			}
			for _, want := range []string{"its caBundle is empty, left to cert-manager's cainjector, which has not written the CA of Certificate " + cert,
				"Certificate " + cert + " is not Ready (DoesNotExist: " + notIssued + ")"} {
				if !strings.Contains(r.Detail, want) || r.Severity != "critical" {
					fail(t, "risk %s %q does not say %q", r.Severity, r.Detail, want)
				}
			}
			result.Evidence = append(result.Evidence, fmt.Sprintf("risk before the first write (%.3f s after the injection): %s %s: %s",
				time.Since(result.InjectedAt).Seconds(), r.Kind, r.Severity, r.Detail))
			return ctx
		}).
		Assess("observe: the write fails with an unknown authority", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			start, err := wh.Write(ctx)
			result.WriteAnsweredAt, result.FirstFailedCallAt = time.Now(), start
			result.FirstWriteDelaySeconds = start.Sub(result.InjectedAt).Seconds()
			if err == nil {
				fail(t, "the write succeeded with an empty caBundle")
			}
			result.WriteFailed, result.FailedCallError = true, err.Error()
			if want := "tls: failed to verify certificate: x509: certificate signed by unknown authority"; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), wh.ErrorName()) {
				fail(t, "the write failed with %q; want the webhook's name and %q", err, want)
			}
			return ctx
		}).
		Assess("detect: the finding's fix names cainjector and the Certificate", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if finding, err = lab.Agent.WaitForFinding(ctx, wh.WebhookName, "UnknownAuthority", 15*time.Second); err != nil {
				fail(t, "%v", err)
			}
			risk := result.Evidence // the risk's, before the finding's
			result.Evidence = nil
			recordDetection(result, finding)
			result.Evidence = append(risk, result.Evidence...)
			for _, want := range []string{"the caBundle of webhook " + wh.WebhookName + " in " + wh.Configuration() + " is empty",
				"cert-manager's cainjector has not written the CA of Certificate " + cert + " (annotation cert-manager.io/inject-ca-from)",
				"set failurePolicy Ignore"} {
				if !strings.Contains(finding.Remediation, want) {
					fail(t, "the finding's remediation %q does not say %q", finding.Remediation, want)
				}
			}
			// A probe may name it before the write, while the API server
			// still holds a connection; the failed write makes it rejected.
			err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
				open, _, err := lab.Agent.Findings(ctx)
				i := slices.IndexFunc(open, func(f chaos.AgentFinding) bool { return f.ID == finding.ID })
				if err == nil && i >= 0 {
					finding = open[i]
				}
				return finding.Effect == "writes rejected", nil
			})
			if err != nil {
				fail(t, "effect %q, want writes rejected", finding.Effect)
			}
			return ctx
		}).
		Assess("remediate: the Certificate is issued and cainjector writes its CA", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if err := lab.SetCertificate(ctx, wh.Namespace, wh.Spec.Name+"-serving-cert", true, "Ready", "Certificate is up to date and has not expired"); err != nil {
				fail(t, "%v", err)
			}
			if err := wh.SetCAInjection(ctx, chaos.InjectCAFrom, cert, wh.CA.PEM); err != nil {
				fail(t, "%v", err)
			}
			result.Remediation = "the Certificate issued (Ready) and its CA written into the caBundle, as cainjector does"
			return ctx
		}).
		Assess("recover: writes succeed, the finding resolves, the risk is gone", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var lastErr error
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
				_, lastErr = wh.Write(ctx)
				return lastErr == nil, nil
			})
			if err != nil {
				fail(t, "the write still fails after cainjector's injection: %v", lastErr)
			}
			result.RecoveredAt = time.Now()
			resolved, err := lab.Agent.WaitForResolved(ctx, finding.ID, 30*time.Second)
			if err != nil {
				fail(t, "%v", err)
			}
			result.ResolvedAt = *resolved.Resolved
			err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
				rs, err := lab.Agent.Risks(ctx)
				return err == nil && !slices.ContainsFunc(rs, func(r chaos.AgentRisk) bool {
					return r.Webhook.Name == wh.WebhookName && strings.HasPrefix(r.Kind, "CA")
				}), nil
			})
			if err != nil {
				fail(t, "the webhook's cainjector risk remains after the fix")
			}
			result.Recovered = true
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			finish(t, result, wh)
			return ctx
		}).
		Feature()
	testenv.Test(t, f)
}

// riskOf polls the agent's risks until one of kind is there for the
// webhook.
func riskOf(ctx context.Context, webhook, kind string, timeout time.Duration) (chaos.AgentRisk, error) {
	var found chaos.AgentRisk
	var last []chaos.AgentRisk
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		rs, err := lab.Agent.Risks(ctx)
		if err != nil {
			return false, nil
		}
		last = rs
		for _, r := range rs {
			if r.Webhook.Name == webhook && r.Kind == kind {
				found = r
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return found, fmt.Errorf("no %s risk for webhook %s within %s (risks: %+v)", kind, webhook, timeout, last)
	}
	return found, nil
}
