package risk

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hookscope/hookscope/callout"
)

// The API server is not a pod: on EKS it is the managed control plane,
// talking from its network interfaces in the VPC; elsewhere it is a
// process or a host-network pod on a control-plane node. So a
// podSelector or namespaceSelector peer never admits it. Only a rule with
// no from (every source) admits it for sure, and an ipBlock peer admits
// it when its addresses are inside the block, which hookscope cannot see
// from the cluster's objects.

// Admission says whether the NetworkPolicies let a caller that is not a
// pod reach one backend pod's port.
type Admission struct {
	Isolated bool // some policy selects the pod for Ingress
	Admitted bool // a rule admits every source (no from) on the port
	// IPBlocks are the CIDRs of ipBlock peers that admit the port (the
	// control plane must be inside one), sorted. Their except ranges are
	// not listed.
	IPBlocks []string
	// Policies are namespace/name of the policies that select the pod for
	// Ingress, sorted.
	Policies []string
}

// Denied reports whether the pod is isolated and no rule admits a caller
// that is not a pod on the port: the API server's connections are
// dropped.
func (a Admission) Denied() bool { return a.Isolated && !a.Admitted && len(a.IPBlocks) == 0 }

// OnlyIPBlocks reports whether only ipBlock peers admit the port: the API
// server reaches the pod only if its addresses are inside one of them.
func (a Admission) OnlyIPBlocks() bool { return a.Isolated && !a.Admitted && len(a.IPBlocks) > 0 }

// AdmitsCallers evaluates the policies for pod's TCP port as Kubernetes
// defines them: a policy selects pods of its own namespace by its
// podSelector, applies to ingress when its policyTypes say Ingress or are
// empty, and policies add up. Nil policies and policies whose podSelector
// does not parse are skipped. A nil pod or a host-network pod is never
// isolated: NetworkPolicy does not apply to it.
func AdmitsCallers(pod *corev1.Pod, port uint16, policies []*networkingv1.NetworkPolicy) Admission {
	var a Admission
	if pod == nil || pod.Spec.HostNetwork {
		return a
	}
	for _, np := range policies {
		if np == nil || np.Namespace != pod.Namespace || !appliesToIngress(np) {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		a.Isolated = true
		a.Policies = append(a.Policies, np.Namespace+"/"+np.Name)
		for _, r := range np.Spec.Ingress {
			if !portAdmitted(r.Ports, pod, port) {
				continue
			}
			if len(r.From) == 0 {
				a.Admitted = true
			}
			for _, peer := range r.From {
				if peer.IPBlock != nil {
					a.IPBlocks = append(a.IPBlocks, peer.IPBlock.CIDR)
				}
			}
		}
	}
	slices.Sort(a.Policies)
	a.Policies = slices.Compact(a.Policies)
	slices.Sort(a.IPBlocks)
	a.IPBlocks = slices.Compact(a.IPBlocks)
	return a
}

// appliesToIngress: policyTypes name Ingress, or are empty (Ingress is
// then implied whatever the rules say).
func appliesToIngress(np *networkingv1.NetworkPolicy) bool {
	return len(np.Spec.PolicyTypes) == 0 || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
}

// portAdmitted says whether a rule's ports take in TCP port on pod. No
// ports means every port.
func portAdmitted(ports []networkingv1.NetworkPolicyPort, pod *corev1.Pod, port uint16) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.String:
			if namedPort(pod, p.Port.StrVal, port) {
				return true
			}
		case p.Port.IntVal == int32(port):
			return true
		case p.EndPort != nil && p.Port.IntVal <= int32(port) && int32(port) <= *p.EndPort:
			return true
		}
	}
	return false
}

// namedPort says whether one of pod's containers declares TCP port under
// name.
func namedPort(pod *corev1.Pod, name string, port uint16) bool {
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == name && cp.ContainerPort == int32(port) &&
				(cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) {
				return true
			}
		}
	}
	return false
}

// Explain is the operator's sentence for a: which policies select pod
// and what they let through to TCP port from outside the cluster's pods.
func (a Admission) Explain(pod string, port uint16) string {
	who, s := a.selecting()
	switch {
	case !a.Isolated:
		return fmt.Sprintf("no NetworkPolicy selects pod %s for ingress: nothing stops the API server's connections to TCP %d", pod, port)
	case a.Admitted:
		return fmt.Sprintf("%s select%s pod %s for ingress and a rule admits TCP %d from every source: the API server's connections reach the pod", who, s, pod, port)
	case len(a.IPBlocks) > 0:
		block := "ipBlock " + a.IPBlocks[0] + ": the control plane's addresses must be inside it"
		if len(a.IPBlocks) > 1 {
			block = "ipBlocks " + list(a.IPBlocks, 4) + ": the control plane's addresses must be inside one of them"
		}
		return fmt.Sprintf("%s select%s pod %s for ingress and admit%s TCP %d from outside the cluster's pods only from %s (hookscope cannot know them), or the API server's connections are dropped at the pod",
			who, s, pod, s, port, block)
	}
	return fmt.Sprintf("%s select%s pod %s for ingress and admit%s nothing on TCP %d from outside the cluster's pods: the API server's connections are dropped at the pod",
		who, s, pod, s, port)
}

// selecting names a's policies as the subject of a sentence, and the
// verb ending that agrees with it: ("NetworkPolicy a/b", "s") or
// ("NetworkPolicies a/b and a/c", "").
func (a Admission) selecting() (string, string) {
	if len(a.Policies) == 1 {
		return "NetworkPolicy " + a.Policies[0], "s"
	}
	return "NetworkPolicies " + list(a.Policies, 3), ""
}

