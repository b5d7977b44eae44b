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
	stuckNamespace{
		name:      "namespace stuck Terminating: an aggregated API is down",
		class:     "NoEndpoints",
		team:      "chaos-team-stuck",
		spec:      chaos.WebhookSpec{Name: "agg-ns-stuck", FailurePolicy: admissionv1.Fail, APIService: true},
		condition: corev1.NamespaceDeletionDiscoveryFailure,
		holds: func(ctx context.Context, _ *chaos.Webhook, team string) error {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: team}, Data: map[string]string{"k": "v"}}
			_, err := lab.Client.CoreV1().ConfigMaps(team).Create(ctx, cm, metav1.CreateOptions{})
			return err
		},
		inject: func(ctx context.Context, wh *chaos.Webhook) (any, error) { return nil, wh.StopBackend(ctx) },
		impact: func(wh *chaos.Webhook) string {
			return "cannot discover " + wh.ErrorName() + ", which APIService " + wh.WebhookName + " serves"
		},
		remediation: "restore the aggregated API's backend (or back up and delete its APIService)",
		remediate:   restartBackend,
	}.run(t)
}

// TestNamespaceStuckOnConversion: a namespace holds custom resources whose
// CRD converts them with a webhook, and the webhook's Service is deleted
// (cert-manager uninstalled while its Certificates remain): the namespace
// controller cannot list them at the version it reads, so it cannot delete
// them, and the namespace stays Terminating. The agent names the
// namespace, since when, and the CRD behind it.
func TestNamespaceStuckOnConversion(t *testing.T) {
	stuckNamespace{
		name:      "namespace stuck Terminating: a conversion webhook's Service is gone",
		class:     "ServiceNotFound",
		team:      "chaos-team-widgets",
		spec:      chaos.WebhookSpec{Name: "conv-ns-stuck", FailurePolicy: admissionv1.Fail, Conversion: true},
		condition: corev1.NamespaceDeletionContentFailure,
		// The namespace controller converts to the stored version, v1.
		says: func(wh *chaos.Webhook) string { return strings.SplitAfter(wh.ErrorName(), "/")[0] },
		holds: func(ctx context.Context, wh *chaos.Webhook, team string) error {
			return wh.CreateWidget(ctx, team, "kept")
		},
		inject: func(ctx context.Context, wh *chaos.Webhook) (any, error) { return wh.DeleteService(ctx) },
		impact: func(wh *chaos.Webhook) string {
			return "the conversion webhook of CRD " + wh.WebhookName + " fails"
		},
		remediation: "restore the conversion webhook's Service from its backup",
		remediate: func(ctx context.Context, wh *chaos.Webhook, backup any) error {
			return wh.RestoreService(ctx, backup.(*corev1.Service))
		},
	}.run(t)
}

// stuckNamespace is a game day where a team's namespace, holding what
// holds creates, is deleted after inject broke a call-out its deletion
// needs: it stays Terminating with condition, and the agent names it as
// the call-out's impact.
type stuckNamespace struct {
	name, class, team string
	spec              chaos.WebhookSpec
	condition         corev1.NamespaceConditionType
	// says is what the condition's message must name (the call-out's
	// name in the API server's errors when nil).
	says   func(wh *chaos.Webhook) string
	holds  func(ctx context.Context, wh *chaos.Webhook, team string) error
	inject func(ctx context.Context, wh *chaos.Webhook) (any, error)
	// impact is what the impact's detail must say.
	impact      func(wh *chaos.Webhook) string
	remediation string
	remediate   func(ctx context.Context, wh *chaos.Webhook, state any) error
}

func (g stuckNamespace) run(t *testing.T) {
	var (
		wh      *chaos.Webhook
		state   any
		finding chaos.AgentFinding
		team    = g.team
		result  = lab.Report.Scenario(g.name, g.class)
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
			if c.Type == g.condition && c.Status == corev1.ConditionTrue {
				return &ns.Status.Conditions[i], false, nil
			}
		}
		return nil, false, nil
	}
	f := features.New(g.name).
		Setup(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if wh, err = lab.DeployWebhook(ctx, g.spec); err != nil {
				fail(t, "deploying the call-out: %v", err)
			}
			result.Webhook = wh.WebhookName
			if _, err := lab.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team}}, metav1.CreateOptions{}); err != nil {
				fail(t, "creating the team's namespace: %v", err)
			}
			if err := g.holds(ctx, wh, team); err != nil {
				fail(t, "filling the team's namespace: %v", err)
			}
			return ctx
		}).
		Assess("inject: the call-out breaks, then the namespace is deleted", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			result.InjectedAt = time.Now()
			var err error
			if state, err = g.inject(ctx, wh); err != nil {
				fail(t, "%v", err)
			}
			result.FirstFailedCallAt = time.Now()
			if err := lab.Client.CoreV1().Namespaces().Delete(ctx, team, metav1.DeleteOptions{}); err != nil {
				fail(t, "deleting the namespace: %v", err)
			}
			result.FirstWriteDelaySeconds = result.FirstFailedCallAt.Sub(result.InjectedAt).Seconds()
			return ctx
		}).
		Assess("observe: the namespace stays Terminating", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
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
				fail(t, "no %s on %s: %v", g.condition, team, err)
				return ctx
			}
			result.WriteFailed = true
			result.FailedCallError = fmt.Sprintf("namespace %s Terminating, condition %s: %s", team, g.condition, cond.Message)
			says := wh.ErrorName()
			if g.says != nil {
				says = g.says(wh)
			}
			if !strings.Contains(cond.Message, says) {
				fail(t, "the namespace controller's message %q does not name %s", cond.Message, says)
			}
			return ctx
		}).
		Assess("detect: the agent names the namespace, since when, and the call-out", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			// Any namespace being deleted meanwhile is stuck too (another
			// scenario's): this one is the team's.
			if finding, err = lab.Agent.WaitForImpactOn(ctx, wh.WebhookName, "NamespaceTerminating", "", "Namespace "+team, 30*time.Second); err != nil {
				fail(t, "%v", err)
				return ctx
			}
			recordDetection(result, finding)
			if finding.Impact.Object != "Namespace "+team || finding.Impact.Since.IsZero() || !strings.Contains(finding.Impact.Detail, g.impact(wh)) {
				fail(t, "impact %s on %s since %s: %q, want it to say %q", finding.Class, finding.Impact.Object, finding.Impact.Since, finding.Impact.Detail, g.impact(wh))
			}
			return ctx
		}).
		Assess("remediate: "+g.remediation, func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if err := g.remediate(ctx, wh, state); err != nil {
				fail(t, "%v", err)
			}
			result.Remediation = g.remediation
			return ctx
		}).
		Assess("recover: the namespace is deleted and the finding resolves", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			// The namespace controller retries with a backoff of up to a minute.
			err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
				_, gone, _ := condition(ctx)
				return gone, nil
			})
			if err != nil {
				fail(t, "the namespace is still there 2 min after the call-out came back")
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
