package risk

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hookscope/hookscope/callout"
)

// A drain (kubectl drain, an EKS managed node group update, Karpenter
// consolidation) evicts pods through the eviction API, which lets a pod
// go only while the PodDisruptionBudgets that select it allow a
// disruption. DaemonSet pods and static pods are not evicted.

// The PodDisruptionBudget risks, judged only for call-outs that fail
// closed.
const (
	// NoPodDisruptionBudget: no PodDisruptionBudget selects the backend
	// pods, so a drain may evict them all at once. A warning when none is
	// selected, info when some are.
	NoPodDisruptionBudget Kind = "NoPodDisruptionBudget"
	// PodDisruptionBudgetBlocksDrain: a PodDisruptionBudget that selects
	// the backend pods never allows an eviction (maxUnavailable 0,
	// minAvailable as many as the pods), or a pod is selected by more than
	// one, which the eviction API refuses: a drain hangs on them. Info:
	// the call-out keeps serving.
	PodDisruptionBudgetBlocksDrain Kind = "PodDisruptionBudgetBlocksDrain"
)

// drainEffect is what a drain does to pods no budget holds back.
const drainEffect = "a node drain or a rolling node upgrade (an EKS managed node group update, Karpenter consolidation)"

// DisruptionBudgets judges, for every call-out in ws that fails closed
// and calls a Service, which PodDisruptionBudgets select its backend
// pods: pod returns a backend pod (nil when unknown: that pod is not
// judged). budgets must be every budget of the pods' namespaces: a pod
// none selects is reported. Call-outs not resolved yet or invalid, and
// DaemonSet and static pods (a drain leaves them), are not judged. The
// result is sorted like Analyze's.
func DisruptionBudgets(ws []callout.Webhook, budgets []*policyv1.PodDisruptionBudget, pod func(callout.PodRef) *corev1.Pod) []Risk {
	byNamespace := map[string][]*policyv1.PodDisruptionBudget{}
	for _, b := range budgets {
		if b != nil {
			byNamespace[b.Namespace] = append(byNamespace[b.Namespace], b)
		}
	}
	var out []Risk
	for _, w := range ws {
		if !w.FailsClosed() || w.Service == nil || w.Invalid != "" || w.Unresolved != "" || pod == nil {
			continue
		}
		pods := budgetedPods(w, byNamespace, pod)
		if r, ok := unbudgetedRisk(w, pods); ok {
			out = append(out, r)
		}
		if r, ok := blockingBudgetRisk(w, pods); ok {
			out = append(out, r)
		}
	}
	sortRisks(out)
	return out
}

// budgetedPod is one backend pod a drain evicts and the budgets that
// select it.
type budgetedPod struct {
	name    string
	budgets []*policyv1.PodDisruptionBudget
}

// budgetedPods are w's backend pods a drain evicts, each once, sorted;
// budgets are by namespace.
func budgetedPods(w callout.Webhook, budgets map[string][]*policyv1.PodDisruptionBudget, pod func(callout.PodRef) *corev1.Pod) []budgetedPod {
	seen := map[string]bool{}
	var out []budgetedPod
	for _, b := range w.Backends {
		if b.Pod == nil {
			continue
		}
		name := b.Pod.Namespace + "/" + b.Pod.Name
		if seen[name] {
			continue
		}
		seen[name] = true
		p := pod(*b.Pod)
		if p == nil || !evicted(p) {
			continue
		}
		out = append(out, budgetedPod{name: name, budgets: selecting(p, budgets[p.Namespace])})
	}
	slices.SortFunc(out, func(x, y budgetedPod) int { return strings.Compare(x.name, y.name) })
	return out
}

// evicted reports whether a drain evicts p: it leaves DaemonSet pods and
// static (mirror) pods.
func evicted(p *corev1.Pod) bool {
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	c := metav1.GetControllerOf(p)
	return c == nil || c.Kind != "DaemonSet"
}

