package risk

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apiserver/pkg/admission"

	"github.com/hookscope/hookscope/callout"
)

// hookRisks are the kinds judged from one webhook alone.
func (a *analyzer) hookRisks(h *hook, backends []callout.Backend) []Risk {
	var out []Risk
	keep := func(r Risk, ok bool) {
		if ok {
			out = append(out, r)
		}
	}
	// matchConditions are CEL hookscope does not evaluate; say so rather
	// than stay quiet about a webhook that may still match.
	caveat := ""
	if h.conditions > 0 {
		caveat = fmt.Sprintf(", unless its %d matchConditions exclude them (not evaluated)", h.conditions)
	}
	if h.failClosed {
		keep(a.blocksSystemPods(h, caveat))
		keep(a.blocksLeases(h, caveat))
		keep(a.blocksNodes(h, caveat))
		keep(a.blocksAuth(h, caveat))
		keep(a.selfDeadlock(h, backends, caveat))
		keep(noExclusion(h))
	} else {
		keep(failOpen(h))
	}
	keep(singleReplica(h, backends))
	return out
}

func (a *analyzer) blocksSystemPods(h *hook, caveat string) (Risk, bool) {
	pods := a.matching(h, systemPodRequests)
	if len(pods) == 0 {
		return Risk{}, false
	}
	fix := "add a namespaceSelector that excludes kube-system: matchExpressions " + excludeSystem
	if !h.nsSel.Empty() {
		fix = "its namespaceSelector still selects kube-system: add " + excludeSystem + " to its matchExpressions"
	}
	return h.risk(BlocksSystemPods, Critical,
		fmt.Sprintf("webhook %s (failurePolicy Fail) matches CREATE of pods in kube-system (%s)%s: while it is down, the CNI, kube-proxy and CoreDNS pods cannot be recreated, so nodes go NotReady and DNS fails.",
			h.ref, list(pods, 5), caveat), fix), true
}

func (a *analyzer) blocksLeases(h *hook, caveat string) (Risk, bool) {
	leases := a.matching(h, leaseRequests)
	if len(leases) == 0 {
		return Risk{}, false
	}
	return h.risk(BlocksLeases, Critical,
		fmt.Sprintf("webhook %s (failurePolicy Fail) matches %s%s: while it is down, nodes cannot renew their leases and go NotReady, and kube-controller-manager and kube-scheduler lose leader election.",
			h.ref, list(leases, 4), caveat),
		"remove leases (coordination.k8s.io) from its rules, or add a namespaceSelector that excludes kube-system and kube-node-lease: {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, kube-node-lease]}"), true
}

func (a *analyzer) blocksNodes(h *hook, caveat string) (Risk, bool) {
	nodes := a.matching(h, nodeRequests)
	if len(nodes) == 0 {
		return Risk{}, false
	}
	return h.risk(BlocksNodes, Critical,
		fmt.Sprintf("webhook %s (failurePolicy Fail) matches %s%s: while it is down, kubelets cannot register or report node status, and nodes go NotReady.",
			h.ref, list(nodes, 3), caveat),
		"remove nodes and nodes/status from its rules (a namespaceSelector cannot exclude cluster-scoped objects), or set failurePolicy Ignore"), true
}

func (a *analyzer) blocksAuth(h *hook, caveat string) (Risk, bool) {
	auth := a.matching(h, authRequests)
	if len(auth) == 0 {
		return Risk{}, false
	}
	return h.risk(BlocksAuth, Critical,
		fmt.Sprintf("webhook %s (failurePolicy Fail) matches %s%s: while it is down, token authentication, authorization checks or node certificate issuance fail, and new nodes cannot join.",
			h.ref, list(auth, 3), caveat),
		"remove tokenreviews, subjectaccessreviews and certificatesigningrequests from its rules, or set failurePolicy Ignore"), true
}

// noExclusion: a Fail webhook on every resource or every pod with nothing
// that narrows it.
func noExclusion(h *hook) (Risk, bool) {
	if !h.nsSel.Empty() || !h.objSel.Empty() || h.conditions > 0 {
		return Risk{}, false
	}
	what := ""
	if h.rulesMatch(anyResource) {
		what = "every resource"
	} else if h.rulesMatch(systemPodRequests[0].attr) {
		what = "every pod"
	}
	if what == "" {
		return Risk{}, false
	}
	return h.risk(NoExclusion, Warning,
		fmt.Sprintf("webhook %s (failurePolicy Fail) matches %s in every namespace, kube-system and its own included, with no namespaceSelector, objectSelector or matchConditions to exclude anything.", h.ref, what),
		"narrow its rules to the resources it enforces and add a namespaceSelector that excludes kube-system and its own namespace: {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, <its namespace>]}"), true
}

