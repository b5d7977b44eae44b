package risk_test

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/risk"
)

// budget is a PodDisruptionBudget of namespace webhooks selecting
// app=hook; limit sets its minAvailable or maxUnavailable.
func budget(name string, limit func(*policyv1.PodDisruptionBudgetSpec)) *policyv1.PodDisruptionBudget {
	b := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: "webhooks", Name: name},
		Spec: policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "hook"}}}}
	if limit != nil {
		limit(&b.Spec)
	}
	return b
}

func maxUnavailable(v intstr.IntOrString) func(*policyv1.PodDisruptionBudgetSpec) {
	return func(s *policyv1.PodDisruptionBudgetSpec) { s.MaxUnavailable = &v }
}

func minAvailable(v intstr.IntOrString) func(*policyv1.PodDisruptionBudgetSpec) {
	return func(s *policyv1.PodDisruptionBudgetSpec) { s.MinAvailable = &v }
}

// expecting is b as the disruption controller reports it, expecting n
// pods (its workloads' replicas).
func expecting(b *policyv1.PodDisruptionBudget, n int32) *policyv1.PodDisruptionBudget {
	b.Status.ExpectedPods = n
	return b
}

// selector is b selecting sel instead.
func selector(b *policyv1.PodDisruptionBudget, sel *metav1.LabelSelector) *policyv1.PodDisruptionBudget {
	b.Spec.Selector = sel
	return b
}

// budgetPods are the backend pods TestDisruptionBudgets knows, by name:
// hook-canary is labelled track=canary, hook-ds is a DaemonSet's, and
// hook-static a static pod's mirror.
func budgetPods() map[string]*corev1.Pod {
	pods := map[string]*corev1.Pod{}
	for _, p := range []*corev1.Pod{hookBackend("hook-a1"), hookBackend("hook-b2"), hookBackend("hook-canary"), hookBackend("hook-ds"), hookBackend("hook-static")} {
		pods[p.Name] = p
	}
	pods["hook-canary"].Labels["track"] = "canary"
	pods["hook-ds"].OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "hook", Controller: ptr.To(true)}}
	pods["hook-static"].Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "abc"}
	return pods
}

