// Package risk reads webhook configurations and says which webhooks can
// take the cluster down before any of them fails: a Fail webhook on the
// pods the CNI runs in, on node heartbeats, on its own pods, and so on.
// Matching uses the API server's own predicates (rules,
// namespaceSelector, objectSelector) on synthetic requests, so "matches"
// means what the API server would do, scope and subresources included.
//
// It judges configurations only; it imports the call-out model (callout)
// and no other producer.
package risk

import (
	"cmp"
	"slices"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/hookscope/hookscope/callout"
)

// Kind names how a webhook can break the cluster before it does. The
// values are shown to users and used as metric attributes: never rename
// one.
type Kind string

// The risk kinds. Unless noted, a kind is only reported for webhooks with
// failurePolicy Fail (the default), because only those reject writes when
// they are down.
const (
	// BlocksSystemPods: the webhook matches CREATE of kube-system pods
	// (aws-node, kube-proxy, CoreDNS): the CNI cannot be recreated and
	// nodes go NotReady.
	BlocksSystemPods Kind = "BlocksSystemPods"
	// BlocksLeases: the webhook matches leases in kube-system or
	// kube-node-lease: node heartbeats and leader election fail.
	BlocksLeases Kind = "BlocksLeases"
	// BlocksNodes: the webhook matches nodes or nodes/status.
	BlocksNodes Kind = "BlocksNodes"
	// BlocksAuth: the webhook matches TokenReviews, SubjectAccessReviews
	// or CertificateSigningRequests (node bootstrap).
	BlocksAuth Kind = "BlocksAuth"
	// SelfDeadlock: the webhook matches CREATE of its own backend pods, so
	// once they are all gone they can never come back.
	SelfDeadlock Kind = "SelfDeadlock"
	// NoExclusion: the webhook matches every resource or every pod and has
	// no namespaceSelector, objectSelector or matchConditions.
	NoExclusion Kind = "NoExclusion"
	// SingleReplica: one backend pod, or all backend pods on one node.
	// Reported for Ignore webhooks too, as info.
	SingleReplica Kind = "SingleReplica"
	// StackedTimeouts: the webhooks on one request path can together hold
	// it for the 10 s lease-renewal budget or longer. Reported for every
	// webhook on the path, whatever its failurePolicy: latency adds up
	// either way.
	StackedTimeouts Kind = "StackedTimeouts"
	// FailOpenSecurity: failurePolicy Ignore; writes pass unchecked while
	// the webhook is down. Info.
	FailOpenSecurity Kind = "FailOpenSecurity"
	// InsecureSkipTLSVerify: an APIService the API server calls without
	// verifying its certificate. Info: metrics-server ships so.
	InsecureSkipTLSVerify Kind = "InsecureSkipTLSVerify"
	// InvalidConfiguration: the API server would reject the configuration;
	// or it stores it but the webhook can never be called (a Service name
	// no Service can have, a caBundle with no certificate); or hookscope
	// cannot evaluate it (a selector that does not parse); or a selector is
	// so large it was generated, not written (warning). Reported whatever
	// the failurePolicy.
	InvalidConfiguration Kind = "InvalidConfiguration"
	// NetworkPolicyDenies: a NetworkPolicy isolates the webhook's backend
	// pods for ingress and nothing admits the API server, which is not a
	// pod, on the port it dials. Reported whatever the failurePolicy.
	NetworkPolicyDenies Kind = "NetworkPolicyDenies"
)

// Severity says how soon a risk can hurt. The values are shown to users
// and used as metric attributes.
type Severity string

// The severities, most urgent first.
const (
	// Critical: the cluster's own machinery (nodes, leases, system pods,
	// authentication) stops while the webhook is down, or the webhook can
	// never be called.
	Critical Severity = "critical"
	// Warning: writes are rejected while the webhook is down, or a
	// configuration makes an outage likely.
	Warning Severity = "warning"
	// Info: nothing is rejected, but something passes unchecked.
	Info Severity = "info"
)

// rank orders severities for the report: critical first.
func (s Severity) rank() int {
	switch s {
	case Critical:
		return 0
	case Warning:
		return 1
	default:
		return 2
	}
}

// Risk is one way a webhook can break the cluster, found from its
// configuration alone.
type Risk struct {
	Webhook  callout.Ref `json:"webhook"`
	Kind     Kind        `json:"kind"`
	Severity Severity    `json:"severity"`
	// Detail is one sentence an SRE understands, naming the objects.
	Detail string `json:"detail"`
	// Fix is the concrete change that removes the risk.
	Fix string `json:"fix"`
}

const (
	// defaultTimeout is the API server's default timeoutSeconds.
	defaultTimeout = 10
	// leaseBudget is how long a write may take before lease renewal
	// fails: leader election's renewDeadline in kube-controller-manager
	// and kube-scheduler is 10 s, and the kubelet renews its node lease
	// every 10 s.
	leaseBudget = 10

	// excludeSystem is the namespaceSelector term every fix suggests.
	excludeSystem = "{key: " + corev1.LabelMetadataName + ", operator: NotIn, values: [kube-system]}"
)

// Analyze evaluates every webhook of the configurations. namespaces are
// the cluster's Namespace objects (for namespaceSelector evaluation, with
// their labels); kube-system, kube-node-lease and default are assumed to
// exist even when absent. backends are the webhook backend pods known to
// the caller (may be nil). Malformed configurations become
// InvalidConfiguration risks; analysis of the other webhooks continues.
// Nil configurations and namespaces are skipped. The result is sorted:
// critical first, then by webhook, kind and detail.
func Analyze(vwcs []*admissionv1.ValidatingWebhookConfiguration, mwcs []*admissionv1.MutatingWebhookConfiguration,
	namespaces []*corev1.Namespace, backends map[callout.Ref][]callout.Backend) []Risk {
	a := newAnalyzer(namespaces)
	var out []Risk
	var valid []*hook
	for _, acc := range callout.Hooks(vwcs, mwcs) {
		h := newHook(acc)
		out = append(out, h.invalid...)
		if h.unevaluable {
			continue
		}
		valid = append(valid, h)
		out = append(out, a.hookRisks(h, backends[h.ref])...)
	}
	out = append(out, a.stackedTimeouts(valid)...)
	sortRisks(out)
	return out
}

// sortRisks puts the most urgent first, then groups by webhook.
func sortRisks(rs []Risk) {
	slices.SortFunc(rs, func(x, y Risk) int {
		return cmp.Or(
			cmp.Compare(x.Severity.rank(), y.Severity.rank()),
			cmp.Compare(x.Webhook.Kind, y.Webhook.Kind),
			cmp.Compare(x.Webhook.Configuration, y.Webhook.Configuration),
			cmp.Compare(x.Webhook.Name, y.Webhook.Name),
			cmp.Compare(x.Kind, y.Kind),
			cmp.Compare(x.Detail, y.Detail),
		)
	})
}