// failOpen: an Ignore webhook with rules lets writes through unchecked
// while it is down.
func failOpen(h *hook) (Risk, bool) {
	rs := h.GetRules()
	if len(rs) == 0 {
		return Risk{}, false
	}
	return h.risk(FailOpenSecurity, Info,
		fmt.Sprintf("webhook %s has failurePolicy Ignore: writes pass unchecked while the webhook is down (it matches %s).", h.ref, describeRules(rs)),
		"if it enforces a security policy, alert on its availability and run at least 2 replicas: writes admitted while it was down are never re-checked"), true
}

// selfDeadlock: the webhook matches CREATE of pods where its own backend
// runs. Backend pod labels are unknown here, so only an empty
// objectSelector counts as matching them.
func (a *analyzer) selfDeadlock(h *hook, backends []callout.Backend, caveat string) (Risk, bool) {
	if !h.objSel.Empty() {
		return Risk{}, false
	}
	nsSet := map[string]bool{}
	var pods []string
	for _, b := range backends {
		if b.Pod != nil && b.Pod.Namespace != "" {
			nsSet[b.Pod.Namespace] = true
			pods = append(pods, b.Pod.Namespace+"/"+b.Pod.Name)
		}
	}
	svc := ""
	// A namespace no namespace can be named (InvalidConfiguration) holds
	// no pods.
	if s := h.service(); s != nil && s.Namespace != "" && len(validation.IsDNS1123Label(s.Namespace)) == 0 {
		nsSet[s.Namespace] = true
		svc = "Service " + s.Namespace + "/" + s.Name
	}
	var hit []string
	for _, ns := range slices.Sorted(maps.Keys(nsSet)) {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns}}
		if a.calls(h, newAttr(pod, podGVK, podGVR, "", ns, "", admission.Create)) {
			hit = append(hit, ns)
		}
	}
	if len(hit) == 0 {
		return Risk{}, false
	}
	var who []string
	if svc != "" {
		who = append(who, svc)
	}
	if len(pods) > 0 {
		sort.Strings(pods)
		who = append(who, "pods "+list(slices.Compact(pods), 3))
	}
	runs := ""
	if len(who) > 0 {
		runs = " (" + strings.Join(who, ", ") + ")"
	}
	return h.risk(SelfDeadlock, Critical,
		fmt.Sprintf("webhook %s (failurePolicy Fail) matches CREATE of pods in %s, where its own backend runs%s%s: if all its pods die, their replacements are rejected by the webhook they would serve, and it never comes back.",
			h.ref, list(hit, 3), runs, caveat),
		fmt.Sprintf("add a namespaceSelector that excludes its namespace: {key: kubernetes.io/metadata.name, operator: NotIn, values: [%s]}, or an objectSelector that excludes its own pods", strings.Join(hit, ", "))), true
}

// singleReplica: one backend pod, or every backend pod on one node. A
// backend without a pod reference counts by its address.
func singleReplica(h *hook, backends []callout.Backend) (Risk, bool) {
	if len(backends) == 0 {
		return Risk{}, false
	}
	pods := map[string]bool{}
	nodes := map[string]bool{}
	nodeKnown := true
	var names []string
	for _, b := range backends {
		key := b.Addr.Addr().String()
		if b.Pod != nil {
			key = b.Pod.Namespace + "/" + b.Pod.Name
			if b.Pod.Node == "" {
				nodeKnown = false
			}
			nodes[b.Pod.Node] = true
		} else {
			nodeKnown = false
		}
		if !pods[key] {
			pods[key] = true
			names = append(names, key)
		}
	}
	sort.Strings(names)
	var detail string
	switch {
	case len(pods) == 1:
		detail = fmt.Sprintf("webhook %s is served by one pod (%s)", h.ref, names[0])
	case nodeKnown && len(nodes) == 1:
		var node string
		for n := range nodes {
			node = n
		}
		detail = fmt.Sprintf("webhook %s is served by %d pods all on node %s (%s)", h.ref, len(pods), node, list(names, 3))
	default:
		return Risk{}, false
	}
	sev, effect := Warning, "writes it matches are rejected"
	if !h.failClosed {
		sev, effect = Info, "writes it matches pass unchecked"
	}
	return h.risk(SingleReplica, sev, detail+": a rollout, eviction or node drain leaves it with no backend, and then "+effect+".",
		"run at least 2 replicas spread across nodes (topologySpreadConstraints or pod anti-affinity) with a PodDisruptionBudget of minAvailable 1"), true
}