func TestDisruptionBudgets(t *testing.T) {
	served := func(w callout.Webhook) callout.Webhook {
		w.ServiceSelector = map[string]string{"app": "hook", "tier": "admission"}
		return w
	}
	asKind := func(kind, name string, w callout.Webhook) callout.Webhook {
		w.Ref = callout.Ref{Kind: kind, Configuration: name, Name: name}
		return w
	}
	unresolved := webhookOn("Fail", "hook-a1")
	unresolved.Unresolved = "namespace webhooks is not listed yet"
	invalid := webhookOn("Fail", "hook-a1")
	invalid.Invalid = "caBundle holds no PEM certificate"
	var (
		pair     = webhookOn("Fail", "hook-a1", "hook-b2")
		single   = webhookOn("Fail", "hook-a1")
		spread   = budget("hook", maxUnavailable(intstr.FromInt32(1)))
		elsewhre = func() *policyv1.PodDisruptionBudget { b := budget("hook", nil); b.Namespace = "other"; return b }()
		canary   = selector(budget("canary", maxUnavailable(intstr.FromInt32(1))), &metav1.LabelSelector{MatchLabels: map[string]string{"track": "canary"}})
	)
	for _, tc := range []struct {
		name    string
		w       callout.Webhook
		budgets []*policyv1.PodDisruptionBudget
		// want is "kind severity: phrases of the detail | ...", one per risk
		// in the result's order.
		want []string
	}{
		{"no budget: a drain may evict every replica at once", served(pair), nil,
			[]string{"NoPodDisruptionBudget warning: webhook Validating/hook/check.example.com (failurePolicy Fail) | any of its 2 backend pods (webhooks/hook-a1 and webhooks/hook-b2) | evict them all at once | every write it matches is rejected"}},
		{"one replica and no budget", single, nil,
			[]string{"NoPodDisruptionBudget warning: its backend pod webhooks/hook-a1 | evicts it"}},
		{"a budget that allows one pod to go at a time protects it", pair, []*policyv1.PodDisruptionBudget{spread}, nil},
		{"an empty selector selects every pod of its namespace", pair, []*policyv1.PodDisruptionBudget{selector(budget("all", maxUnavailable(intstr.FromInt32(1))), &metav1.LabelSelector{})}, nil},
		{"a missing selector selects no pod", pair, []*policyv1.PodDisruptionBudget{selector(budget("none", maxUnavailable(intstr.FromInt32(1))), nil)},
			[]string{"NoPodDisruptionBudget warning: any of its 2 backend pods"}},
		{"a budget of another namespace does not count", pair, []*policyv1.PodDisruptionBudget{elsewhre},
			[]string{"NoPodDisruptionBudget warning: any of its 2 backend pods"}},
		{"a budget that selects only some of the pods", webhookOn("Fail", "hook-a1", "hook-canary"), []*policyv1.PodDisruptionBudget{canary},
			[]string{"NoPodDisruptionBudget info: 1 of its 2 backend pods (webhooks/hook-a1) | the others then carry every call"}},
		{"an aggregated API", asKind(callout.KindAPIService, "v1beta1.metrics.k8s.io", pair), nil,
			[]string{"NoPodDisruptionBudget warning: APIService v1beta1.metrics.k8s.io | discovery fail"}},
		{"a conversion webhook", asKind(callout.KindConversion, "widgets.example.com", pair), nil,
			[]string{"NoPodDisruptionBudget warning: the conversion webhook of CRD widgets.example.com | need converting"}},
		{"a webhook that fails open is not judged", webhookOn("Ignore", "hook-a1", "hook-b2"), nil, nil},
		{"a webhook called by URL has no pods to judge", byURL(pair), nil, nil},
		{"a webhook not resolved yet is not judged", unresolved, nil, nil},
		{"an invalid webhook is not judged", invalid, nil, nil},
		{"a pod not known is not judged", podless(webhookOn("Fail", "hook-a1")), nil, nil},
		{"a drain leaves DaemonSet and static pods", webhookOn("Fail", "hook-ds", "hook-static"), nil, nil},

		{"maxUnavailable 0 never allows an eviction", pair, []*policyv1.PodDisruptionBudget{budget("frozen", maxUnavailable(intstr.FromInt32(0)))},
			[]string{"PodDisruptionBudgetBlocksDrain info: PodDisruptionBudget webhooks/frozen has maxUnavailable 0, so it never allows an eviction | waits on its pods | PodEvictionFailure"}},
		{"maxUnavailable 0% never allows an eviction", pair, []*policyv1.PodDisruptionBudget{budget("frozen", maxUnavailable(intstr.FromString("0%")))},
			[]string{"PodDisruptionBudgetBlocksDrain info: has maxUnavailable 0%"}},
		{"minAvailable 1 of one replica never allows an eviction", single, []*policyv1.PodDisruptionBudget{budget("one", minAvailable(intstr.FromInt32(1)))},
			[]string{"PodDisruptionBudgetBlocksDrain info: webhooks/one has minAvailable 1 with 1 pod"}},
		{"minAvailable 1 of two replicas lets one go", pair, []*policyv1.PodDisruptionBudget{budget("one", minAvailable(intstr.FromInt32(1)))}, nil},
		{"minAvailable 100% never allows an eviction", pair, []*policyv1.PodDisruptionBudget{budget("all", minAvailable(intstr.FromString("100%")))},
			[]string{"PodDisruptionBudgetBlocksDrain info: has minAvailable 100% with 2 pods"}},
		{"the pods the budget expects count, not only the backends", pair, []*policyv1.PodDisruptionBudget{expecting(budget("two", minAvailable(intstr.FromInt32(2))), 3)}, nil},
		{"minAvailable as many as the pods expected", pair, []*policyv1.PodDisruptionBudget{expecting(budget("three", minAvailable(intstr.FromInt32(3))), 3)},
			[]string{"PodDisruptionBudgetBlocksDrain info: has minAvailable 3 with 3 pods"}},
		{"two budgets on one pod: the eviction API refuses it", pair, []*policyv1.PodDisruptionBudget{spread, budget("again", maxUnavailable(intstr.FromInt32(1)))},
			[]string{"PodDisruptionBudgetBlocksDrain info: PodDisruptionBudgets webhooks/again and webhooks/hook select pod webhooks/hook-a1 (likewise 1 more of its 2 backend pods), and the eviction API refuses to evict"}},
		{"some pods bare, the others under a frozen budget", webhookOn("Fail", "hook-a1", "hook-canary"),
			[]*policyv1.PodDisruptionBudget{selector(budget("canary", maxUnavailable(intstr.FromInt32(0))), canary.Spec.Selector)},
			[]string{"NoPodDisruptionBudget info: webhooks/hook-a1", "PodDisruptionBudgetBlocksDrain info: webhooks/canary has maxUnavailable 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pods := budgetPods()
			got := risk.DisruptionBudgets([]callout.Webhook{tc.w}, tc.budgets, func(ref callout.PodRef) *corev1.Pod { return pods[ref.Name] })
			if len(got) != len(tc.want) {
				t.Fatalf("risks %+v, want %v", got, tc.want)
			}
			for i, want := range tc.want {
				head, phrases, _ := strings.Cut(want, ": ")
				if string(got[i].Kind)+" "+string(got[i].Severity) != head || got[i].Webhook != tc.w.Ref || got[i].Fix == "" {
					t.Errorf("risk %d: %+v, want %s of %s with a fix", i, got[i], head, tc.w.Ref)
				}
				for _, p := range strings.Split(phrases, " | ") {
					if !strings.Contains(got[i].Detail, p) {
						t.Errorf("risk %d: detail %q does not say %q", i, got[i].Detail, p)
					}
				}
			}
		})
	}
}

