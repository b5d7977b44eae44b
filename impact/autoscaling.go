package impact

import (
	"fmt"
	"regexp"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// An HPA whose metrics API fails cannot scale: the HPA controller sets its
// ScalingActive condition False (FailedGetResourceMetric, ...) with a
// message that ends on the resource it could not get: "the HPA was unable
// to compute the replica count: failed to get cpu utilization: unable to
// get metrics for resource cpu: unable to fetch metrics from resource
// metrics API: the server is currently unable to handle the request (get
// pods.metrics.k8s.io)". The metrics APIs are aggregated APIs
// (metrics-server, a custom or external metrics adapter): the HPA is an
// impact of the APIService that serves the group.

// metricsGroups are the API groups HPAs read metrics from.
var metricsGroups = []string{"metrics.k8s.io", "custom.metrics.k8s.io", "external.metrics.k8s.io"}

// failedMetricsGet matches the client's "(get <resource>.<group>)" at the
// end of a failed metrics read.
var failedMetricsGet = regexp.MustCompile(`\(get ([a-z0-9._-]+?)\.((?:custom\.|external\.)?metrics\.k8s\.io)\)`)

// failingMetricsRead is the resource and metrics group a condition's
// message says the HPA controller could not read.
func failingMetricsRead(msg string) (resource, group string, ok bool) {
	m := failedMetricsGet.FindStringSubmatch(msg)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// stoppedAutoscalers lists the HPAs that cannot scale because a metrics
// API that hookscope knows as a call-out fails. The HPAs are watched only
// once such an APIService exists.
func (c *cluster) stoppedAutoscalers(apis APIs, now time.Time) []calloutImpact {
	if apis == nil || !servesMetrics(apis) {
		return nil
	}
	i := c.informer("HorizontalPodAutoscaler") // started here, the first time
	if i == nil || !i.HasSynced() {
		return nil
	}
	var out []calloutImpact
	for _, o := range i.GetStore().List() {
		hpa, ok := o.(*autoscalingv2.HorizontalPodAutoscaler)
		if !ok {
			continue
		}
		for _, cond := range hpa.Status.Conditions {
			if cond.Type != autoscalingv2.ScalingActive || cond.Status != corev1.ConditionFalse {
				continue
			}
			resource, group, ok := failingMetricsRead(cond.Message)
			if !ok {
				continue
			}
			api, ok := apis.APIServiceOfGroup(group)
			if !ok {
				continue
			}
			out = append(out, stoppedAutoscaler(hpa, cond, api, resource+"."+group, now))
		}
	}
	return out
}

func stoppedAutoscaler(hpa *autoscalingv2.HorizontalPodAutoscaler, cond autoscalingv2.HorizontalPodAutoscalerCondition, api callout.Webhook, read string, now time.Time) calloutImpact {
	since := cond.LastTransitionTime.Time
	if since.IsZero() {
		since = now
	}
	target := hpa.Spec.ScaleTargetRef.Kind + " " + hpa.Spec.ScaleTargetRef.Name
	return calloutImpact{api: api, cause: cond.Reason + ": " + cond.Message, imp: findings.Impact{
		Kind: findings.ImpactAutoscalingStopped, Object: "HorizontalPodAutoscaler " + hpa.Namespace + "/" + hpa.Name, Since: since,
		Detail: fmt.Sprintf("HPA %s/%s has not scaled %s since %s (%s when found): the HPA controller cannot read %s, which APIService %s serves",
			hpa.Namespace, hpa.Name, target, since.UTC().Format(time.RFC3339), now.Sub(since).Round(time.Second), read, api.Ref.Name)}}
}

// servesMetrics reports whether an APIService call-out serves a metrics
// API.
func servesMetrics(apis APIs) bool {
	for _, g := range metricsGroups {
		if _, ok := apis.APIServiceOfGroup(g); ok {
			return true
		}
	}
	return false
}
