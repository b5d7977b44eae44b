package impact

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube/kubefake"
)

var awsHook = callout.Webhook{Ref: callout.Ref{Kind: "Mutating", Configuration: "lbc", Name: "mpod.elbv2.k8s.aws"}, FailurePolicy: "Fail",
	Service: &callout.ServiceRef{Namespace: "kube-system", Name: "aws-load-balancer-webhook-service", Port: 443}}

type webhooks struct{}

var metricsAPI = callout.Webhook{Ref: callout.Ref{Kind: callout.KindAPIService, Configuration: "v1beta1.metrics.k8s.io", Name: "v1beta1.metrics.k8s.io"},
	FailurePolicy: "Fail", API: "metrics.k8s.io/v1beta1", Service: &callout.ServiceRef{Namespace: "kube-system", Name: "metrics-server", Port: 443}}

func (webhooks) APIServiceFor(gv string) (callout.Webhook, bool) {
	return metricsAPI, gv == metricsAPI.API
}

var widgetsCRD = callout.Webhook{Ref: callout.Ref{Kind: callout.KindConversion, Configuration: "widgets.conv.example.com", Name: "widgets.conv.example.com"},
	FailurePolicy: "Fail", API: "Widget.conv.example.com (versions v1, v2)", Service: &callout.ServiceRef{Namespace: "conv", Name: "conv-webhook", Port: 443}}

func (webhooks) ConversionFor(group, kind string) (callout.Webhook, bool) {
	return widgetsCRD, group == "conv.example.com" && kind == "Widget"
}

func (webhooks) HasNamespaceBlockers() bool { return true }

func (webhooks) APIServiceOfGroup(group string) (callout.Webhook, bool) {
	return metricsAPI, group == "metrics.k8s.io"
}

func (webhooks) WebhookByName(name string) (callout.Webhook, bool) {
	if name == awsHook.Ref.Name {
		return awsHook, true
	}
	return callout.Webhook{Ref: callout.Ref{Name: name}}, false
}

// fixture is a correlation over a fake API, the real findings store and a
// fake clock.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	corr  *Correlator
	store *findings.Store
	clock *clocktesting.FakeClock
	api   *kubefake.API
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	api := kubefake.New(nil, objs...)
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := findings.NewStore(findings.Config{Clock: clk, Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	corr := New(api, store, webhooks{}, clk, log)
	corr.cluster.start(ctx)
	return &fixture{t: t, ctx: ctx, corr: corr, store: store, clock: clk, api: api}
}

// until evaluates until cond holds on the open findings (the informers
// list asynchronously).
func (f *fixture) until(what string, cond func(open []findings.Finding) bool) []findings.Finding {
	f.t.Helper()
	var open []findings.Finding
	err := wait.PollUntilContextTimeout(f.ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		f.corr.Evaluate()
		open, _ = f.store.Findings()
		return cond(open), nil
	})
	if err != nil {
		f.t.Fatalf("%s: open findings %+v", what, open)
	}
	return open
}

func impactsOf(open []findings.Finding, kind string) []findings.Finding {
	var out []findings.Finding
	for _, f := range open {
		if f.Impact != nil && f.Impact.Kind == kind {
			out = append(out, f)
		}
	}
	return out
}

func failedCreate(at time.Time) Signal {
	return Signal{Webhook: awsHook.Ref.Name, Class: findings.ServiceNotFound, Source: findings.Event, At: at,
		Object: "DaemonSet kube-system/aws-node", Reason: "FailedCreate", Count: 1,
		Detail: `the webhook's Service does not exist: service "aws-load-balancer-webhook-service" not found`}
}

