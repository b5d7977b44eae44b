package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/inventory"
	"github.com/hookscope/hookscope/risk"
)

const (
	// maxBudgetPods bounds the backend pods one analysis reads from the
	// API server; the pods past it are judged by a later analysis.
	maxBudgetPods = 100
	// podMemory is how long a backend pod's labels and owner, read once,
	// are trusted: a pod's name is not reused (a StatefulSet's is, but
	// seldom with other labels).
	podMemory = 10 * time.Minute
	// caWakeAtMost bounds the wait before the caBundles are judged again
	// with nothing changing.
	caWakeAtMost = 24 * time.Hour
	// wakeSlack puts a wake after the time it is for, so that the crossing
	// has passed when the caBundles are judged.
	wakeSlack = time.Second
)

// calloutRisks are the risks of the resolved call-outs that their
// configurations and the NetworkPolicies do not show: a caBundle whose CA
// expires within the certificate horizon, and backend pods a drain can
// evict all at once, or never.
func (a *Agent) calloutRisks(v *view) []risk.Risk {
	ws := make([]callout.Webhook, 0, len(v.webhooks))
	for _, w := range v.webhooks {
		ws = append(ws, w)
	}
	m := &a.riskMem
	cas, next := risk.CABundles(ws, a.cfg.CertHorizon, time.Now())
	// The analysis follows object changes, and a CA expires with none.
	m.wakeAt(next, a.wakeObjects)
	return append(cas, a.budgetRisks(m, ws)...)
}

// budgetRisks judges the PodDisruptionBudgets of the call-outs' backend
// pods, once the cluster's budgets are listed.
func (a *Agent) budgetRisks(m *riskMemory, ws []callout.Webhook) []risk.Risk {
	budgets, listed := a.inv.PodDisruptionBudgets()
	if !listed {
		return nil // not yet, or not allowed: a pod no budget selects may have one
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return risk.DisruptionBudgets(ws, budgets, m.podReader(ctx, a.inv, a.cfg.Logger, ws))
}

// riskMemory is what one agent's risk analyses keep between them (its
// zero value is ready).
type riskMemory struct {
	mu   sync.Mutex
	wake *time.Timer
	pods map[string]readPod // by namespace/name
}

// readPod is what a backend pod said of itself, and when.
type readPod struct {
	pod *corev1.Pod
	at  time.Time
}

// wakeAt calls wake once, shortly after next (within caWakeAtMost),
// instead of whatever it was to call; a zero next calls nothing.
func (m *riskMemory) wakeAt(next time.Time, wake func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.wake != nil {
		m.wake.Stop()
		m.wake = nil
	}
	if next.IsZero() {
		return
	}
	m.wake = time.AfterFunc(min(time.Until(next)+wakeSlack, caWakeAtMost), wake)
}

// podReader reads backend pods, each once per podMemory and at most
// maxBudgetPods from the API server per reader; it forgets the pods that
// are no longer backends of ws.
func (m *riskMemory) podReader(ctx context.Context, inv *inventory.Inventory, log *slog.Logger, ws []callout.Webhook) func(callout.PodRef) *corev1.Pod {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	backends := map[string]bool{}
	for _, w := range ws {
		for _, b := range w.Backends {
			if b.Pod != nil {
				backends[b.Pod.Namespace+"/"+b.Pod.Name] = true
			}
		}
	}
	if m.pods == nil {
		m.pods = map[string]readPod{}
	}
	for k, r := range m.pods {
		if !backends[k] || now.Sub(r.at) > podMemory {
			delete(m.pods, k)
		}
	}
	reads := 0
	return func(ref callout.PodRef) *corev1.Pod {
		m.mu.Lock()
		defer m.mu.Unlock()
		k := ref.Namespace + "/" + ref.Name
		if r, ok := m.pods[k]; ok {
			return r.pod
		}
		if reads >= maxBudgetPods {
			return nil
		}
		reads++
		p, err := inv.Pod(ctx, ref.Namespace, ref.Name)
		if err != nil {
			log.Debug("reading a backend pod for its PodDisruptionBudgets", "pod", k, "err", err)
			return nil // read again next time
		}
		p = drainFacts(p)
		m.pods[k] = readPod{pod: p, at: now}
		return p
	}
}

// drainFacts keeps of p what says whether a drain evicts it and which
// budgets select it: its labels, its owners and whether it is static.
func drainFacts(p *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID,
		Labels: p.Labels, OwnerReferences: p.OwnerReferences}}
	if v, ok := p.Annotations[corev1.MirrorPodAnnotationKey]; ok {
		out.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: v}
	}
	return out
}