// ruleTarget names where a new ingress rule goes: any one selecting
// policy is enough, since rules add up.
func (a Admission) ruleTarget() string {
	if len(a.Policies) == 1 {
		return "NetworkPolicy " + a.Policies[0]
	}
	return "any one of NetworkPolicies " + list(a.Policies, 3) + " (their rules add up)"
}

// NetworkPolicies judges every webhook whose Service backends are pods:
// pod returns the backend pod (nil when unknown). It reports one
// NetworkPolicyDenies risk per webhook whose backend pods the policies
// cut off from the API server, whatever the failurePolicy: critical when
// every backend pod is cut off and failurePolicy is Fail, a warning
// otherwise. Webhooks called by URL and backends without a known pod are
// not judged; host-network pods are never cut off, since NetworkPolicy
// does not apply to them. The result is sorted like Analyze's.
func NetworkPolicies(webhooks []callout.Webhook, policies []*networkingv1.NetworkPolicy, pod func(callout.PodRef) *corev1.Pod) []Risk {
	var out []Risk
	for _, w := range webhooks {
		if r, ok := networkPolicyRisk(w, policies, pod); ok {
			out = append(out, r)
		}
	}
	sortRisks(out)
	return out
}

// judgedPod is one backend pod's name, the port the API server dials on
// it and what the policies let through.
type judgedPod struct {
	name string
	port uint16
	adm  Admission
}

// networkPolicyRisk judges one webhook's backend pods, each once.
func networkPolicyRisk(w callout.Webhook, policies []*networkingv1.NetworkPolicy, pod func(callout.PodRef) *corev1.Pod) (Risk, bool) {
	if w.Service == nil || pod == nil {
		return Risk{}, false
	}
	seen := map[string]bool{}
	var denied, fenced []judgedPod
	for _, b := range w.Backends {
		if b.Pod == nil {
			continue
		}
		name := b.Pod.Namespace + "/" + b.Pod.Name
		if seen[name] {
			continue
		}
		// A host-network pod is judged too: never isolated, it counts
		// among the pods the API server still reaches.
		p := pod(*b.Pod)
		if p == nil {
			continue
		}
		seen[name] = true
		j := judgedPod{name: name, port: b.Addr.Port(), adm: AdmitsCallers(p, b.Addr.Port(), policies)}
		switch {
		case j.adm.Denied():
			denied = append(denied, j)
		case j.adm.OnlyIPBlocks():
			fenced = append(fenced, j)
		}
	}
	switch {
	case len(denied) > 0:
		return deniedRisk(w, denied, len(seen)), true
	case len(fenced) > 0:
		return fencedRisk(w, fenced, len(seen)), true
	}
	return Risk{}, false
}

// deniedRisk: the policies drop the API server's connections to some or
// all of w's backend pods.
func deniedRisk(w callout.Webhook, denied []judgedPod, pods int) Risk {
	first := denied[0]
	sev := Warning
	var effect string
	switch {
	case len(denied) == pods && w.FailsClosed():
		sev = Critical
		effect = "The webhook can never be called, so every write it matches is rejected."
	case len(denied) == pods:
		effect = "The webhook is never called, so its checks never run: every write it matches passes unchecked."
	default:
		effect = fmt.Sprintf("Calls to those %d of its %d backend pods time out, and the writes they carry %s.", len(denied), pods, carried(w))
		if len(denied) == 1 {
			effect = fmt.Sprintf("Calls to that pod (1 of its %d backend pods) time out, and the writes they carry %s.", pods, carried(w))
		}
	}
	return Risk{
		Webhook:  w.Ref,
		Kind:     NetworkPolicyDenies,
		Severity: sev,
		Detail: fmt.Sprintf("webhook %s (failurePolicy %s): %s%s. %s",
			w.Ref, failurePolicy(w), first.adm.Explain(first.name, first.port), likewise(len(denied), pods), effect),
		Fix: fmt.Sprintf("add an ingress rule to %s that admits TCP %d from the control plane (an ipBlock of the VPC CIDR on EKS, or no from at all)",
			first.adm.ruleTarget(), first.port),
	}
}

// fencedRisk: only ipBlock peers admit the API server to w's backend
// pods; whether its addresses are inside them is not in the cluster's
// objects.
func fencedRisk(w callout.Webhook, fenced []judgedPod, pods int) Risk {
	first := fenced[0]
	inside := first.adm.IPBlocks[0]
	if len(first.adm.IPBlocks) > 1 {
		inside = "one of " + list(first.adm.IPBlocks, 4)
	}
	return Risk{
		Webhook:  w.Ref,
		Kind:     NetworkPolicyDenies,
		Severity: Warning,
		Detail: fmt.Sprintf("webhook %s (failurePolicy %s): %s%s. When they are dropped, calls time out and the writes they carry %s.",
			w.Ref, failurePolicy(w), first.adm.Explain(first.name, first.port), likewise(len(fenced), pods), carried(w)),
		Fix: fmt.Sprintf("check that the control plane's addresses are inside %s (on EKS, the cluster's VPC CIDR, where its network interfaces are), or add an ingress rule to %s that admits TCP %d with no from at all",
			inside, first.adm.ruleTarget(), first.port),
	}
}

// likewise counts the backend pods besides the one named that the
// policies treat the same way.
func likewise(n, pods int) string {
	if n <= 1 {
		return ""
	}
	return fmt.Sprintf(" (likewise %d more of its %d backend pods)", n-1, pods)
}

// carried is what happens to the writes a call to w carries when it
// times out.
func carried(w callout.Webhook) string {
	if w.FailsClosed() {
		return "are rejected"
	}
	return "pass unchecked"
}

// failurePolicy is w's failurePolicy as the API server applies it.
func failurePolicy(w callout.Webhook) string {
	if w.FailsClosed() {
		return "Fail"
	}
	return "Ignore"
}
