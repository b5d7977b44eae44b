package agent

import (
	"context"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/dataplane"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/risk"
)

// maxPolicyPods bounds the pods one NetworkPolicy analysis reads from the
// API server; only pods in namespaces with a NetworkPolicy are read.
const maxPolicyPods = 100

// policyRisks are the webhooks whose pods a NetworkPolicy shuts the API
// server out of, before any call fails.
func (a *Agent) policyRisks(v *view) []risk.Risk {
	nps := a.inv.NetworkPolicies()
	if len(nps) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ws []callout.Webhook
	for _, w := range v.webhooks {
		if w.Service != nil && inNamespace(nps, w.Service.Namespace) {
			ws = append(ws, w)
		}
	}
	read := 0
	pods := map[callout.PodRef]*corev1.Pod{}
	return risk.NetworkPolicies(ws, nps, func(ref callout.PodRef) *corev1.Pod {
		if p, ok := pods[ref]; ok {
			return p
		}
		if read >= maxPolicyPods {
			return nil
		}
		read++
		p, err := a.inv.Pod(ctx, ref.Namespace, ref.Name)
		if err != nil {
			a.cfg.Logger.Debug("reading a backend pod for its NetworkPolicies", "pod", ref.Namespace+"/"+ref.Name, "err", err)
			p = nil
		}
		pods[ref] = p
		return p
	})
}

// policyDenies says, when NetworkPolicies select backend b's pod and admit
// nothing on its port from outside the cluster's pods, which ones.
func (a *Agent) policyDenies(b callout.Backend) (string, bool) {
	if a.inv == nil || b.Pod == nil {
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nps, err := a.inv.NetworkPoliciesIn(ctx, b.Pod.Namespace)
	if err != nil || len(nps) == 0 {
		return "", false
	}
	pod, err := a.inv.Pod(ctx, b.Pod.Namespace, b.Pod.Name)
	if err != nil {
		return "", false
	}
	adm := risk.AdmitsCallers(pod, b.Addr.Port(), nps)
	if !adm.Denied() {
		return "", false
	}
	return adm.Explain(b.Pod.Namespace+"/"+b.Pod.Name, b.Addr.Port()), true
}

func inNamespace(nps []*networkingv1.NetworkPolicy, ns string) bool {
	return slices.ContainsFunc(nps, func(np *networkingv1.NetworkPolicy) bool { return np.Namespace == ns })
}

// withPolicy names the NetworkPolicy that shuts the API server out of b,
// when one does: whatever the SYNs show (a CNI may drop them on the node,
// before the pod's interface), the packets stop at the pod's policy.
func (a *Agent) withPolicy(b callout.Backend, v dataplane.Verdict) dataplane.Verdict {
	why, ok := a.policyDenies(b)
	if !ok {
		return v
	}
	v.Class = findings.DroppedAtPod
	if v.Detail != "" {
		v.Detail += "; "
	}
	v.Detail += why
	return v
}
