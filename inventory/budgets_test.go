package inventory

import (
	"context"
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	k8stesting "k8s.io/client-go/testing"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/internal/kube/kubefake"
)

func hookBudget(ns string) *policyv1.PodDisruptionBudget {
	one := intstr.FromInt32(1)
	return &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook", Generation: 1},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "hook"}}}}
}

func TestPodDisruptionBudgetsAreKnownOnceListed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inv := New(kubefake.New(nil, hookBudget("webhooks"), hookBudget("other")), nil)
	if got, listed := inv.PodDisruptionBudgets(); got != nil || listed {
		t.Fatalf("before the watch: %v, listed %v; want nothing, not listed", got, listed)
	}
	go func() { _ = inv.Run(ctx, 5*time.Second, func([]callout.Webhook) {}) }()
	inv.WatchPodDisruptionBudgets(ctx)
	inv.WatchPodDisruptionBudgets(ctx) // once: a second call starts nothing
	if inv.budgetWatches() != 1 {
		t.Errorf("%d budget watches, want 1", inv.budgetWatches())
	}
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		got, listed := inv.PodDisruptionBudgets()
		return listed && len(got) == 2, nil
	})
	if err != nil {
		got, listed := inv.PodDisruptionBudgets()
		t.Fatalf("the cluster's 2 budgets: %d, listed %v", len(got), listed)
	}
	// Listing them pokes a resolution, whose stats count them.
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		st := inv.Stats()
		return st.PodDisruptionBudgets == 2 && st.Watches == 3, nil
	})
	if err != nil {
		t.Errorf("stats %+v, want 2 budgets and 3 watches (the webhook configurations' 2 and the budgets')", inv.Stats())
	}
}

func TestPodDisruptionBudgetsForbiddenStayUnknown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api := kubefake.New(nil, hookBudget("webhooks"))
	api.Clientset.PrependReactor("list", "poddisruptionbudgets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "policy", Resource: "poddisruptionbudgets"}, "", nil)
	})
	inv := New(api, nil)
	start := time.Now()
	inv.WatchPodDisruptionBudgets(ctx)
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("starting the watch waited %s for a list it may not make", waited)
	}
	time.Sleep(300 * time.Millisecond)
	if got, listed := inv.PodDisruptionBudgets(); listed {
		t.Errorf("budgets %v listed although the agent may not list them: a pod none selects would be reported", got)
	}
}

func TestBudgetChangedIgnoresStatusChurn(t *testing.T) {
	base := hookBudget("webhooks")
	base.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: 1, ExpectedPods: 2, CurrentHealthy: 2, DesiredHealthy: 1, DisruptionsAllowed: 1}
	for _, tc := range []struct {
		name   string
		change func(*policyv1.PodDisruptionBudget)
		want   bool
	}{
		{"a pod turns unready: status only", func(b *policyv1.PodDisruptionBudget) {
			b.Status.CurrentHealthy, b.Status.DisruptionsAllowed = 1, 0
			b.ResourceVersion = "2"
		}, false},
		{"a label of the budget itself", func(b *policyv1.PodDisruptionBudget) { b.Labels = map[string]string{"team": "a"} }, false},
		{"its selector", func(b *policyv1.PodDisruptionBudget) { b.Spec.Selector.MatchLabels["app"] = "other" }, true},
		{"its limit", func(b *policyv1.PodDisruptionBudget) { zero := intstr.FromInt32(0); b.Spec.MaxUnavailable = &zero }, true},
		{"the workload scales", func(b *policyv1.PodDisruptionBudget) { b.Status.ExpectedPods = 3 }, true},
		{"the controller catches up with a new spec", func(b *policyv1.PodDisruptionBudget) { b.Status.ObservedGeneration = 2 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := base.DeepCopy()
			tc.change(cur)
			if got := budgetChanged(base, cur); got != tc.want {
				t.Errorf("budgetChanged = %v, want %v", got, tc.want)
			}
		})
	}
	if !budgetChanged(cacheTombstone(base), base) {
		t.Error("an object that is not a budget must count as a change")
	}
}

// cacheTombstone is what an informer hands over for an object it lost
// track of.
func cacheTombstone(b *policyv1.PodDisruptionBudget) any {
	return struct{ Obj any }{b}
}