// TestNodeNotReadyBecauseOfAWSNode: the article's worst case. A FailedCreate
// of aws-node names the webhook; a NotReady node without an aws-node pod
// is its impact; when the DaemonSet has its pods again, the impacts
// resolve, and a minute after the last failure the signals' finding does.
func TestNodeNotReadyBecauseOfAWSNode(t *testing.T) {
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "aws-node", UID: "ds-1"},
		Spec:   appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "aws-node"}}},
		Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, CurrentNumberScheduled: 1}}
	ready := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	joining := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse,
		Reason: "KubeletNotReady", LastTransitionTime: metav1.NewTime(time.Date(2026, 12, 5, 9, 59, 0, 0, time.UTC))}}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "aws-node-a", Labels: map[string]string{"k8s-app": "aws-node"}}, Spec: corev1.PodSpec{NodeName: "node-1"}}
	f := newFixture(t, ds, ready, joining, pod)

	f.corr.OnSignal(failedCreate(f.clock.Now()))
	open := f.until("the node's impact", func(open []findings.Finding) bool { return len(impactsOf(open, findings.ImpactNodeNotReady)) == 1 })
	node := impactsOf(open, findings.ImpactNodeNotReady)[0]
	if node.Impact.Node != "node-2" || node.Class != findings.ServiceNotFound || node.Effect != findings.WritesRejected ||
		!strings.Contains(node.Impact.Detail, "node node-2 is NotReady (KubeletNotReady) and DaemonSet kube-system/aws-node cannot create its pod there") {
		t.Errorf("node impact %+v", node.Impact)
	}
	if n := len(impactsOf(open, findings.ImpactControllerBlocked)); n != 1 {
		t.Errorf("%d ControllerBlocked impacts, want 1", n)
	}
	if len(open) != 3 { // the signals' finding, the blocked DaemonSet, the node
		t.Errorf("open %+v, want 3 findings", open)
	}

	// The webhook is fixed: aws-node gets its pod on node-2.
	ds.Status.CurrentNumberScheduled = 2
	if _, err := f.api.Clientset.AppsV1().DaemonSets("kube-system").UpdateStatus(f.ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.until("the impacts resolve", func(open []findings.Finding) bool { return len(open) == 1 && open[0].Impact == nil })
	f.clock.Step(signalQuiet + time.Second)
	f.until("the signals go quiet", func(open []findings.Finding) bool { return len(open) == 0 })
}

// TestDeletionBlocked: while a webhook rejects DELETEs, a Deployment that
// is gone but whose ReplicaSet remains is a DeletionBlocked impact.
func TestDeletionBlocked(t *testing.T) {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web-7d9", UID: "rs-1",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: types.UID("dep-1"), Controller: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](2)}, Status: appsv1.ReplicaSetStatus{Replicas: 2}}
	alive := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "api-1", UID: "rs-2",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "api", UID: types.UID("dep-2"), Controller: ptr.To(true)}}}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "api", UID: "dep-2"}}
	f := newFixture(t, rs, alive, dep)
	f.corr.OnSignal(Signal{Webhook: awsHook.Ref.Name, Class: findings.ServiceNotFound, Source: findings.Metrics, At: f.clock.Now(), Count: 4, Deletes: true,
		Detail: "4 calls failed closed"})
	open := f.until("the stuck deletion", func(open []findings.Finding) bool { return len(impactsOf(open, findings.ImpactDeletionBlocked)) == 1 })
	imp := impactsOf(open, findings.ImpactDeletionBlocked)[0].Impact
	if imp.Object != "Deployment web/web" || !strings.Contains(imp.Detail, "its ReplicaSets web-7d9 and 2 pods remain") {
		t.Errorf("impact %+v", imp)
	}
}

