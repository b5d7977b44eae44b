package agent

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	k8stesting "k8s.io/client-go/testing"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/internal/certs"
	"github.com/hookscope/hookscope/internal/kube/kubefake"
	"github.com/hookscope/hookscope/inventory"
	"github.com/hookscope/hookscope/risk"
)

// disruptionCluster is a fake API server holding backend pods hook-0 ..
// hook-n-1 of namespace webhooks (app=hook) and the objects given; gets
// counts the pods read.
func disruptionCluster(n int, objs ...runtime.Object) (*inventory.Inventory, *kubefake.API, *atomic.Int32) {
	for i := range n {
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "webhooks", Name: podName(i), Labels: map[string]string{"app": "hook"}}})
	}
	api := kubefake.New(nil, objs...)
	gets := &atomic.Int32{}
	api.Clientset.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		gets.Add(1)
		return false, nil, nil
	})
	return inventory.New(api, nil), api, gets
}

func podName(i int) string { return "hook-" + string(rune('a'+i%26)) + string(rune('a'+i/26)) }

// servedBy is a Fail webhook of Service webhooks/hook served by the pods.
func servedBy(name string, pods ...string) callout.Webhook {
	w := callout.Webhook{Ref: callout.Ref{Kind: callout.KindValidating, Configuration: name, Name: name}, FailurePolicy: "Fail",
		Service: &callout.ServiceRef{Namespace: "webhooks", Name: "hook", Port: 443}}
	for i, p := range pods {
		w.Backends = append(w.Backends, callout.Backend{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 8443),
			Pod: &callout.PodRef{Namespace: "webhooks", Name: p}})
	}
	return w
}

func viewOf(ws ...callout.Webhook) *view {
	v := &view{webhooks: map[callout.Ref]callout.Webhook{}}
	for _, w := range ws {
		v.webhooks[w.Ref] = w
	}
	return v
}

func kinds(rs []risk.Risk) map[risk.Kind]int {
	out := map[risk.Kind]int{}
	for _, r := range rs {
		out[r.Kind]++
	}
	return out
}

func TestCalloutRisksJudgeBudgetsOnlyOnceListed(t *testing.T) {
	ca, err := certs.NewCA("old-ca", certs.Validity(time.Now().Add(-300*24*time.Hour), time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	inv, _, _ := disruptionCluster(2)
	a := New(Config{}, Parts{Inventory: inv})
	w := servedBy("v.example.com", podName(0), podName(1))
	w.CABundle = ca.PEM
	v := viewOf(w)

	// Before the budgets' watch has listed, an analysis cannot know them:
	// a pod no budget is known to select may have one.
	if got := kinds(a.calloutRisks(v)); got[risk.CABundleExpiring] != 1 || got[risk.NoPodDisruptionBudget] != 0 {
		t.Fatalf("first analysis: %v, want the caBundle only", got)
	}
	inv.WatchPodDisruptionBudgets(t.Context()) // the Lease holder's object loop starts it
	err = wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		_, listed := inv.PodDisruptionBudgets()
		return listed, nil
	})
	if err != nil {
		t.Fatal("the budgets were never listed")
	}
	if got := kinds(a.calloutRisks(v)); got[risk.CABundleExpiring] != 1 || got[risk.NoPodDisruptionBudget] != 1 {
		t.Errorf("once listed: %v, want the caBundle and no budget", got)
	}
}

func TestCalloutRisksFollowANewBudget(t *testing.T) {
	inv, api, _ := disruptionCluster(2)
	a := New(Config{}, Parts{Inventory: inv})
	v := viewOf(servedBy("v.example.com", podName(0), podName(1)))
	inv.WatchPodDisruptionBudgets(t.Context())
	ctx := context.Background()
	budget := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: "webhooks", Name: "hook"},
		Spec: policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "hook"}}}}
	if _, err := api.Clientset.PolicyV1().PodDisruptionBudgets("webhooks").Create(ctx, budget, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got map[risk.Kind]int
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		bs, listed := inv.PodDisruptionBudgets()
		if !listed || len(bs) != 1 {
			return false, nil
		}
		got = kinds(a.calloutRisks(v))
		return true, nil
	})
	if err != nil || len(got) != 0 {
		t.Errorf("with a budget selecting both pods: %v (%v), want no risk", got, err)
	}
}

