package findings

import "github.com/hookscope/hookscope/callout"

// DeniesCriticalPods: the webhook answers, and denies (allowed=false) the
// pods the cluster itself needs: a kube-system DaemonSet's (the CNI
// aws-node, kube-proxy) or CoreDNS's. Nothing fails to call; a policy
// (Kyverno, Gatekeeper) that does not exempt kube-system has the same
// outcome as a webhook that cannot be called: a node that joins stays
// NotReady, DNS loses replicas. failurePolicy does not apply to a denial.
const DeniesCriticalPods Class = "DeniesCriticalPods"

// deniesFix is what lets the pods a policy webhook denies through.
func deniesFix(w callout.Webhook) string {
	return "exempt the pods the cluster needs from the policy behind webhook " + w.Ref.Name + " (" + w.Ref.Configuration +
		"), which denies them as its message says: Kyverno, an exclude of namespace kube-system or a PolicyException; Gatekeeper, kube-system in the Config's match excludedNamespaces or the constraint's spec.match.excludedNamespaces; " +
		"or exclude kube-system from the webhook's namespaceSelector: {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system]}"
}

// deniesMeanwhile is what holds until the policy exempts them.
const deniesMeanwhile = "; failurePolicy Ignore does not help: the webhook answers, and a denial is final: until the pods are admitted, nodes that join stay NotReady without their CNI pod, and kube-system's controllers cannot replace their pods"