// TestBlockedJob: a Job that cannot create its pod stays blocked while it
// has none, and resolves once it has one.
func TestBlockedJob(t *testing.T) {
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "batch", Name: "migrate", UID: "job-1"}}
	f := newFixture(t, job)
	sf := failedCreate(f.clock.Now())
	sf.Object = "Job batch/migrate"
	f.corr.OnSignal(sf)
	f.until("the Jobs listed, the Job still blocked", func(open []findings.Finding) bool {
		i := f.corr.cluster.informer("Job")
		return i != nil && i.HasSynced() && len(impactsOf(open, findings.ImpactControllerBlocked)) == 1
	})
	if obj, exists, _ := f.corr.cluster.get("Job", "batch", "migrate"); !exists {
		t.Fatal("the Job is not in the cache")
	} else if _, typed := obj.(*batchv1.Job); !typed {
		t.Fatalf("the cache holds a %T, want a *batchv1.Job", obj)
	}

	job.Status.Active = 1
	if _, err := f.api.Clientset.BatchV1().Jobs("batch").UpdateStatus(f.ctx, job, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.until("the Job has its pod", func(open []findings.Finding) bool {
		return len(impactsOf(open, findings.ImpactControllerBlocked)) == 0
	})
}

// TestSlowThenFast: a webhook whose signals were SlowResponse only
// resolves as soon as the API server says it is fast again.
func TestSlowThenFast(t *testing.T) {
	f := newFixture(t)
	f.corr.OnSignal(Signal{Webhook: awsHook.Ref.Name, Class: findings.SlowResponse, Source: findings.Metrics, At: f.clock.Now(), Count: 10, Latency: 1500 * time.Millisecond})
	open := f.until("the slow finding", func(open []findings.Finding) bool { return len(open) == 1 })
	if open[0].Class != findings.SlowResponse || open[0].Effect != findings.WritesSlowed {
		t.Fatalf("open %+v", open)
	}
	f.corr.OnSignal(Signal{Webhook: awsHook.Ref.Name, Class: findings.Healthy, Source: findings.Metrics, At: f.clock.Now()})
	f.until("fast again", func(open []findings.Finding) bool { return len(open) == 0 })
}

// discoveryFailure is the namespace controller's condition, as on 1.34.
const discoveryFailure = "Discovery failed for some groups, 1 failing: unable to retrieve the complete list of server APIs: metrics.k8s.io/v1beta1: stale GroupVersion discovery: metrics.k8s.io/v1beta1"

func TestFailingGroupVersions(t *testing.T) {
	for msg, want := range map[string]string{
		discoveryFailure: "metrics.k8s.io/v1beta1",
		"Discovery failed for some groups, 2 failing: unable to retrieve the complete list of server APIs: metrics.k8s.io/v1beta1: the server is currently unable to handle the request, custom.metrics.k8s.io/v1beta2: stale GroupVersion discovery: custom.metrics.k8s.io/v1beta2": "metrics.k8s.io/v1beta1 custom.metrics.k8s.io/v1beta2",
		"All resources successfully discovered":                                    "",
		"unable to retrieve the complete list of server APIs: not a group version": "",
	} {
		if got := strings.Join(failingGroupVersions(msg), " "); got != want {
			t.Errorf("failingGroupVersions(%q) = %q, want %q", msg, got, want)
		}
	}
}

// TestNamespaceTerminating: a namespace whose deletion waits on the
// discovery of metrics-server's API is an impact of its APIService, from
// when its deletion began, and resolves once the namespace is gone.
func TestNamespaceTerminating(t *testing.T) {
	deleted := metav1.NewTime(time.Date(2026, 12, 5, 9, 55, 0, 0, time.UTC))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", DeletionTimestamp: &deleted, Finalizers: []string{"kubernetes"}},
		Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating, Conditions: []corev1.NamespaceCondition{{
			Type: corev1.NamespaceDeletionDiscoveryFailure, Status: corev1.ConditionTrue, Reason: "DiscoveryFailed", Message: discoveryFailure}}}}
	other := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b"}}
	f := newFixture(t, ns, other)
	open := f.until("the namespace is an impact", func(open []findings.Finding) bool {
		return len(impactsOf(open, findings.ImpactNamespaceTerminating)) == 1
	})
	imp := impactsOf(open, findings.ImpactNamespaceTerminating)[0]
	if imp.Webhook != metricsAPI.Ref || imp.Impact.Object != "Namespace team-a" || !imp.Impact.Since.Equal(deleted.Time) ||
		!strings.Contains(imp.Impact.Detail, "namespace team-a has been Terminating since 2026-12-05T09:55:00Z (5m0s when found): the namespace controller cannot discover metrics.k8s.io/v1beta1, which APIService v1beta1.metrics.k8s.io serves") {
		t.Errorf("impact %+v", imp)
	}
	if err := f.api.Clientset.CoreV1().Namespaces().Delete(f.ctx, "team-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.until("the impact resolves with the namespace gone", func(open []findings.Finding) bool {
		return len(impactsOf(open, findings.ImpactNamespaceTerminating)) == 0
	})
}

