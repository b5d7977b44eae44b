//go:build linux

package scenarios

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/hookscope/hookscope/chaos"
	"github.com/hookscope/hookscope/chaos/backend"
)

// hostNamespacesPolicy is what the game day's policy webhook answers for
// the pods it denies, worded as Kyverno words a denial of the baseline Pod
// Security policy disallow-host-namespaces; aws-node runs with
// hostNetwork, so a policy that does not exempt kube-system denies it.
const hostNamespacesPolicy = "\n\nresource Pod/kube-system/ was blocked due to the following policies \n\ndisallow-host-namespaces:\n  host-namespaces: 'validation error: Sharing the host namespaces is disallowed. The fields spec.hostNetwork, spec.hostIPC, and spec.hostPID must be unset or set to `false`. rule host-namespaces failed at path /spec/hostNetwork/'\n"

// TestPolicyDeniesAWSNode: a policy webhook that works, and denies
// aws-node's pods (a host-namespaces policy that does not exempt
// kube-system), keeps a joining node NotReady exactly as a webhook that
// cannot be called does (TestBlockedAWSNode). The API server's signal is
// no failed call but a denial ("admission webhook ... denied the
// request"); hookscope names the webhook, the policy's message and the
// node, while a denial of an ordinary workload's pods stays the webhook
// doing its job. failurePolicy is no fix: the policy's exception for
// kube-system is.
func TestPolicyDeniesAWSNode(t *testing.T) {
	var (
		wh      *chaos.Webhook
		node    string
		finding chaos.AgentFinding
		result  = lab.Report.Scenario("a policy webhook denies aws-node's pods on a joining node", "DeniesCriticalPods")
	)
	fail := failer(result)
	policy := backend.Denial{Labels: map[string]string{"k8s-app": chaos.CNIName}, Message: hostNamespacesPolicy}
	f := features.New("policy denies aws-node").
		Setup(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if err := lab.DeployCNI(ctx); err != nil {
				fail(t, "deploying the modelled CNI: %v", err)
			}
			var err error
			if node, err = lab.NodeToJoin(ctx); err != nil {
				fail(t, "%v", err)
			}
			wh, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "denies-aws-node", KubeSystem: true, FailurePolicy: admissionv1.Fail})
			if err != nil {
				fail(t, "deploying the webhook: %v", err)
			}
			result.Webhook = wh.WebhookName
			return ctx
		}).
		Assess("inject: the policy denies pods labelled k8s-app=aws-node; an ordinary ReplicaSet's too; a node joins", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			result.InjectedAt = time.Now()
			if err := wh.Deny(&policy); err != nil {
				fail(t, "%v", err)
			}
			if _, err := lab.Client.AppsV1().ReplicaSets(wh.Namespace).Create(ctx, ordinaryReplicaSet(wh.Namespace), metav1.CreateOptions{}); err != nil {
				fail(t, "creating the ordinary ReplicaSet: %v", err)
			}
			result.FirstFailedCallAt = time.Now() // the DaemonSet controller creates the pod as soon as the node exists
			if err := lab.JoinNode(ctx, node); err != nil {
				fail(t, "joining %s: %v", node, err)
			}
			result.FirstWriteDelaySeconds = result.FirstFailedCallAt.Sub(result.InjectedAt).Seconds()
			return ctx
		}).
		Assess("observe: aws-node's pod is denied and the node stays NotReady", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			denied := `admission webhook "` + wh.WebhookName + `" denied the request: `
			msg, err := lab.FailedCreateEvent(ctx, "DaemonSet", chaos.CNINamespace, chaos.CNIName, 30*time.Second, denied, "Sharing the host namespaces is disallowed")
			if err != nil {
				fail(t, "%v", err)
			}
			result.WriteFailed, result.FailedCallError = true, msg
			t.Logf("the DaemonSet controller's Event: %q", msg)
			ordinary, err := lab.FailedCreateEvent(ctx, "ReplicaSet", wh.Namespace, "ordinary", 30*time.Second, denied)
			if err != nil {
				fail(t, "%v", err)
			}
			t.Logf("the ordinary ReplicaSet's Event: %q", ordinary)
			if _, err := lab.WaitNodeReady(ctx, node, true, 3*time.Second); err == nil {
				fail(t, "%s became Ready without its aws-node pod", node)
			}
			return ctx
		}).
		Assess("detect: the agent links the NotReady node to aws-node, the policy webhook and its message", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if finding, err = lab.Agent.WaitForImpact(ctx, wh.WebhookName, "NodeNotReady", node, 30*time.Second); err != nil {
				fail(t, "%v", err)
			}
			recordDetection(result, finding)
			checkDenialFinding(t, fail, finding, wh)
			blocked, err := lab.Agent.WaitForImpactOn(ctx, wh.WebhookName, "ControllerBlocked", "", "DaemonSet kube-system/aws-node", 10*time.Second)
			if err != nil {
				fail(t, "%v", err)
			}
			checkDenialFinding(t, fail, blocked, wh)
			open, _, err := lab.Agent.Findings(ctx)
			if err != nil {
				fail(t, "%v", err)
			}
			for _, o := range open {
				if o.Webhook.Name == wh.WebhookName && (o.Impact == nil || !strings.HasPrefix(o.Impact.Object, "DaemonSet kube-system/")) {
					fail(t, "finding %s %s on %+v: the webhook works, and the ordinary ReplicaSet's denial is its work", o.ID, o.Class, o.Impact)
				}
			}
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			traces, err := lab.Jaeger.WaitForTraces(wctx, chaos.AgentServiceName, map[string]string{"hookscope.finding.id": finding.ID}, 1)
			if err != nil {
				fail(t, "reading the correlation span from Jaeger: %v", err)
			}
			tags := traces[0].Spans[0].Tags
			for k, v := range map[string]string{"hookscope.impact.kind": "NodeNotReady", "hookscope.impact.node": node,
				"hookscope.impact.object": "DaemonSet kube-system/aws-node", "hookscope.webhook.name": wh.WebhookName, "error.type": "DeniesCriticalPods"} {
				if tags[k] != v {
					fail(t, "span %s = %q, want %q", k, tags[k], v)
				}
			}
			result.SpanTraceID = traces[0].TraceID
			return ctx
		}).
		Assess("remediate: the policy's exception for kube-system", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			exempt := policy
			exempt.Namespace = wh.Namespace // the ordinary ReplicaSet's pods stay denied
			if err := wh.Deny(&exempt); err != nil {
				fail(t, "%v", err)
			}
			result.Remediation = "a policy exception for kube-system (the webhook keeps denying the ordinary ReplicaSet's pods)"
			return ctx
		}).
		Assess("recover: the node gets its aws-node pod and turns Ready; the findings resolve", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			readyAt, err := lab.WaitNodeReady(ctx, node, true, 3*time.Minute)
			if err != nil {
				fail(t, "%s not Ready after the exception: %v", node, err)
			}
			result.RecoveredAt = readyAt
			resolved, err := lab.Agent.WaitForResolved(ctx, finding.ID, 30*time.Second)
			if err != nil {
				fail(t, "%v", err)
			}
			result.ResolvedAt = *resolved.Resolved
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

// checkDenialFinding: a finding of the denial names the class, the
// effect, the policy's words, and a fix that is no failurePolicy.
func checkDenialFinding(t *testing.T, fail func(*testing.T, string, ...any), f chaos.AgentFinding, wh *chaos.Webhook) {
	t.Helper()
	if f.Class != "DeniesCriticalPods" || f.Effect != "writes rejected" || f.Impact.Object != "DaemonSet kube-system/aws-node" {
		fail(t, "finding %s %q on %s, want DeniesCriticalPods, writes rejected, on DaemonSet kube-system/aws-node", f.Class, f.Effect, f.Impact.Object)
	}
	if want := "webhook " + wh.WebhookName + " denies them: resource Pod/kube-system/ was blocked due to the following policies disallow-host-namespaces:"; !strings.Contains(f.Impact.Detail, want) ||
		strings.Contains(f.Impact.Detail, "fails closed") {
		fail(t, "impact %q does not quote the policy (%q)", f.Impact.Detail, want)
	}
	if !strings.Contains(f.Remediation, "failurePolicy Ignore does not help") || strings.Contains(f.Remediation, "remediate ignore") {
		fail(t, "remediation %q", f.Remediation)
	}
}

// ordinaryReplicaSet is a workload whose pods the policy denies too, in
// the webhook's namespace: its denial is the policy's work.
func ordinaryReplicaSet(ns string) *appsv1.ReplicaSet {
	labels := map[string]string{"k8s-app": chaos.CNIName, "hookscope.dev/ordinary": "true"}
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "ordinary", Namespace: ns},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "app", Image: "hookscope.local/app:dev"}}}}},
	}
}
