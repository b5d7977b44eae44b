//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/hookscope/hookscope/chaos"
)

// TestControllerLoop: a Job cannot create its pods because the webhook's
// Service is gone; the Job controller retries and emits FailedCreate. The
// fix is the article's Option 3 through hookscope's CLI: remove the webhook
// after a backup, let the Job run, then restore the webhook from the
// backup once its Service is back.
func TestControllerLoop(t *testing.T) {
	var (
		wh         *chaos.Webhook
		svcBackup  *corev1.Service
		backupFile string
		finding    chaos.AgentFinding
		job        = "loops"
		result     = lab.Report.Scenario("controller loops: a Job cannot create its pods", "ServiceNotFound")
	)
	fail := failer(result)
	f := features.New("controller loops").
		Setup(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if wh, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "job-loop", FailurePolicy: admissionv1.Fail}); err != nil {
				fail(t, "deploying the webhook: %v", err)
			}
			result.Webhook = wh.WebhookName
			return ctx
		}).
		Assess("inject: the Service is deleted, then a Job starts", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			result.InjectedAt = time.Now()
			var err error
			if svcBackup, err = wh.DeleteService(ctx); err != nil {
				fail(t, "%v", err)
			}
			result.FirstFailedCallAt = time.Now()
			result.FirstWriteDelaySeconds = result.FirstFailedCallAt.Sub(result.InjectedAt).Seconds()
			j := &batchv1.Job{
				ObjectMeta: metav1.ObjectMeta{Name: job, Namespace: wh.Namespace},
				Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{chaos.TargetLabel: wh.Spec.Name}},
					Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, NodeName: lab.Node,
						Containers: []corev1.Container{{Name: "work", Image: "hookscope.local/work:dev"}}},
				}},
			}
			if _, err := lab.Client.BatchV1().Jobs(wh.Namespace).Create(ctx, j, metav1.CreateOptions{}); err != nil {
				fail(t, "creating the Job: %v", err)
			}
			return ctx
		}).
		Assess("observe: the Job controller reports FailedCreate", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
				evs, err := lab.Client.CoreV1().Events(wh.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + job + ",reason=FailedCreate"})
				if err != nil || len(evs.Items) == 0 {
					return false, nil
				}
				result.FailedCallError = evs.Items[0].Message
				return true, nil
			})
			if err != nil {
				fail(t, "no FailedCreate Event on Job %s/%s", wh.Namespace, job)
			}
			result.WriteFailed = true
			if !strings.Contains(result.FailedCallError, fmt.Sprintf(`service "%s" not found`, wh.Service)) {
				fail(t, "event %q lacks the API server's text", result.FailedCallError)
			}
			return ctx
		}).
		Assess("detect: the agent names the blocked Job, the webhook and the reason", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if finding, err = lab.Agent.WaitForImpact(ctx, wh.WebhookName, "ControllerBlocked", "", 30*time.Second); err != nil {
				fail(t, "%v", err)
			}
			recordDetection(result, finding)
			if want := "Job " + wh.Namespace + "/" + job; finding.Class != "ServiceNotFound" || finding.Impact.Object != want {
				fail(t, "finding %s on %s, want ServiceNotFound on %s", finding.Class, finding.Impact.Object, want)
			}
			return ctx
		}).
		Assess("remediate: Option 3 with the CLI, remove the webhook after a backup", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			out, err := lab.Hookscope(ctx, "remediate", "remove", wh.WebhookName, "--yes")
			if err != nil {
				fail(t, "%v", err)
			}
			m := regexp.MustCompile(`undo: hookscope restore (\S+) --yes`).FindStringSubmatch(out)
			if m == nil {
				fail(t, "no undo line in:\n%s", out)
			}
			backupFile = m[1]
			result.Remediation = "Option 3: hookscope remediate remove (backup first); Service restored; hookscope restore"
			return ctx
		}).
		Assess("recover: the Job creates its pod, the finding resolves, the webhook is restored", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
				pods, err := lab.Client.CoreV1().Pods(wh.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job})
				return err == nil && len(pods.Items) > 0, nil
			})
			if err != nil {
				fail(t, "the Job has no pod after the webhook was removed")
			}
			result.RecoveredAt = time.Now()
			resolved, err := lab.Agent.WaitForResolved(ctx, finding.ID, 2*time.Minute)
			if err != nil {
				fail(t, "%v", err)
			}
			result.ResolvedAt = *resolved.Resolved
			if err := wh.RestoreService(ctx, svcBackup); err != nil {
				fail(t, "%v", err)
			}
			if _, err := lab.Hookscope(ctx, "restore", backupFile, "--yes"); err != nil {
				fail(t, "%v", err)
			}
			if err := wh.WaitServing(ctx); err != nil {
				fail(t, "the restored webhook: %v", err)
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