// contentFailure is the namespace controller's condition when a CRD's
// conversion webhook's Service is gone, as on 1.34.
const contentFailure = `Failed to delete all resource types, 1 remaining: conversion webhook for conv.example.com/v1, Kind=Widget failed: Post "https://conv-webhook.conv.svc:443/convert?timeout=30s": service "conv-webhook" not found`

func TestFailingConversions(t *testing.T) {
	for msg, want := range map[string]string{
		contentFailure: "conv.example.com/Widget",
		"Failed to delete all resource types, 2 remaining: conversion webhook for a.example.com/v1, Kind=Gadget failed: Post \"https://a:443/convert\": EOF, conversion webhook for a.example.com/v2, Kind=Gadget failed: EOF, conversion webhook for cert-manager.io/v1, Kind=Certificate failed: x509: certificate has expired or is not yet valid": "a.example.com/Gadget cert-manager.io/Certificate",
		"Failed to delete all resource types, 1 remaining: the server could not find the requested resource": "",
		"conversion webhook for nogroupversion, Kind=X failed: EOF":                                          "",
		"conversion webhook for a.example.com/v1, Kind= failed: EOF":                                         "",
	} {
		var got []string
		for _, gk := range failingConversions(msg) {
			got = append(got, gk.group+"/"+gk.kind)
		}
		if strings.Join(got, " ") != want {
			t.Errorf("failingConversions(%q) = %q, want %q", msg, got, want)
		}
	}
}

// TestNamespaceTerminatingOnConversion: a namespace holding custom
// resources whose conversion webhook fails is an impact of that CRD's
// conversion webhook.
func TestNamespaceTerminatingOnConversion(t *testing.T) {
	deleted := metav1.NewTime(time.Date(2026, 12, 5, 9, 55, 0, 0, time.UTC))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-w", DeletionTimestamp: &deleted, Finalizers: []string{"kubernetes"}},
		Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating, Conditions: []corev1.NamespaceCondition{{
			Type: corev1.NamespaceDeletionContentFailure, Status: corev1.ConditionTrue, Reason: "ContentDeletionFailed", Message: contentFailure}}}}
	f := newFixture(t, ns)
	open := f.until("the namespace is an impact", func(open []findings.Finding) bool {
		return len(impactsOf(open, findings.ImpactNamespaceTerminating)) == 1
	})
	imp := impactsOf(open, findings.ImpactNamespaceTerminating)[0]
	if imp.Webhook != widgetsCRD.Ref || imp.Impact.Object != "Namespace team-w" ||
		!strings.Contains(imp.Impact.Detail, "cannot delete its Widget custom resources: the conversion webhook of CRD widgets.conv.example.com fails") {
		t.Errorf("impact %+v", imp)
	}
}

// FuzzFailingConversions: any condition message reads without a panic,
// and each group and kind it names is in the message as the API server
// writes them.
func FuzzFailingConversions(f *testing.F) {
	f.Add(contentFailure)
	f.Fuzz(func(t *testing.T, msg string) {
		for _, gk := range failingConversions(msg) {
			if gk.group == "" || gk.kind == "" || !strings.Contains(msg, "conversion webhook for "+gk.group+"/") || !strings.Contains(msg, ", Kind="+gk.kind+" failed") {
				t.Fatalf("%+v read from %q", gk, msg)
			}
		}
	})
}

