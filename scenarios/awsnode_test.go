//go:build linux

package scenarios

import (
	"context"
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

// TestBlockedAWSNode is the article's worst case: a pod webhook with
// failurePolicy Fail whose Service is gone blocks the CNI DaemonSet
// (aws-node), so a node that joins never gets its CNI pod and stays
// NotReady. kwok nodes have no kubelet or CNI: the lab models "NotReady
// until its aws-node pod runs" with kwok's own node Stages (see
// chaos/cni.go). The fix is the article's Option 2 through hookscope's CLI:
// failurePolicy Ignore until the Service is back, then Fail again.
func TestBlockedAWSNode(t *testing.T) {
	node := lab.JoiningNode
	var (
		wh      *chaos.Webhook
		backup  *corev1.Service
		finding chaos.AgentFinding
		result  = lab.Report.Scenario("blocked aws-node: a joining node stays NotReady", "ServiceNotFound")
	)
	fail := failer(result)
	f := features.New("blocked aws-node").
		Setup(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if err := lab.DeployCNI(ctx); err != nil {
				fail(t, "deploying the modelled CNI: %v", err)
			}
			var err error
			wh, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "blocks-aws-node", Mutating: true, KubeSystem: true, FailurePolicy: admissionv1.Fail})
			if err != nil {
				fail(t, "deploying the webhook: %v", err)
			}
			result.Webhook = wh.WebhookName
			return ctx
		}).
		Assess("inject: the webhook's Service is deleted, then a node joins", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			result.InjectedAt = time.Now()
			var err error
			if backup, err = wh.DeleteService(ctx); err != nil {
				fail(t, "%v", err)
			}
			result.FirstFailedCallAt = time.Now() // the DaemonSet controller creates the pod as soon as the node exists
			if err := lab.JoinNode(ctx, node); err != nil {
				fail(t, "joining %s: %v", node, err)
			}
			result.FirstWriteDelaySeconds = result.FirstFailedCallAt.Sub(result.InjectedAt).Seconds()
			return ctx
		}).
		Assess("observe: aws-node cannot create its pod and the node stays NotReady", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var msg string
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
				evs, err := lab.Client.CoreV1().Events("kube-system").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=aws-node,reason=FailedCreate"})
				if err != nil {
					return false, nil
				}
				for _, e := range evs.Items {
					if strings.Contains(e.Message, wh.WebhookName) {
						msg = e.Message
						return true, nil
					}
				}
				return false, nil
			})
			if err != nil {
				fail(t, "no FailedCreate Event on DaemonSet kube-system/aws-node naming %s", wh.WebhookName)
			}
			result.WriteFailed = true
			result.FailedCallError = msg
			if want := fmt.Sprintf(`service "%s" not found`, wh.Service); !strings.Contains(msg, want) {
				fail(t, "event %q lacks %q", msg, want)
			}
			if _, err := lab.WaitNodeReady(ctx, node, true, 3*time.Second); err == nil {
				fail(t, "%s became Ready without its aws-node pod", node)
			}
			return ctx
		}).
		Assess("detect: the agent links the NotReady node to aws-node, the webhook and the reason", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if finding, err = lab.Agent.WaitForImpact(ctx, wh.WebhookName, "NodeNotReady", node, 30*time.Second); err != nil {
				fail(t, "%v", err)
			}
			recordDetection(result, finding)
			if finding.Class != "ServiceNotFound" || finding.Impact.Object != "DaemonSet kube-system/aws-node" {
				fail(t, "finding %s on %s, want ServiceNotFound on DaemonSet kube-system/aws-node", finding.Class, finding.Impact.Object)
			}
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			traces, err := lab.Jaeger.WaitForTraces(wctx, chaos.AgentServiceName, map[string]string{"hookscope.finding.id": finding.ID}, 1)
			if err != nil {
				fail(t, "reading the correlation span from Jaeger: %v", err)
			}
			tags := traces[0].Spans[0].Tags
			for k, v := range map[string]string{"hookscope.impact.kind": "NodeNotReady", "hookscope.impact.node": node,
				"hookscope.impact.object": "DaemonSet kube-system/aws-node", "hookscope.webhook.name": wh.WebhookName, "error.type": "ServiceNotFound"} {
				if tags[k] != v {
					fail(t, "span %s = %q, want %q", k, tags[k], v)
				}
			}
			// The correlation links to the finding that says why the
			// webhook fails: the trace backend draws the chain.
			refs := traces[0].Spans[0].References
			if len(refs) != 1 || refs[0].RefType != "FOLLOWS_FROM" {
				fail(t, "correlation span references %+v, want one link to the webhook's finding", refs)
			}
			linked, err := lab.Jaeger.GetTrace(wctx, refs[0].TraceID)
			if err != nil {
				fail(t, "reading the linked span: %v", err)
			}
			if lt := linked.Spans[0].Tags; linked.Spans[0].SpanID != refs[0].SpanID || lt["hookscope.webhook.name"] != wh.WebhookName ||
				lt["error.type"] != "ServiceNotFound" || lt["hookscope.impact.kind"] != "" {
				fail(t, "linked span %s tags %v, want the webhook's own ServiceNotFound finding", linked.Spans[0].SpanID, lt)
			}
			result.SpanTraceID = traces[0].TraceID
			return ctx
		}).
		Assess("remediate: Option 2 with the CLI, failurePolicy Ignore", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			out, err := lab.Hookscope(ctx, "remediate", "ignore", wh.WebhookName, "--yes")
			if err != nil {
				fail(t, "%v", err)
			}
			t.Logf("hookscope remediate ignore:\n%s", out)
			result.Remediation = "Option 2: hookscope remediate ignore (failurePolicy Ignore); Service restored; hookscope remediate ignore --revert"
			return ctx
		}).
		Assess("recover: the node gets its aws-node pod and turns Ready; the finding resolves", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			readyAt, err := lab.WaitNodeReady(ctx, node, true, 3*time.Minute)
			if err != nil {
				fail(t, "%s not Ready after the fix: %v", node, err)
			}
			result.RecoveredAt = readyAt
			resolved, err := lab.Agent.WaitForResolved(ctx, finding.ID, 30*time.Second)
			if err != nil {
				fail(t, "%v", err)
			}
			result.ResolvedAt = *resolved.Resolved
			// Then the rest of Option 2: restore the Service, fail closed again.
			if err := wh.RestoreService(ctx, backup); err != nil {
				fail(t, "%v", err)
			}
			if out, err := lab.Hookscope(ctx, "remediate", "ignore", wh.WebhookName, "--revert", "--yes"); err != nil {
				fail(t, "%v", err)
			} else {
				t.Logf("hookscope remediate ignore --revert:\n%s", out)
			}
			if err := wh.WaitServing(ctx); err != nil {
				fail(t, "writes after the revert: %v", err)
			}
			// The lab's agent runs its guard, but this configuration did
			// not opt in: the guard wrote nothing to it.
			evs, err := lab.Client.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + wh.Configuration()})
			for _, e := range evs.Items {
				if strings.HasPrefix(e.Reason, "Guard") {
					fail(t, "the guard acted on a configuration that did not opt in: %s %s", e.Reason, e.Message)
				}
			}
			if err != nil {
				fail(t, "listing the configuration's Events: %v", err)
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
