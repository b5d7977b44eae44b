package inventory

import (
	"context"

	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/internal/kube"
)

// WatchPodDisruptionBudgets starts watching the cluster's
// PodDisruptionBudgets, once: the agent that holds the Lease judges
// whether a drain can take every backend of a call-out at once. One
// watch, not one per namespace, as for the NetworkPolicies. Nothing waits
// for it: an agent that may not list them resolves the call-outs all the
// same, and PodDisruptionBudgets says they are not known.
func (inv *Inventory) WatchPodDisruptionBudgets(ctx context.Context) {
	if inv.budgets.Load() != nil {
		return
	}
	i := inv.runInformerWith(ctx, kube.NewInformer(inv.api, budgetsGVR, metav1.NamespaceAll, nil, &policyv1.PodDisruptionBudget{}, cache.Indexers{}),
		inv.pokeOnBudgetChange())
	if !inv.budgets.CompareAndSwap(nil, &i) {
		i.cancel()
	}
}

// PodDisruptionBudgets are the cluster's PodDisruptionBudgets; listed is
// false until the watch has listed them (never, for an agent that may
// not), when a pod no budget selects may yet have one.
func (inv *Inventory) PodDisruptionBudgets() (budgets []*policyv1.PodDisruptionBudget, listed bool) {
	i := inv.budgets.Load()
	if i == nil {
		return nil, false
	}
	for _, o := range i.GetStore().List() {
		budgets = append(budgets, o.(*policyv1.PodDisruptionBudget))
	}
	return budgets, i.HasSynced()
}

// budgetWatches is 1 while the PodDisruptionBudgets are watched.
func (inv *Inventory) budgetWatches() int {
	if inv.budgets.Load() == nil {
		return 0
	}
	return 1
}

// pokeOnBudgetChange pokes the inventory when a budget comes or goes or
// what the risks read of it changes, not on each update of its status:
// the disruption controller rewrites that whenever a selected pod turns
// ready or not, anywhere in the cluster.
func (inv *Inventory) pokeOnBudgetChange() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { inv.poke() },
		UpdateFunc: func(old, cur any) {
			if budgetChanged(old, cur) {
				inv.poke()
			}
		},
		DeleteFunc: func(any) { inv.poke() },
	}
}

// budgetChanged reports whether the risks could judge cur otherwise than
// old: its selector and limits, or the pods it expects.
func budgetChanged(old, cur any) bool {
	o, ok := old.(*policyv1.PodDisruptionBudget)
	c, ok2 := cur.(*policyv1.PodDisruptionBudget)
	if !ok || !ok2 {
		return true
	}
	return !equality.Semantic.DeepEqual(o.Spec, c.Spec) ||
		o.Status.ExpectedPods != c.Status.ExpectedPods || o.Status.ObservedGeneration != c.Status.ObservedGeneration
}
