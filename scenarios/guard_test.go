//go:build linux

package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/hookscope/hookscope/chaos"
)

// TestGuardUnblocksAWSNode is the blocked aws-node game day with the
// agent's guard on and the webhook's configuration opted in, and nobody
// running a fix: after its grace period the guard excludes kube-system
// from the webhook, aws-node's pod is created and the joining node turns
// Ready. Once the webhook works again (its Service restored) and has been
// healthy a while, the guard puts the configuration back exactly as it was.
// Each change is an Event on the configuration.
func TestGuardUnblocksAWSNode(t *testing.T) {
	node := lab.GuardNode
	var (
		wh      *chaos.Webhook
		backup  *corev1.Service
		before  string
		finding chaos.AgentFinding
		result  = lab.Report.Scenario("guard: a joining node's aws-node is unblocked with no human", "ServiceNotFound")
	)
	fail := failer(result)
	f := features.New("guard unblocks aws-node").
		Setup(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if err := lab.DeployCNI(ctx); err != nil {
				fail(t, "deploying the modelled CNI: %v", err)
			}
			var err error
			wh, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: chaos.GuardedConfiguration, Mutating: true, KubeSystem: true, FailurePolicy: admissionv1.Fail, Guard: true})
			if err != nil {
				fail(t, "deploying the webhook: %v", err)
			}
			result.Webhook = wh.WebhookName
			if before, err = configurationContent(ctx, wh); err != nil {
				fail(t, "%v", err)
			}
			return ctx
		}).
		Assess("inject: the webhook's Service is deleted, then a node joins", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			result.InjectedAt = time.Now()
			var err error
			if backup, err = wh.DeleteService(ctx); err != nil {
				fail(t, "%v", err)
			}
			result.FirstFailedCallAt = time.Now()
			if err := lab.JoinNode(ctx, node); err != nil {
				fail(t, "joining %s: %v", node, err)
			}
			return ctx
		}).
		Assess("detect: the agent links the NotReady node to aws-node and the webhook", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if finding, err = lab.Agent.WaitForImpact(ctx, wh.WebhookName, "NodeNotReady", node, 30*time.Second); err != nil {
				fail(t, "%v", err)
				return ctx
			}
			recordDetection(result, finding)
			result.WriteFailed = true
			result.FailedCallError = finding.Impact.Detail
			return ctx
		}).
		Assess("remediate: the guard, not a human, excludes kube-system from the webhook", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			ev, err := waitGuardEvent(ctx, wh, "GuardExcludedNamespace", time.Minute)
			if err != nil {
				fail(t, "%v", err)
				return ctx
			}
			t.Logf("guard: %s", ev)
			// Its span links to the finding that made it act.
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			traces, err := lab.Jaeger.WaitForTraces(wctx, chaos.AgentServiceName,
				map[string]string{"hookscope.guard.action": "exclude", "hookscope.webhook.name": wh.WebhookName}, 1)
			if err != nil {
				fail(t, "reading the guard's span from Jaeger: %v", err)
			} else if refs := traces[0].Spans[0].References; len(refs) != 1 || refs[0].RefType != "FOLLOWS_FROM" {
				fail(t, "the guard's span references %+v, want one link to the webhook's finding", refs)
			}
			result.Remediation = "the guard excluded kube-system from the webhook (no human); the Service restored; the guard put the webhook back once healthy"
			return ctx
		}).
		Assess("recover: the node turns Ready; once the webhook is healthy again, the guard puts it back exactly", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			readyAt, err := lab.WaitNodeReady(ctx, node, true, 3*time.Minute)
			if err != nil {
				fail(t, "%s not Ready with the guard on: %v", node, err)
				return ctx
			}
			result.RecoveredAt = readyAt
			t.Logf("node %s Ready %.1f s after the injection, with no human", node, readyAt.Sub(result.InjectedAt).Seconds())
			resolved, err := lab.Agent.WaitForResolved(ctx, finding.ID, time.Minute)
			if err != nil {
				fail(t, "%v", err)
				return ctx
			}
			result.ResolvedAt = *resolved.Resolved
			if err := wh.RestoreService(ctx, backup); err != nil {
				fail(t, "%v", err)
				return ctx
			}
			if _, err := waitGuardEvent(ctx, wh, "GuardReverted", 2*time.Minute); err != nil {
				fail(t, "%v", err)
				return ctx
			}
			after, err := configurationContent(ctx, wh)
			if err != nil {
				fail(t, "%v", err)
			} else if after != before {
				fail(t, "the configuration after the guard's revert differs:\n%s\nbefore:\n%s", after, before)
			}
			if err := wh.WaitServing(ctx); err != nil {
				fail(t, "writes after the revert: %v", err)
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

// configurationContent is the webhook's configuration as JSON, without what
// the API server writes on every update.
func configurationContent(ctx context.Context, wh *chaos.Webhook) (string, error) {
	cfg, err := lab.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, wh.Configuration(), metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", wh.Configuration(), err)
	}
	cfg.ResourceVersion, cfg.Generation, cfg.ManagedFields = "", 0, nil
	b, err := json.Marshal(cfg)
	return string(b), err
}

// waitGuardEvent waits for the guard's Event with reason on the webhook's
// configuration and returns its message.
func waitGuardEvent(ctx context.Context, wh *chaos.Webhook, reason string, timeout time.Duration) (string, error) {
	var msg string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		evs, err := lab.Client.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + wh.Configuration() + ",reason=" + reason})
		if err != nil || len(evs.Items) == 0 {
			return false, nil
		}
		msg = evs.Items[0].Message
		return strings.Contains(msg, "hookscope guard"), nil
	})
	if err != nil {
		return "", fmt.Errorf("no %s Event on MutatingWebhookConfiguration %s within %s", reason, wh.Configuration(), timeout)
	}
	return msg, nil
}
