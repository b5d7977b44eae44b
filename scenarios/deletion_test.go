//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/hookscope/hookscope/chaos"
)

// TestDeletionDoesNotComplete: a Deployment is deleted while the webhook
// that checks pod and ReplicaSet deletions has lost its Service. The
// delete itself succeeds; the garbage collector's deletes of the
// ReplicaSet and its pods are rejected, so they remain (the article's "pods
// cannot be deleted"). The fix is the article's Option 2 through hookscope's
// CLI: failurePolicy Ignore until the Service is back, then Fail again.
func TestDeletionDoesNotComplete(t *testing.T) {
	var (
		wh        *chaos.Webhook
		svcBackup *corev1.Service
		finding   chaos.AgentFinding
		deploy    = "stuck"
		result    = lab.Report.Scenario("deletion does not complete: a deleted Deployment's ReplicaSet and pods remain", "ServiceNotFound")
	)
	fail := failer(result)
	dependents := func(ctx context.Context) (rs, pods int, err error) {
		sel := chaos.TargetLabel + "=" + wh.Spec.Name + ",app=" + deploy
		rss, err := lab.Client.AppsV1().ReplicaSets(wh.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return 0, 0, err
		}
		ps, err := lab.Client.CoreV1().Pods(wh.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return 0, 0, err
		}
		return len(rss.Items), len(ps.Items), nil
	}
	f := features.New("deletion does not complete").
		Setup(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if wh, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "delete-stuck", FailurePolicy: admissionv1.Fail, Deletes: true}); err != nil {
				fail(t, "deploying the webhook: %v", err)
			}
			result.Webhook = wh.WebhookName
			labels := map[string]string{chaos.TargetLabel: wh.Spec.Name, "app": deploy}
			d := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: deploy, Namespace: wh.Namespace},
				Spec: appsv1.DeploymentSpec{
					Replicas: ptr.To[int32](2),
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec: corev1.PodSpec{NodeName: lab.Node, Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
							Containers: []corev1.Container{{Name: "app", Image: "hookscope.local/app:dev"}}},
					},
				},
			}
			if _, err := lab.Client.AppsV1().Deployments(wh.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
				fail(t, "creating the Deployment: %v", err)
			}
			err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				rs, pods, err := dependents(ctx)
				return err == nil && rs == 1 && pods == 2, nil
			})
			if err != nil {
				fail(t, "the Deployment did not get its ReplicaSet and 2 pods")
			}
			return ctx
		}).
		Assess("inject: the Service is deleted, then the Deployment", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			result.InjectedAt = time.Now()
			var err error
			if svcBackup, err = wh.DeleteService(ctx); err != nil {
				fail(t, "%v", err)
			}
			if err := lab.Client.AppsV1().Deployments(wh.Namespace).Delete(ctx, deploy, metav1.DeleteOptions{}); err != nil {
				fail(t, "deleting the Deployment: %v", err)
			}
			// The delete succeeds at once; the garbage collector's deletes
			// of its dependents are the calls that fail.
			result.FirstFailedCallAt = time.Now()
			result.FirstWriteDelaySeconds = result.FirstFailedCallAt.Sub(result.InjectedAt).Seconds()
			return ctx
		}).
		Assess("observe: the ReplicaSet and its pods remain", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			time.Sleep(3 * time.Second) // the garbage collector works in milliseconds when it can
			rs, pods, err := dependents(ctx)
			if err != nil || rs != 1 || pods != 2 {
				fail(t, "3 s after the delete: %d ReplicaSets and %d pods (%v); want both still there", rs, pods, err)
			}
			result.WriteFailed = true
			result.FailedCallError = fmt.Sprintf("Deployment %s/%s deleted; 3 s later its ReplicaSet and %d pods remain (the garbage collector's DELETEs are rejected)", wh.Namespace, deploy, pods)
			return ctx
		}).
		Assess("detect: the agent names the stuck deletion, the webhook and the reason", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if finding, err = lab.Agent.WaitForImpact(ctx, wh.WebhookName, "DeletionBlocked", "", 30*time.Second); err != nil {
				fail(t, "%v", err)
			}
			recordDetection(result, finding)
			want := "Deployment " + wh.Namespace + "/" + deploy
			if finding.Class != "ServiceNotFound" || finding.Impact.Object != want || !strings.Contains(finding.Impact.Detail, "2 pods remain") {
				fail(t, "impact %s on %s: %q; want ServiceNotFound on %s with its 2 pods", finding.Class, finding.Impact.Object, finding.Impact.Detail, want)
			}
			return ctx
		}).
		Assess("remediate: Option 2 with the CLI, failurePolicy Ignore", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if _, err := lab.Hookscope(ctx, "remediate", "ignore", wh.WebhookName, "--yes"); err != nil {
				fail(t, "%v", err)
			}
			result.Remediation = "Option 2: hookscope remediate ignore (failurePolicy Ignore); Service restored; hookscope remediate ignore --revert"
			return ctx
		}).
		Assess("recover: the dependents are deleted, the finding resolves, failurePolicy Fail again", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
				rs, pods, err := dependents(ctx)
				return err == nil && rs == 0 && pods == 0, nil
			})
			if err != nil {
				rs, pods, _ := dependents(ctx)
				fail(t, "2 min after failurePolicy Ignore: %d ReplicaSets and %d pods remain", rs, pods)
			}
			result.RecoveredAt = time.Now()
			resolved, err := lab.Agent.WaitForResolved(ctx, finding.ID, time.Minute)
			if err != nil {
				fail(t, "%v", err)
			}
			result.ResolvedAt = *resolved.Resolved
			if err := wh.RestoreService(ctx, svcBackup); err != nil {
				fail(t, "%v", err)
			}
			if _, err := lab.Hookscope(ctx, "remediate", "ignore", wh.WebhookName, "--revert", "--yes"); err != nil {
				fail(t, "%v", err)
			}
			if err := wh.WaitServing(ctx); err != nil {
				fail(t, "the webhook after the revert: %v", err)
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