// selecting are the budgets that select p, as policy/v1 defines it: a
// budget of p's namespace whose selector matches p's labels; an empty
// selector selects every pod, a missing one none. Budgets whose selector
// does not parse are skipped.
func selecting(p *corev1.Pod, budgets []*policyv1.PodDisruptionBudget) []*policyv1.PodDisruptionBudget {
	var out []*policyv1.PodDisruptionBudget
	for _, b := range budgets {
		if b == nil || b.Namespace != p.Namespace {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if err == nil && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(x, y *policyv1.PodDisruptionBudget) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// unbudgetedRisk: backend pods no budget selects.
func unbudgetedRisk(w callout.Webhook, pods []budgetedPod) (Risk, bool) {
	var bare []string
	for _, p := range pods {
		if len(p.budgets) == 0 {
			bare = append(bare, p.name)
		}
	}
	r := Risk{Webhook: w.Ref, Kind: NoPodDisruptionBudget, Severity: Warning,
		Fix: fmt.Sprintf("add a PodDisruptionBudget in namespace %s that selects %s, with maxUnavailable: 1, and run at least 2 replicas on different nodes (with one replica, a budget that protects it blocks every drain)",
			w.Service.Namespace, selectorOf(w))}
	switch {
	case len(bare) == 0:
		return Risk{}, false
	case len(pods) == 1:
		r.Detail = fmt.Sprintf("%s: no PodDisruptionBudget selects its backend pod %s: %s evicts it with nothing held back, and until a new pod is ready every call fails and %s.",
			calloutName(w), bare[0], drainEffect, whenUncallable(w))
	case len(bare) == len(pods):
		r.Detail = fmt.Sprintf("%s: no PodDisruptionBudget selects any of its %d backend pods (%s): %s may evict them all at once, and until a new pod is ready every call fails and %s.",
			calloutName(w), len(pods), list(bare, 3), drainEffect, whenUncallable(w))
	default:
		r.Severity = Info
		r.Detail = fmt.Sprintf("%s: no PodDisruptionBudget selects %d of its %d backend pods (%s): %s may evict them at once, and the others then carry every call.",
			calloutName(w), len(bare), len(pods), list(bare, 3), drainEffect)
	}
	return r, true
}

// selectorOf is how the fix names w's pods: the Service's selector.
func selectorOf(w callout.Webhook) string {
	if len(w.ServiceSelector) == 0 {
		return "the backend pods"
	}
	var terms []string
	for _, k := range slices.Sorted(maps.Keys(w.ServiceSelector)) {
		terms = append(terms, k+": "+w.ServiceSelector[k])
	}
	return "the Service's pods (matchLabels {" + strings.Join(terms, ", ") + "})"
}

// blockingBudgetRisk: a pod more than one budget selects, or a budget that
// never allows an eviction.
func blockingBudgetRisk(w callout.Webhook, pods []budgetedPod) (Risk, bool) {
	var why, fix []string
	var overlapping []budgetedPod
	selected := map[*policyv1.PodDisruptionBudget]int{}
	for _, p := range pods {
		if len(p.budgets) > 1 {
			overlapping = append(overlapping, p)
			continue
		}
		for _, b := range p.budgets {
			selected[b]++
		}
	}
	if len(overlapping) > 0 {
		first := overlapping[0]
		names := list(budgetNames(first.budgets), 3)
		why = append(why, fmt.Sprintf("PodDisruptionBudgets %s select pod %s%s, and the eviction API refuses to evict a pod more than one budget selects",
			names, first.name, likewise(len(overlapping), len(pods))))
		fix = append(fix, "narrow the selectors of "+names+" so that one budget selects each pod")
	}
	for _, b := range slices.SortedFunc(maps.Keys(selected), func(x, y *policyv1.PodDisruptionBudget) int { return strings.Compare(x.Name, y.Name) }) {
		if never, ok := neverAllows(b, selected[b]); ok {
			why = append(why, fmt.Sprintf("PodDisruptionBudget %s/%s %s, so it never allows an eviction", b.Namespace, b.Name, never))
			fix = append(fix, fmt.Sprintf("set maxUnavailable: 1 on %s/%s and run at least 2 replicas, so one pod can go while the others serve", b.Namespace, b.Name))
		}
	}
	if len(why) == 0 {
		return Risk{}, false
	}
	return Risk{Webhook: w.Ref, Kind: PodDisruptionBudgetBlocksDrain, Severity: Info,
		Detail: fmt.Sprintf("%s: %s. %s then waits on its pods until someone intervenes: an EKS managed node group update fails after 15 minutes (PodEvictionFailure), and a forced drain deletes the pods with nothing held back, so every call fails until a new pod is ready.",
			calloutName(w), strings.Join(why, "; "), upper(drainEffect)),
		Fix: strings.Join(fix, "; "),
	}, true
}

// neverAllows says how budget b never allows an eviction, if it does not:
// selected is how many of the call-out's backend pods it selects, the
// number of pods it expects when its status does not say.
func neverAllows(b *policyv1.PodDisruptionBudget, selected int) (string, bool) {
	// The disruption controller's count: the pods it selects (minAvailable
	// as a number) or its workloads' replicas (a percentage, maxUnavailable).
	expected := selected
	if b.Status.ExpectedPods > 0 && b.Status.ObservedGeneration >= b.Generation {
		expected = int(b.Status.ExpectedPods)
	}
	s := b.Spec
	switch {
	case s.MaxUnavailable != nil:
		if n, err := intstr.GetScaledValueFromIntOrPercent(s.MaxUnavailable, expected, true); err == nil && n <= 0 {
			return "has maxUnavailable " + s.MaxUnavailable.String(), true
		}
	case s.MinAvailable != nil:
		if n, err := intstr.GetScaledValueFromIntOrPercent(s.MinAvailable, expected, true); err == nil && n >= expected {
			return fmt.Sprintf("has minAvailable %s with %d %s", s.MinAvailable.String(), expected, plural(expected, "pod", "pods")), true
		}
	}
	return "", false
}

func budgetNames(bs []*policyv1.PodDisruptionBudget) []string {
	out := make([]string, 0, len(bs))
	for _, b := range bs {
		out = append(out, b.Namespace+"/"+b.Name)
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// upper capitalises the first letter of s.
func upper(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