// metricsDown is the HPA controller's ScalingActive message when
// metrics-server's backend is gone, as on 1.34.
const metricsDown = "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server is currently unable to handle the request (get pods.metrics.k8s.io)"

func TestFailingMetricsRead(t *testing.T) {
	for msg, want := range map[string]string{
		metricsDown: "pods metrics.k8s.io",
		"the HPA was unable to compute the replica count: unable to get external metric default/queue_depth/nil: unable to fetch metrics from external metrics API: the server could not find the requested resource (get queue_depth.external.metrics.k8s.io)": "queue_depth external.metrics.k8s.io",
		"the HPA was unable to compute the replica count: failed to get cpu utilization: did not receive metrics for targeted pods (pods might be unready)":                                                                                                     "",
		"the HPA controller was able to get the target's current scale": "",
	} {
		resource, group, ok := failingMetricsRead(msg)
		got := ""
		if ok {
			got = resource + " " + group
		}
		if got != want {
			t.Errorf("failingMetricsRead(%q) = %q, want %q", msg, got, want)
		}
	}
}

// TestAutoscalingStopped: an HPA that cannot read metrics-server's API is
// an impact of its APIService, from when it stopped; one that reads it
// but got no metrics is not.
func TestAutoscalingStopped(t *testing.T) {
	stopped := metav1.NewTime(time.Date(2026, 12, 5, 9, 58, 0, 0, time.UTC))
	hpa := func(name, msg string) *autoscalingv2.HorizontalPodAutoscaler {
		return &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{Kind: "Deployment", Name: name}},
			Status: autoscalingv2.HorizontalPodAutoscalerStatus{Conditions: []autoscalingv2.HorizontalPodAutoscalerCondition{{
				Type: autoscalingv2.ScalingActive, Status: corev1.ConditionFalse, Reason: "FailedGetResourceMetric", Message: msg, LastTransitionTime: stopped}}}}
	}
	f := newFixture(t, hpa("web", metricsDown), hpa("idle", "the HPA was unable to compute the replica count: failed to get cpu utilization: did not receive metrics for targeted pods (pods might be unready)"))
	open := f.until("the HPA is an impact", func(open []findings.Finding) bool {
		return len(impactsOf(open, findings.ImpactAutoscalingStopped)) == 1
	})
	imp := impactsOf(open, findings.ImpactAutoscalingStopped)[0]
	if imp.Webhook != metricsAPI.Ref || imp.Impact.Object != "HorizontalPodAutoscaler shop/web" || !imp.Impact.Since.Equal(stopped.Time) ||
		!strings.Contains(imp.Impact.Detail, "HPA shop/web has not scaled Deployment web since 2026-12-05T09:58:00Z (2m0s when found): the HPA controller cannot read pods.metrics.k8s.io, which APIService v1beta1.metrics.k8s.io serves") {
		t.Errorf("impact %+v", imp)
	}
}

// FuzzFailingMetricsRead: any condition message reads without a panic, and
// what it names is in the message as the client writes it.
func FuzzFailingMetricsRead(f *testing.F) {
	f.Add(metricsDown)
	f.Fuzz(func(t *testing.T, msg string) {
		if resource, group, ok := failingMetricsRead(msg); ok && !strings.Contains(msg, "(get "+resource+"."+group+")") {
			t.Fatalf("%q %q read from %q", resource, group, msg)
		}
	})
}

// FuzzFailingGroupVersions: any condition message reads without a panic,
// and what it names is group/version shaped and in the message.
func FuzzFailingGroupVersions(f *testing.F) {
	f.Add(discoveryFailure)
	f.Fuzz(func(t *testing.T, msg string) {
		for _, gv := range failingGroupVersions(msg) {
			if strings.Count(gv, "/") != 1 || !strings.Contains(msg, gv) {
				t.Fatalf("%q read from %q", gv, msg)
			}
		}
	})
}