func TestPodReaderReadsEachPodOnce(t *testing.T) {
	inv, _, gets := disruptionCluster(maxBudgetPods + 10)
	m := &riskMemory{pods: map[string]readPod{}}
	var names []string
	for i := range maxBudgetPods + 10 {
		names = append(names, podName(i))
	}
	ws := []callout.Webhook{servedBy("many", names...)}
	ctx := context.Background()

	read := m.podReader(ctx, inv, a0().cfg.Logger, ws)
	known := 0
	for _, b := range ws[0].Backends {
		if read(*b.Pod) != nil {
			known++
		}
		read(*b.Pod) // again, in the same analysis
	}
	if known != maxBudgetPods || gets.Load() != maxBudgetPods {
		t.Errorf("first analysis: %d pods known after %d reads, want %d of each", known, gets.Load(), maxBudgetPods)
	}

	read = m.podReader(ctx, inv, a0().cfg.Logger, ws)
	for _, b := range ws[0].Backends {
		if read(*b.Pod) == nil {
			t.Errorf("second analysis: pod %s unknown", b.Pod.Name)
		}
	}
	if gets.Load() != maxBudgetPods+10 {
		t.Errorf("second analysis: %d reads in all, want %d: only the pods not read yet", gets.Load(), maxBudgetPods+10)
	}

	// A pod that is no longer a backend is forgotten.
	m.podReader(ctx, inv, a0().cfg.Logger, []callout.Webhook{servedBy("few", names[1:]...)})
	if _, kept := m.pods["webhooks/"+names[0]]; kept || len(m.pods) != maxBudgetPods+9 {
		t.Errorf("%d pods remembered (%s kept: %v), want the %d backends only", len(m.pods), names[0], kept, maxBudgetPods+9)
	}
}

func TestPodReaderRetriesAFailedRead(t *testing.T) {
	inv, _, gets := disruptionCluster(0) // no pod: every read fails
	m := &riskMemory{pods: map[string]readPod{}}
	ws := []callout.Webhook{servedBy("gone", "hook-gone")}
	for range 2 {
		if p := m.podReader(context.Background(), inv, a0().cfg.Logger, ws)(*ws[0].Backends[0].Pod); p != nil {
			t.Fatalf("read %v, want nothing", p)
		}
	}
	if gets.Load() != 2 {
		t.Errorf("%d reads, want 2: a failed read is tried again next analysis", gets.Load())
	}
}

func TestWakeAtCallsOnceAfterTheLatestTime(t *testing.T) {
	m := &riskMemory{}
	var woken atomic.Int32
	wake := func() { woken.Add(1) }
	m.wakeAt(time.Now().Add(time.Hour), wake)           // replaced long before it is due
	m.wakeAt(time.Now().Add(20*time.Millisecond), wake) // the one that counts
	time.Sleep(wakeSlack + 300*time.Millisecond)
	if n := woken.Load(); n != 1 {
		t.Errorf("woken %d times, want once", n)
	}
	m.wakeAt(time.Now().Add(10*time.Millisecond), wake)
	m.wakeAt(time.Time{}, wake) // nothing to wait for: the pending wake is dropped
	time.Sleep(wakeSlack + 300*time.Millisecond)
	if n := woken.Load(); n != 1 {
		t.Errorf("woken %d times after the wake was dropped, want still once", n)
	}
}

// a0 is an agent with the default configuration.
func a0() *Agent { return New(Config{}, Parts{}) }
