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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/hookscope/hookscope/chaos"
)

// TestNamespaceStuckTerminating: an aggregated API (metrics-server's kind)
// loses its backend, and a team deletes its namespace. The namespace
// controller cannot discover the aggregated API's group, so it cannot know
// what the namespace holds, and the namespace stays Terminating with the
// condition NamespaceDeletionDiscoveryFailure: the article's stuck
// namespace. The agent names the namespace, since when, and the APIService
// behind it; once the backend is back, the namespace goes and the finding
// resolves.
func TestNamespaceStuckTerminating(t *testing.T) {
	var (
		wh      *chaos.Webhook
		finding chaos.AgentFinding
		team    = "chaos-team-stuck"
		result  = lab.Report.Scenario("namespace stuck Terminating: an aggregated API is down", "NoEndpoints")
	)
	fail := failer(result)
	condition := func(ctx context.Context) (*corev1.NamespaceCondition, bool, error) {
		ns, err := lab.Client.CoreV1().Namespaces().Get(ctx, team, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		for i, c := range ns.Status.Conditions {
			if c.Type == corev1.NamespaceDeletionDiscoveryFailure && c.Status == corev1.ConditionTrue {
				return &ns.Status.Conditions[i], false, nil
			}
		}
		return nil, false, nil
	}
	f := features.New("namespace stuck Terminating").
		Setup(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if wh, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "agg-ns-stuck", FailurePolicy: admissionv1.Fail, APIService: true}); err != nil {
				fail(t, "deploying the aggregated API: %v", err)
			}
			result.Webhook = wh.WebhookName
			if _, err := lab.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team}}, metav1.CreateOptions{}); err != nil {
				fail(t, "creating the team's namespace: %v", err)
			}
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: team}, Data: map[string]string{"k": "v"}}
			if _, err := lab.Client.CoreV1().ConfigMaps(team).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
				fail(t, "creating the team's ConfigMap: %v", err)
			}
			return ctx
		}).
		Assess("inject: the aggregated API's backend goes, then the namespace is deleted", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			result.InjectedAt = time.Now()
			if err := wh.StopBackend(ctx); err != nil {
				fail(t, "%v", err)
			}
			result.FirstFailedCallAt = time.Now()
			if err := lab.Client.CoreV1().Namespaces().Delete(ctx, team, metav1.DeleteOptions{}); err != nil {
				fail(t, "deleting the namespace: %v", err)
			}
			result.FirstWriteDelaySeconds = result.FirstFailedCallAt.Sub(result.InjectedAt).Seconds()
			return ctx
		}).
		Assess("observe: the namespace stays Terminating, discovery failing", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var cond *corev1.NamespaceCondition
			err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				c, gone, err := condition(ctx)
				if gone {
					return false, fmt.Errorf("the namespace was deleted")
				}
				cond = c
				return err == nil && c != nil, nil
			})
			if err != nil {
				fail(t, "no NamespaceDeletionDiscoveryFailure on %s: %v", team, err)
				return ctx
			}
			result.WriteFailed = true
			result.FailedCallError = fmt.Sprintf("namespace %s Terminating, condition NamespaceDeletionDiscoveryFailure: %s", team, cond.Message)
			if !strings.Contains(cond.Message, wh.ErrorName()) {
				fail(t, "the namespace controller's message %q does not name %s", cond.Message, wh.ErrorName())
			}
			return ctx
		}).
		Assess("detect: the agent names the namespace, since when, and the APIService", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			// Any namespace being deleted meanwhile is stuck too (another
			// scenario's): this one is the team's.
			if finding, err = lab.Agent.WaitForImpactOn(ctx, wh.WebhookName, "NamespaceTerminating", "", "Namespace "+team, 30*time.Second); err != nil {
				fail(t, "%v", err)
				return ctx
			}
			recordDetection(result, finding)
			if finding.Impact.Object != "Namespace "+team || finding.Impact.Since.IsZero() ||
				!strings.Contains(finding.Impact.Detail, "cannot discover "+wh.ErrorName()+", which APIService "+wh.WebhookName+" serves") {
				fail(t, "impact %s on %s since %s: %q", finding.Class, finding.Impact.Object, finding.Impact.Since, finding.Impact.Detail)
			}
			return ctx
		}).
		Assess("remediate: the aggregated API's backend is back", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if err := restartBackend(ctx, wh, nil); err != nil {
				fail(t, "%v", err)
			}
			result.Remediation = "restore the aggregated API's backend (or back up and delete its APIService)"
			return ctx
		}).
		Assess("recover: the namespace is deleted and the finding resolves", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			// The namespace controller retries with a backoff of up to a minute.
			err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
				_, gone, _ := condition(ctx)
				return gone, nil
			})
			if err != nil {
				fail(t, "the namespace is still there 2 min after its aggregated API came back")
				return ctx
			}
			result.RecoveredAt = time.Now()
			resolved, err := lab.Agent.WaitForResolved(ctx, finding.ID, time.Minute)
			if err != nil {
				fail(t, "%v", err)
				return ctx
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