func TestDisruptionBudgetFixes(t *testing.T) {
	pods := budgetPods()
	read := func(ref callout.PodRef) *corev1.Pod { return pods[ref.Name] }
	w := webhookOn("Fail", "hook-a1", "hook-b2")
	w.ServiceSelector = map[string]string{"tier": "admission", "app": "hook"}
	got := risk.DisruptionBudgets([]callout.Webhook{w}, nil, read)
	if len(got) != 1 || !strings.Contains(got[0].Fix, "in namespace webhooks that selects the Service's pods (matchLabels {app: hook, tier: admission}), with maxUnavailable: 1") {
		t.Errorf("no budget: %+v, want a fix with the Service's selector", got)
	}
	got = risk.DisruptionBudgets([]callout.Webhook{w}, []*policyv1.PodDisruptionBudget{budget("frozen", maxUnavailable(intstr.FromInt32(0)))}, read)
	if len(got) != 1 || !strings.Contains(got[0].Fix, "set maxUnavailable: 1 on webhooks/frozen") {
		t.Errorf("frozen budget: %+v, want a fix naming it", got)
	}
}

// BenchmarkDisruptionBudgets judges 500 call-outs of two pods each, in
// 500 namespaces, against 1,000 budgets.
func BenchmarkDisruptionBudgets(b *testing.B) {
	pods := map[string]*corev1.Pod{}
	var ws []callout.Webhook
	var budgets []*policyv1.PodDisruptionBudget
	for i := range 500 {
		ns := fmt.Sprintf("team-%03d", i)
		w := webhookOn("Fail", ns+"-a", ns+"-b")
		w.Ref.Name = ns
		for j := range w.Backends {
			w.Backends[j].Pod.Namespace = ns
			p := hookBackend(w.Backends[j].Pod.Name)
			p.Namespace = ns
			pods[p.Name] = p
		}
		ws = append(ws, w)
		for _, name := range []string{"hook", "other"} {
			bd := budget(name, maxUnavailable(intstr.FromInt32(1)))
			bd.Namespace = ns
			if name == "other" {
				bd.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}
			}
			budgets = append(budgets, bd)
		}
	}
	read := func(ref callout.PodRef) *corev1.Pod { return pods[ref.Name] }
	b.ResetTimer()
	for range b.N {
		if rs := risk.DisruptionBudgets(ws, budgets, read); len(rs) != 0 {
			b.Fatalf("%d risks, want none", len(rs))
		}
	}
}
