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
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/hookscope/hookscope/chaos"
)

// TestAutoscalingStopsWithMetricsServer: metrics-server (the aggregated
// API metrics.k8s.io) loses its backend. Nothing fails loudly: no write is
// rejected, but every HPA stops scaling, its ScalingActive condition False
// with the API server's 503 for pods.metrics.k8s.io. The agent names the
// APIService, the reason, and each HPA it stops, since when; once the
// backend is back, the HPA reads metrics again and the finding resolves.
func TestAutoscalingStopsWithMetricsServer(t *testing.T) {
	var (
		wh      *chaos.Webhook
		finding chaos.AgentFinding
		result  = lab.Report.Scenario("HPAs stop scaling: metrics-server is down", "NoEndpoints")
	)
	const name = "web"
	fail := failer(result)
	hpaObject := func() string { return "HorizontalPodAutoscaler " + wh.Namespace + "/" + name }
	// scaling is the HPA's ScalingActive condition, once it has one.
	scaling := func(ctx context.Context) (*autoscalingv2.HorizontalPodAutoscalerCondition, error) {
		hpa, err := lab.Client.AutoscalingV2().HorizontalPodAutoscalers(wh.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		for i, c := range hpa.Status.Conditions {
			if c.Type == autoscalingv2.ScalingActive {
				return &hpa.Status.Conditions[i], nil
			}
		}
		return nil, nil
	}
	metricsDown := func(c *autoscalingv2.HorizontalPodAutoscalerCondition) bool {
		return c != nil && c.Status == corev1.ConditionFalse && strings.Contains(c.Message, "(get pods.metrics.k8s.io)")
	}
	f := features.New("HPAs stop scaling").
		Setup(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if wh, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "metrics-down", FailurePolicy: admissionv1.Fail, APIService: true, MetricsAPI: true}); err != nil {
				fail(t, "deploying metrics-server's API: %v", err)
			}
			result.Webhook = wh.WebhookName
			if err := createAutoscaled(ctx, wh.Namespace, name); err != nil {
				fail(t, "%v", err)
			}
			// The HPA controller has read the metrics API once it says
			// anything (with no metrics scraped yet, that it got none).
			err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				c, err := scaling(ctx)
				return err == nil && c != nil && !metricsDown(c), nil
			})
			if err != nil {
				fail(t, "the HPA controller never judged HPA %s/%s: %v", wh.Namespace, name, err)
			}
			return ctx
		}).
		Assess("inject: metrics-server's backend goes", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			result.InjectedAt = time.Now()
			if err := wh.StopBackend(ctx); err != nil {
				fail(t, "%v", err)
			}
			return ctx
		}).
		Assess("observe: the HPA cannot read pods.metrics.k8s.io", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var cond *autoscalingv2.HorizontalPodAutoscalerCondition
			// The HPA controller syncs every 15 s.
			err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				c, err := scaling(ctx)
				cond = c
				return err == nil && metricsDown(c), nil
			})
			if err != nil {
				fail(t, "the HPA's ScalingActive condition never named pods.metrics.k8s.io: %+v", cond)
				return ctx
			}
			result.FirstFailedCallAt = cond.LastTransitionTime.Time
			result.WriteFailed = true
			result.FailedCallError = fmt.Sprintf("HPA %s/%s ScalingActive=False (%s): %s", wh.Namespace, name, cond.Reason, cond.Message)
			if !strings.Contains(cond.Message, "the server is currently unable to handle the request") {
				fail(t, "the HPA's condition %q lacks the API server's 503", cond.Message)
			}
			return ctx
		}).
		Assess("detect: the agent names the HPA, since when, and the APIService", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if finding, err = lab.Agent.WaitForImpactOn(ctx, wh.WebhookName, "AutoscalingStopped", "", hpaObject(), 30*time.Second); err != nil {
				fail(t, "%v", err)
				return ctx
			}
			recordDetection(result, finding)
			if want := "cannot read pods.metrics.k8s.io, which APIService v1beta1.metrics.k8s.io serves"; finding.Impact.Since.IsZero() || !strings.Contains(finding.Impact.Detail, want) {
				fail(t, "impact %s on %s since %s: %q, want it to say %q", finding.Class, finding.Impact.Object, finding.Impact.Since, finding.Impact.Detail, want)
			}
			return ctx
		}).
		Assess("remediate: metrics-server's backend is back", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if err := restartBackend(ctx, wh, nil); err != nil {
				fail(t, "%v", err)
			}
			result.Remediation = "restore metrics-server's backend"
			return ctx
		}).
		Assess("recover: the HPA reads metrics again and the finding resolves", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				c, err := scaling(ctx)
				return err == nil && c != nil && !metricsDown(c), nil
			})
			if err != nil {
				fail(t, "the HPA still cannot read metrics a minute after the backend came back")
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
			_ = lab.Client.AutoscalingV2().HorizontalPodAutoscalers(wh.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
			_ = lab.Client.AppsV1().Deployments(wh.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
			finish(t, result, wh)
			return ctx
		}).
		Feature()
	testenv.Test(t, f)
}

// createAutoscaled creates Deployment name in namespace and an HPA that
// scales it on CPU utilization (1 to 3 replicas). Its pods need not run:
// the HPA controller reads their metrics from metrics.k8s.io first.
func createAutoscaled(ctx context.Context, namespace, name string) error {
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "hookscope.local/web:dev",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}}}}}
	if _, err := lab.Client.AppsV1().Deployments(namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Deployment %s/%s: %w", namespace, name, err)
	}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
			MinReplicas:    ptr.To[int32](1), MaxReplicas: 3,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](50)}}}},
		}}
	if _, err := lab.Client.AutoscalingV2().HorizontalPodAutoscalers(namespace).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating HPA %s/%s: %w", namespace, name, err)
	}
	return nil
}
