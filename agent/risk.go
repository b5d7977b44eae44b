package agent

// Risk analysis reads webhook configurations and says which webhooks can
// take the cluster down before any of them fails: a Fail webhook on the
// pods the CNI runs in, on node heartbeats, on its own pods, and so on.
// Matching uses the API server's own predicates (rules, namespaceSelector,
// objectSelector) on synthetic requests, so "matches" means what the API
// server would do, scope and subresources included.

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	risknamespace "k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/namespace"
	riskobject "k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/object"
	riskrules "k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/rules"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// RiskKind names how a webhook can break the cluster before it does.
type RiskKind string

// The risk kinds. Unless noted, a kind is only reported for webhooks with
// failurePolicy Fail (the default), because only those reject writes when
// they are down.
const (
	// BlocksSystemPods: the webhook matches CREATE of kube-system pods
	// (aws-node, kube-proxy, CoreDNS): the CNI cannot be recreated and
	// nodes go NotReady.
	BlocksSystemPods RiskKind = "BlocksSystemPods"
	// BlocksLeases: the webhook matches leases in kube-system or
	// kube-node-lease: node heartbeats and leader election fail.
	BlocksLeases RiskKind = "BlocksLeases"
	// BlocksNodes: the webhook matches nodes or nodes/status.
	BlocksNodes RiskKind = "BlocksNodes"
	// BlocksAuth: the webhook matches TokenReviews, SubjectAccessReviews
	// or CertificateSigningRequests (node bootstrap).
	BlocksAuth RiskKind = "BlocksAuth"
	// SelfDeadlock: the webhook matches CREATE of its own backend pods, so
	// once they are all gone they can never come back.
	SelfDeadlock RiskKind = "SelfDeadlock"
	// NoExclusion: the webhook matches every resource or every pod and has
	// no namespaceSelector, objectSelector or matchConditions.
	NoExclusion RiskKind = "NoExclusion"
	// SingleReplica: one backend pod, or all backend pods on one node.
	// Reported for Ignore webhooks too, as info.
	SingleReplica RiskKind = "SingleReplica"
	// StackedTimeouts: the webhooks on one request path can together hold
	// it for the 10 s lease-renewal budget or longer. Reported for every
	// webhook on the path, whatever its failurePolicy: latency adds up
	// either way.
	StackedTimeouts RiskKind = "StackedTimeouts"
	// FailOpenSecurity: failurePolicy Ignore; writes pass unchecked while
	// the webhook is down. Info.
	FailOpenSecurity RiskKind = "FailOpenSecurity"
	// InvalidConfiguration: the API server would reject the configuration,
	// or hookscope cannot evaluate it (a selector that does not parse).
	InvalidConfiguration RiskKind = "InvalidConfiguration"
)

// Risk is one way a webhook can break the cluster, found from its
// configuration alone.
type Risk struct {
	Webhook  WebhookRef `json:"webhook"`
	Kind     RiskKind   `json:"kind"`
	Severity string     `json:"severity"` // "critical", "warning", "info"
	// Detail is one sentence an SRE understands, naming the objects.
	Detail string `json:"detail"`
	// Fix is the concrete change that removes the risk.
	Fix string `json:"fix"`
}

const (
	riskCritical = "critical"
	riskWarning  = "warning"
	riskInfo     = "info"

	// riskDefaultTimeout is the API server's default timeoutSeconds.
	riskDefaultTimeout = 10
	// riskLeaseBudget is how long a write may take before lease renewal
	// fails: leader election's renewDeadline in kube-controller-manager
	// and kube-scheduler is 10 s, and the kubelet renews its node lease
	// every 10 s.
	riskLeaseBudget = 10

	riskNameLabel = "kubernetes.io/metadata.name"
	// riskExcludeSystem is the namespaceSelector term every fix suggests.
	riskExcludeSystem = "{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system]}"
)

// AnalyzeRisks evaluates every webhook of the configurations. namespaces
// are the cluster's Namespace objects (for namespaceSelector evaluation,
// with their labels); kube-system, kube-node-lease and default are assumed
// to exist even when absent. backends are the webhook backend pods known
// to the caller (may be nil). Malformed configurations become
// InvalidConfiguration risks; analysis of the other webhooks continues.
// The result is sorted: critical first, then by webhook and kind.
func AnalyzeRisks(vwcs []*admissionv1.ValidatingWebhookConfiguration, mwcs []*admissionv1.MutatingWebhookConfiguration,
	namespaces []*corev1.Namespace, backends map[WebhookRef][]BackendTarget) []Risk {
	a := newRiskAnalyzer(namespaces)

	var hooks []*riskHook
	for _, c := range vwcs {
		if c == nil {
			continue
		}
		for i := range c.Webhooks {
			w := &c.Webhooks[i]
			hooks = append(hooks, newRiskHook(riskHookSpec{
				ref:      WebhookRef{Kind: "Validating", Configuration: c.Name, Name: w.Name},
				cc:       w.ClientConfig,
				rules:    w.Rules,
				fp:       w.FailurePolicy,
				mp:       w.MatchPolicy,
				nsSel:    w.NamespaceSelector,
				objSel:   w.ObjectSelector,
				timeout:  w.TimeoutSeconds,
				matchCnd: len(w.MatchConditions),
			}))
		}
	}
	for _, c := range mwcs {
		if c == nil {
			continue
		}
		for i := range c.Webhooks {
			w := &c.Webhooks[i]
			hooks = append(hooks, newRiskHook(riskHookSpec{
				ref:      WebhookRef{Kind: "Mutating", Configuration: c.Name, Name: w.Name},
				mutating: true,
				reinvoke: w.ReinvocationPolicy != nil && *w.ReinvocationPolicy == admissionv1.IfNeededReinvocationPolicy,
				cc:       w.ClientConfig,
				rules:    w.Rules,
				fp:       w.FailurePolicy,
				mp:       w.MatchPolicy,
				nsSel:    w.NamespaceSelector,
				objSel:   w.ObjectSelector,
				timeout:  w.TimeoutSeconds,
				matchCnd: len(w.MatchConditions),
			}))
		}
	}

	var out []Risk
	var valid []*riskHook
	for _, h := range hooks {
		out = append(out, h.invalid...)
		if h.unevaluable {
			continue
		}
		valid = append(valid, h)
		out = append(out, a.hookRisks(h, backends[h.ref])...)
	}
	out = append(out, a.stackedTimeouts(valid)...)

	slices.SortFunc(out, func(x, y Risk) int {
		return cmp.Or(
			cmp.Compare(riskSeverityRank(x.Severity), riskSeverityRank(y.Severity)),
			cmp.Compare(x.Webhook.Kind, y.Webhook.Kind),
			cmp.Compare(x.Webhook.Configuration, y.Webhook.Configuration),
			cmp.Compare(x.Webhook.Name, y.Webhook.Name),
			cmp.Compare(x.Kind, y.Kind),
			cmp.Compare(x.Detail, y.Detail),
		)
	})
	return out
}

func riskSeverityRank(s string) int {
	switch s {
	case riskCritical:
		return 0
	case riskWarning:
		return 1
	default:
		return 2
	}
}

// riskHookSpec is what validating and mutating webhooks have in common.
type riskHookSpec struct {
	ref      WebhookRef
	mutating bool
	reinvoke bool
	cc       admissionv1.WebhookClientConfig
	rules    []admissionv1.RuleWithOperations
	fp       *admissionv1.FailurePolicyType
	mp       *admissionv1.MatchPolicyType
	nsSel    *metav1.LabelSelector
	objSel   *metav1.LabelSelector
	timeout  *int32
	matchCnd int
}

// riskHook is one webhook with its defaults applied and its selectors
// parsed once. It is the selector provider the apiserver predicates ask.
type riskHook struct {
	ref        WebhookRef
	mutating   bool
	reinvoke   bool
	failClosed bool
	equivalent bool
	timeout    int32
	rules      []admissionv1.RuleWithOperations
	nsSel      labels.Selector
	objSel     labels.Selector
	matchCnd   int
	service    *admissionv1.ServiceReference
	// groups are the API groups the rules name; anyGroup is set when one
	// rule names "*". Used to skip rule evaluation that cannot match.
	groups   map[string]bool
	anyGroup bool

	invalid     []Risk
	unevaluable bool // a selector does not parse: nothing else can be said
}

// GetParsedNamespaceSelector implements the namespace predicate's provider.
func (h *riskHook) GetParsedNamespaceSelector() (labels.Selector, error) { return h.nsSel, nil }

// GetParsedObjectSelector implements the object predicate's provider.
func (h *riskHook) GetParsedObjectSelector() (labels.Selector, error) { return h.objSel, nil }

func newRiskHook(s riskHookSpec) *riskHook {
	h := &riskHook{
		ref:        s.ref,
		mutating:   s.mutating,
		reinvoke:   s.reinvoke,
		failClosed: s.fp == nil || *s.fp != admissionv1.Ignore,
		// v1 defaults matchPolicy to Equivalent.
		equivalent: s.mp == nil || *s.mp == admissionv1.Equivalent,
		timeout:    riskDefaultTimeout,
		rules:      s.rules,
		matchCnd:   s.matchCnd,
		service:    s.cc.Service,
		groups:     map[string]bool{},
	}
	invalid := func(detail, fix string) {
		h.invalid = append(h.invalid, Risk{Webhook: s.ref, Kind: InvalidConfiguration, Severity: riskCritical, Detail: detail, Fix: fix})
	}
	if s.timeout != nil {
		h.timeout = max(*s.timeout, 0)
		if *s.timeout < 1 || *s.timeout > 30 {
			invalid(fmt.Sprintf("webhook %s has timeoutSeconds %d: the API server will reject this configuration (allowed 1 to 30).", s.ref, *s.timeout),
				"set timeoutSeconds between 1 and 30; a few seconds is enough for most webhooks")
		}
	}
	if s.fp != nil && *s.fp != admissionv1.Fail && *s.fp != admissionv1.Ignore {
		invalid(fmt.Sprintf("webhook %s has failurePolicy %q: the API server will reject this configuration (Fail or Ignore); hookscope treats it as Fail.", s.ref, *s.fp),
			"set failurePolicy to Fail or Ignore")
	}
	if (s.cc.URL == nil) == (s.cc.Service == nil) {
		what := "neither clientConfig.url nor clientConfig.service"
		if s.cc.URL != nil {
			what = "both clientConfig.url and clientConfig.service"
		}
		invalid(fmt.Sprintf("webhook %s has %s: the API server will reject this configuration, and a stored one cannot be called, so every write it matches fails.", s.ref, what),
			"set exactly one of clientConfig.service (namespace, name, port) or clientConfig.url")
	}

	// A nil selector is what Go literals give; the API server defaults it
	// to {} (everything) before storing, so do the same.
	var err error
	if h.nsSel, err = riskParseSelector(s.nsSel); err != nil {
		err = fmt.Errorf("parsing namespaceSelector: %w", err)
	} else if h.objSel, err = riskParseSelector(s.objSel); err != nil {
		err = fmt.Errorf("parsing objectSelector: %w", err)
	}
	if err != nil {
		h.unevaluable = true
		invalid(fmt.Sprintf("webhook %s cannot be evaluated (%v): the API server will reject this configuration, and if one is stored, every request its rules match fails with an internal error whatever its failurePolicy.", s.ref, err),
			"fix the selector: keys and values must be valid label names and values, In/NotIn need values, Exists/DoesNotExist take none")
	}

	for _, r := range s.rules {
		for _, g := range r.APIGroups {
			if g == "*" {
				h.anyGroup = true
			}
			h.groups[g] = true
		}
	}
	return h
}

func riskParseSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return nil, fmt.Errorf("converting label selector: %w", err)
	}
	return sel, nil
}

// riskAnalyzer holds the namespace view the predicates evaluate against.
type riskAnalyzer struct {
	nsIndexer cache.Indexer
	nsNames   []string // synthesized ones included; sorted in nsClasses
	nsKnown   map[string]bool
	nsMatcher risknamespace.Matcher
	objMatch  riskobject.Matcher
}

func newRiskAnalyzer(namespaces []*corev1.Namespace) *riskAnalyzer {
	a := &riskAnalyzer{
		nsIndexer: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		nsKnown:   map[string]bool{},
	}
	// The matcher's Client is only used when the lister misses; every
	// namespace asked about is added first (ensureNamespace), so none is
	// needed and a nil Client is never reached.
	a.nsMatcher = risknamespace.Matcher{NamespaceLister: corelisters.NewNamespaceLister(a.nsIndexer)}
	for _, ns := range namespaces {
		if ns == nil || ns.Name == "" {
			continue
		}
		a.addNamespace(ns.Name, ns.Labels)
	}
	for _, n := range []string{metav1.NamespaceSystem, corev1.NamespaceNodeLease, metav1.NamespaceDefault} {
		a.ensureNamespace(n)
	}
	return a
}

// addNamespace stores a copy of the namespace with the name label the API
// server puts on every namespace, so selectors on it work even when the
// caller's objects lack it.
func (a *riskAnalyzer) addNamespace(name string, lbls map[string]string) {
	if a.nsKnown[name] {
		return
	}
	a.nsKnown[name] = true
	l := make(map[string]string, len(lbls)+1)
	for k, v := range lbls {
		l[k] = v
	}
	l[riskNameLabel] = name
	// A plain indexer cannot fail to add an object with a name.
	_ = a.nsIndexer.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}})
	a.nsNames = append(a.nsNames, name)
}

func (a *riskAnalyzer) ensureNamespace(name string) {
	if name != "" {
		a.addNamespace(name, nil)
	}
}

// riskRequest is one synthetic request and the words that name it.
type riskRequest struct {
	desc string
	attr admission.Attributes
}

func riskAttr(obj runtime.Object, gvk schema.GroupVersionKind, gvr schema.GroupVersionResource, sub, ns, name string, op admission.Operation) admission.Attributes {
	var old runtime.Object
	if op == admission.Update {
		old = obj
	}
	return admission.NewAttributesRecord(obj, old, gvk, ns, name, gvr, sub, op, nil, false, nil)
}

// riskVersionOverride is a request seen at another version of its
// resource, as the API server retries rules under matchPolicy Equivalent.
type riskVersionOverride struct {
	admission.Attributes
	gvr schema.GroupVersionResource
}

func (o riskVersionOverride) GetResource() schema.GroupVersionResource { return o.gvr }

// rulesMatch is the rules part of the API server's ShouldCallHook. For
// matchPolicy Equivalent it retries at every version a rule names of the
// same group and resource; the API server only does that for versions it
// serves, so this errs on the side of matching.
func (h *riskHook) rulesMatch(attr admission.Attributes) bool {
	gvr := attr.GetResource()
	if !h.anyGroup && !h.groups[gvr.Group] {
		return false
	}
	for _, r := range h.rules {
		m := riskrules.Matcher{Rule: r, Attr: attr}
		if m.Matches() {
			return true
		}
	}
	if !h.equivalent {
		return false
	}
	for _, r := range h.rules {
		for _, v := range r.APIVersions {
			if v == gvr.Version || v == "*" {
				continue
			}
			o := gvr
			o.Version = v
			m := riskrules.Matcher{Rule: r, Attr: riskVersionOverride{Attributes: attr, gvr: o}}
			if m.Matches() {
				return true
			}
		}
	}
	return false
}

// calls reports whether the API server would call h for the request. A
// predicate error counts as a call: the API server then fails the request,
// which blocks it just the same.
func (a *riskAnalyzer) calls(h *riskHook, attr admission.Attributes) bool {
	if !h.rulesMatch(attr) {
		return false
	}
	a.ensureNamespace(attr.GetNamespace())
	ok, err := a.nsMatcher.MatchNamespaceSelector(h, attr)
	if err != nil {
		return true
	}
	if !ok {
		return false
	}
	ok, err = a.objMatch.MatchObjectSelector(h, attr)
	return err != nil || ok
}

// nsMatches reports whether h's namespaceSelector selects the namespace of
// attr, a request in a namespace the analyzer knows.
func (a *riskAnalyzer) nsMatches(h *riskHook, attr admission.Attributes) bool {
	if h.nsSel.Empty() {
		return true
	}
	ok, err := a.nsMatcher.MatchNamespaceSelector(h, attr)
	return err != nil || ok
}

// matching names the requests the API server would send to h; requests
// that differ only in the object's labels share a name and count once.
func (a *riskAnalyzer) matching(h *riskHook, reqs []riskRequest) []string {
	var out []string
	for _, r := range reqs {
		if !slices.Contains(out, r.desc) && a.calls(h, r.attr) {
			out = append(out, r.desc)
		}
	}
	return out
}

// The synthetic requests behind the Blocks* kinds. Object labels are what
// the real objects carry, so an objectSelector is judged on them.
var (
	riskPodGVK  = corev1.SchemeGroupVersion.WithKind("Pod")
	riskPodGVR  = corev1.SchemeGroupVersion.WithResource("pods")
	riskNodeGVK = corev1.SchemeGroupVersion.WithKind("Node")
	riskNodeGVR = corev1.SchemeGroupVersion.WithResource("nodes")
	riskLeaseGV = coordinationv1.SchemeGroupVersion
	riskCSRGV   = certificatesv1.SchemeGroupVersion

	riskSystemPods = func() []riskRequest {
		var out []riskRequest
		for _, p := range []struct{ name, label string }{
			{"aws-node", "aws-node"},
			{"kube-proxy", "kube-proxy"},
			{"coredns", "kube-dns"},
			{"cilium", "cilium"},
			{"calico-node", "calico-node"},
		} {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, GenerateName: p.name + "-",
				Labels: map[string]string{"k8s-app": p.label}}}
			out = append(out, riskRequest{desc: p.name, attr: riskAttr(pod, riskPodGVK, riskPodGVR, "", metav1.NamespaceSystem, "", admission.Create)})
		}
		return out
	}()

	riskLeases = func() []riskRequest {
		var out []riskRequest
		for _, l := range []struct{ ns, name, why string }{
			{corev1.NamespaceNodeLease, "worker", "node heartbeats"},
			{metav1.NamespaceSystem, "kube-controller-manager", "kube-controller-manager and kube-scheduler leader election"},
			{metav1.NamespaceSystem, "kube-scheduler", "kube-controller-manager and kube-scheduler leader election"},
		} {
			for _, op := range []admission.Operation{admission.Update, admission.Create} {
				lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: l.ns, Name: l.name}}
				out = append(out, riskRequest{
					desc: fmt.Sprintf("%s of leases in %s (%s)", op, l.ns, l.why),
					attr: riskAttr(lease, riskLeaseGV.WithKind("Lease"), riskLeaseGV.WithResource("leases"), "", l.ns, l.name, op),
				})
			}
		}
		return out
	}()

	riskNodes = func() []riskRequest {
		var out []riskRequest
		for _, n := range []struct {
			name string
			lbls map[string]string
		}{
			{"worker", map[string]string{"kubernetes.io/os": "linux", "kubernetes.io/hostname": "worker"}},
			{"control-plane", map[string]string{"kubernetes.io/os": "linux", "kubernetes.io/hostname": "control-plane", "node-role.kubernetes.io/control-plane": ""}},
		} {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: n.lbls}}
			for _, r := range []struct {
				op  admission.Operation
				sub string
			}{{admission.Create, ""}, {admission.Update, ""}, {admission.Update, "status"}} {
				res := "nodes"
				if r.sub != "" {
					res += "/" + r.sub
				}
				out = append(out, riskRequest{
					desc: fmt.Sprintf("%s of %s", r.op, res),
					attr: riskAttr(node, riskNodeGVK, riskNodeGVR, r.sub, "", n.name, r.op),
				})
			}
		}
		return out
	}()

	riskAuth = []riskRequest{
		{desc: "CREATE of tokenreviews (authentication of service-account and bootstrap tokens)",
			attr: riskAttr(&authenticationv1.TokenReview{}, authenticationv1.SchemeGroupVersion.WithKind("TokenReview"),
				authenticationv1.SchemeGroupVersion.WithResource("tokenreviews"), "", "", "", admission.Create)},
		{desc: "CREATE of subjectaccessreviews (authorization checks of kubelets and aggregated APIs)",
			attr: riskAttr(&authorizationv1.SubjectAccessReview{}, authorizationv1.SchemeGroupVersion.WithKind("SubjectAccessReview"),
				authorizationv1.SchemeGroupVersion.WithResource("subjectaccessreviews"), "", "", "", admission.Create)},
		{desc: "CREATE of certificatesigningrequests (node bootstrap and kubelet certificate rotation)",
			attr: riskAttr(&certificatesv1.CertificateSigningRequest{}, riskCSRGV.WithKind("CertificateSigningRequest"),
				riskCSRGV.WithResource("certificatesigningrequests"), "", "", "", admission.Create)},
		{desc: "UPDATE of certificatesigningrequests/approval",
			attr: riskAttr(&certificatesv1.CertificateSigningRequest{}, riskCSRGV.WithKind("CertificateSigningRequest"),
				riskCSRGV.WithResource("certificatesigningrequests"), "approval", "", "", admission.Update)},
		{desc: "UPDATE of certificatesigningrequests/status (issuing the certificate)",
			attr: riskAttr(&certificatesv1.CertificateSigningRequest{}, riskCSRGV.WithKind("CertificateSigningRequest"),
				riskCSRGV.WithResource("certificatesigningrequests"), "status", "", "", admission.Update)},
	}

	// riskAnyResource is a request for a resource no rule names: only
	// rules with wildcard groups and resources match it.
	riskAnyResource = riskAttr(nil, schema.GroupVersionKind{Group: "hookscope.invalid", Version: "v1", Kind: "Probe"},
		schema.GroupVersionResource{Group: "hookscope.invalid", Version: "v1", Resource: "probes"}, "", metav1.NamespaceDefault, "", admission.Create)
)

// hookRisks are the kinds judged from one webhook alone.
func (a *riskAnalyzer) hookRisks(h *riskHook, backends []BackendTarget) []Risk {
	var out []Risk
	add := func(kind RiskKind, sev, detail, fix string) {
		out = append(out, Risk{Webhook: h.ref, Kind: kind, Severity: sev, Detail: detail, Fix: fix})
	}
	// matchConditions are CEL hookscope does not evaluate; say so rather
	// than stay quiet about a webhook that may still match.
	caveat := ""
	if h.matchCnd > 0 {
		caveat = fmt.Sprintf(", unless its %d matchConditions exclude them (not evaluated)", h.matchCnd)
	}

	if h.failClosed {
		if pods := a.matching(h, riskSystemPods); len(pods) > 0 {
			fix := "add a namespaceSelector that excludes kube-system: matchExpressions " + riskExcludeSystem
			if !h.nsSel.Empty() {
				fix = "its namespaceSelector still selects kube-system: add " + riskExcludeSystem + " to its matchExpressions"
			}
			add(BlocksSystemPods, riskCritical,
				fmt.Sprintf("webhook %s (failurePolicy Fail) matches CREATE of pods in kube-system (%s)%s: while it is down, the CNI, kube-proxy and CoreDNS pods cannot be recreated, so nodes go NotReady and DNS fails.",
					h.ref, riskList(pods, 5), caveat), fix)
		}
		if leases := a.matching(h, riskLeases); len(leases) > 0 {
			add(BlocksLeases, riskCritical,
				fmt.Sprintf("webhook %s (failurePolicy Fail) matches %s%s: while it is down, nodes cannot renew their leases and go NotReady, and kube-controller-manager and kube-scheduler lose leader election.",
					h.ref, riskList(leases, 4), caveat),
				"remove leases (coordination.k8s.io) from its rules, or add a namespaceSelector that excludes kube-system and kube-node-lease: {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, kube-node-lease]}")
		}
		if nodes := a.matching(h, riskNodes); len(nodes) > 0 {
			add(BlocksNodes, riskCritical,
				fmt.Sprintf("webhook %s (failurePolicy Fail) matches %s%s: while it is down, kubelets cannot register or report node status, and nodes go NotReady.",
					h.ref, riskList(nodes, 3), caveat),
				"remove nodes and nodes/status from its rules (a namespaceSelector cannot exclude cluster-scoped objects), or set failurePolicy Ignore")
		}
		if auth := a.matching(h, riskAuth); len(auth) > 0 {
			add(BlocksAuth, riskCritical,
				fmt.Sprintf("webhook %s (failurePolicy Fail) matches %s%s: while it is down, token authentication, authorization checks or node certificate issuance fail, and new nodes cannot join.",
					h.ref, riskList(auth, 3), caveat),
				"remove tokenreviews, subjectaccessreviews and certificatesigningrequests from its rules, or set failurePolicy Ignore")
		}
		if r, ok := a.selfDeadlock(h, backends, caveat); ok {
			out = append(out, r)
		}
		if h.nsSel.Empty() && h.objSel.Empty() && h.matchCnd == 0 {
			what := ""
			if h.rulesMatch(riskAnyResource) {
				what = "every resource"
			} else if h.rulesMatch(riskSystemPods[0].attr) {
				what = "every pod"
			}
			if what != "" {
				add(NoExclusion, riskWarning,
					fmt.Sprintf("webhook %s (failurePolicy Fail) matches %s in every namespace, kube-system and its own included, with no namespaceSelector, objectSelector or matchConditions to exclude anything.", h.ref, what),
					"narrow its rules to the resources it enforces and add a namespaceSelector that excludes kube-system and its own namespace: {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, <its namespace>]}")
			}
		}
	} else if len(h.rules) > 0 {
		add(FailOpenSecurity, riskInfo,
			fmt.Sprintf("webhook %s has failurePolicy Ignore: writes pass unchecked while the webhook is down (it matches %s).", h.ref, riskDescribeRules(h.rules)),
			"if it enforces a security policy, alert on its availability and run at least 2 replicas: writes admitted while it was down are never re-checked")
	}

	if r, ok := riskSingleReplica(h, backends); ok {
		out = append(out, r)
	}
	return out
}

// selfDeadlock: the webhook matches CREATE of pods where its own backend
// runs. Backend pod labels are unknown here, so only an empty
// objectSelector counts as matching them.
func (a *riskAnalyzer) selfDeadlock(h *riskHook, backends []BackendTarget, caveat string) (Risk, bool) {
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
	if h.service != nil && h.service.Namespace != "" {
		nsSet[h.service.Namespace] = true
		svc = "Service " + h.service.Namespace + "/" + h.service.Name
	}
	nss := make([]string, 0, len(nsSet))
	for ns := range nsSet {
		nss = append(nss, ns)
	}
	sort.Strings(nss)
	var hit []string
	for _, ns := range nss {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns}}
		if a.calls(h, riskAttr(pod, riskPodGVK, riskPodGVR, "", ns, "", admission.Create)) {
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
		who = append(who, "pods "+riskList(slices.Compact(pods), 3))
	}
	runs := ""
	if len(who) > 0 {
		runs = " (" + strings.Join(who, ", ") + ")"
	}
	return Risk{
		Webhook:  h.ref,
		Kind:     SelfDeadlock,
		Severity: riskCritical,
		Detail: fmt.Sprintf("webhook %s (failurePolicy Fail) matches CREATE of pods in %s, where its own backend runs%s%s: if all its pods die, their replacements are rejected by the webhook they would serve, and it never comes back.",
			h.ref, riskList(hit, 3), runs, caveat),
		Fix: fmt.Sprintf("add a namespaceSelector that excludes its namespace: {key: kubernetes.io/metadata.name, operator: NotIn, values: [%s]}, or an objectSelector that excludes its own pods", strings.Join(hit, ", ")),
	}, true
}

// riskSingleReplica: one backend pod, or every backend pod on one node. A
// backend without a pod reference counts by its address.
func riskSingleReplica(h *riskHook, backends []BackendTarget) (Risk, bool) {
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
		detail = fmt.Sprintf("webhook %s is served by %d pods all on node %s (%s)", h.ref, len(pods), node, riskList(names, 3))
	default:
		return Risk{}, false
	}
	sev, effect := riskWarning, "writes it matches are rejected"
	if !h.failClosed {
		sev, effect = riskInfo, "writes it matches pass unchecked"
	}
	return Risk{
		Webhook:  h.ref,
		Kind:     SingleReplica,
		Severity: sev,
		Detail:   detail + ": a rollout, eviction or node drain leaves it with no backend, and then " + effect + ".",
		Fix:      "run at least 2 replicas spread across nodes (topologySpreadConstraints or pod anti-affinity) with a PodDisruptionBudget of minAvailable 1",
	}, true
}

// riskClusterScoped are the built-in cluster-scoped resources a rule may
// name. Anything else (custom resources included) is taken as namespaced.
var riskClusterScoped = map[string]bool{
	"/nodes": true, "/namespaces": true, "/persistentvolumes": true, "/componentstatuses": true,
	"rbac.authorization.k8s.io/clusterroles": true, "rbac.authorization.k8s.io/clusterrolebindings": true,
	"apiextensions.k8s.io/customresourcedefinitions": true, "apiregistration.k8s.io/apiservices": true,
	"storage.k8s.io/storageclasses": true, "storage.k8s.io/csidrivers": true, "storage.k8s.io/csinodes": true,
	"storage.k8s.io/volumeattachments": true, "scheduling.k8s.io/priorityclasses": true,
	"node.k8s.io/runtimeclasses": true, "networking.k8s.io/ingressclasses": true,
	"networking.k8s.io/ipaddresses": true, "networking.k8s.io/servicecidrs": true,
	"certificates.k8s.io/certificatesigningrequests": true, "certificates.k8s.io/clustertrustbundles": true,
	"authentication.k8s.io/tokenreviews": true, "authentication.k8s.io/selfsubjectreviews": true,
	"authorization.k8s.io/subjectaccessreviews": true, "authorization.k8s.io/selfsubjectaccessreviews": true,
	"authorization.k8s.io/selfsubjectrulesreviews": true, "flowcontrol.apiserver.k8s.io/flowschemas": true,
	"flowcontrol.apiserver.k8s.io/prioritylevelconfigurations": true, "resource.k8s.io/deviceclasses": true,
	"admissionregistration.k8s.io/validatingadmissionpolicies":       true,
	"admissionregistration.k8s.io/validatingadmissionpolicybindings": true,
}

// riskExempt are the resources the API server never sends to webhooks.
var riskExempt = map[string]bool{
	"validatingwebhookconfigurations": true, "mutatingwebhookconfigurations": true,
	"validatingadmissionpolicies": true, "validatingadmissionpolicybindings": true,
	"mutatingadmissionpolicies": true, "mutatingadmissionpolicybindings": true,
}

// riskPath is one request path: a resource, a subresource and an
// operation.
type riskPath struct {
	gvr     schema.GroupVersionResource
	sub     string
	op      admission.Operation
	cluster bool
}

func (p riskPath) String() string {
	res := p.gvr.Resource
	if p.gvr.Group != "" {
		res += "." + p.gvr.Group
	}
	if p.sub != "" {
		res += "/" + p.sub
	}
	return string(p.op) + " " + res
}

// riskPaths lists the concrete request paths the rules name, plus the
// control-plane paths a wildcard rule would reach.
func riskPaths(hooks []*riskHook) []riskPath {
	seen := map[riskPath]bool{}
	var out []riskPath
	add := func(group, version, res, sub string, op admission.Operation) {
		if group == "admissionregistration.k8s.io" && riskExempt[res] {
			return
		}
		p := riskPath{gvr: schema.GroupVersionResource{Group: group, Version: version, Resource: res}, sub: sub, op: op,
			cluster: riskClusterScoped[group+"/"+res]}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	add("", "v1", "pods", "", admission.Create)
	add("coordination.k8s.io", "v1", "leases", "", admission.Update)
	add("coordination.k8s.io", "v1", "leases", "", admission.Create)
	add("", "v1", "nodes", "status", admission.Update)
	for _, h := range hooks {
		for _, r := range h.rules {
			var ops []admission.Operation
			for _, op := range r.Operations {
				if op == admissionv1.OperationAll {
					// CONNECT only exists on a few subresources; a "*"
					// rule is about writes.
					ops = append(ops, admission.Create, admission.Update, admission.Delete)
				} else {
					ops = append(ops, admission.Operation(op))
				}
			}
			versions := []string{}
			for _, v := range r.APIVersions {
				if v != "*" {
					versions = append(versions, v)
				}
			}
			if len(versions) == 0 {
				versions = []string{"v1"}
			}
			for _, g := range r.APIGroups {
				if g == "*" {
					continue
				}
				for _, res := range r.Resources {
					name, sub, _ := strings.Cut(res, "/")
					if name == "*" || name == "" {
						continue
					}
					if sub == "*" {
						sub = ""
					}
					for _, v := range versions {
						for _, op := range ops {
							add(g, v, name, sub, op)
						}
					}
				}
			}
		}
	}
	return out
}

// riskNSClass is a set of namespaces every webhook's namespaceSelector
// treats alike, so a path is summed once per class, not per namespace.
type riskNSClass struct {
	names []string
	bits  []uint64
}

func (c *riskNSClass) has(i int) bool { return c.bits[i/64]&(1<<(i%64)) != 0 }

func (a *riskAnalyzer) nsClasses(hooks []*riskHook) []*riskNSClass {
	slices.Sort(a.nsNames) // for a stable report
	words := (len(hooks) + 63) / 64
	byKey := map[string]*riskNSClass{}
	var out []*riskNSClass
	for _, ns := range a.nsNames {
		attr := riskAttr(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns}}, riskPodGVK, riskPodGVR, "", ns, "", admission.Create)
		bits := make([]uint64, words)
		for i, h := range hooks {
			if a.nsMatches(h, attr) {
				bits[i/64] |= 1 << (i % 64)
			}
		}
		var key []byte
		// kube-system and kube-node-lease stay classes of their own: their
		// paths are the critical ones and are named in the finding.
		if ns == metav1.NamespaceSystem || ns == corev1.NamespaceNodeLease {
			key = append(key, ns...)
		}
		key = append(key, 0)
		for _, w := range bits {
			key = binary.LittleEndian.AppendUint64(key, w)
		}
		if c, ok := byKey[string(key)]; ok {
			c.names = append(c.names, ns)
			continue
		}
		c := &riskNSClass{names: []string{ns}, bits: bits}
		byKey[string(key)] = c
		out = append(out, c)
	}
	return out
}

// riskViolation is one over-budget stack; its sentence is only written
// for the stacks that end up reported.
type riskViolation struct {
	sev            string
	total          int32
	mutSum, valMax int32
	where          string // the path and its namespaces
	system         bool   // in kube-system or kube-node-lease: the path to name
	in             []int
}

func (v riskViolation) detail(hooks []*riskHook) string {
	const named = 5
	parts := make([]string, 0, named+1)
	for _, i := range v.in[:min(len(v.in), named)] {
		h := hooks[i]
		note := ""
		if h.mutating && h.reinvoke {
			note = " x2 reinvoked"
		}
		parts = append(parts, fmt.Sprintf("%s %d s%s", h.ref, h.timeout, note))
	}
	if len(v.in) > named {
		parts = append(parts, fmt.Sprintf("%d more", len(v.in)-named))
	}
	return fmt.Sprintf("%s passes through %d webhooks that can hold it for %d s (mutating, in series: %d s; slowest validating, in parallel: %d s), at or over the %d s in which kube-controller-manager, kube-scheduler and kubelets must renew their leases: %s.",
		v.where, len(v.in), v.total, v.mutSum, v.valMax, riskLeaseBudget, strings.Join(parts, ", "))
}

// stackedTimeouts finds request paths whose webhooks can together hold a
// request for the lease-renewal budget or longer. The API server calls
// mutating webhooks one after another (and IfNeeded ones a second time)
// but validating webhooks in parallel, so the worst case is the mutating
// sum plus the slowest validating webhook. A single webhook is not a
// stack; its own danger is in the Blocks* kinds.
//
// Paths are the concrete resources the rules name, at the versions they
// name; a namespaced path is judged once per class of namespaces the
// selectors treat alike. Object labels are unknown for arbitrary objects,
// so a non-empty objectSelector counts as matching: this is a worst case.
func (a *riskAnalyzer) stackedTimeouts(hooks []*riskHook) []Risk {
	if len(hooks) < 2 {
		return nil
	}
	paths := riskPaths(hooks)
	classes := a.nsClasses(hooks)
	worst := map[int]riskViolation{}

	for _, p := range paths {
		ns := ""
		if !p.cluster || p.gvr.Resource == "namespaces" {
			ns = metav1.NamespaceDefault
		}
		attr := riskAttr(nil, schema.GroupVersionKind{Group: p.gvr.Group, Version: p.gvr.Version}, p.gvr, p.sub, ns, "", p.op)
		var matched []int
		for i, h := range hooks {
			if h.rulesMatch(attr) {
				matched = append(matched, i)
			}
		}
		if len(matched) < 2 {
			continue
		}
		if p.cluster && p.gvr.Resource != "namespaces" {
			// namespaceSelector never exempts cluster-scoped objects.
			a.judgeStack(hooks, p, "", matched, worst)
			continue
		}
		// Classes the path's webhooks treat alike are one finding; it is
		// named after kube-system or kube-node-lease when they are in it,
		// since those make a path critical.
		type group struct {
			in    []int
			names []string
		}
		var groups []*group
		byKey := map[string]*group{}
		for _, c := range classes {
			var in []int
			var key []byte
			for _, i := range matched {
				if c.has(i) {
					in = append(in, i)
					key = strconv.AppendInt(key, int64(i), 36)
					key = append(key, ',')
				}
			}
			g, ok := byKey[string(key)]
			if !ok {
				g = &group{in: in}
				byKey[string(key)] = g
				groups = append(groups, g)
			}
			if c.names[0] == metav1.NamespaceSystem || c.names[0] == corev1.NamespaceNodeLease {
				g.names = append(c.names[:1:1], g.names...)
			} else {
				g.names = append(g.names, c.names...)
			}
		}
		for _, g := range groups {
			slices.SortStableFunc(g.names, func(x, y string) int {
				// kube-system, then kube-node-lease, first: they are why a
				// path is critical.
				rank := func(n string) int {
					switch n {
					case metav1.NamespaceSystem:
						return 0
					case corev1.NamespaceNodeLease:
						return 1
					}
					return 2
				}
				return cmp.Compare(rank(x), rank(y))
			})
			where := " in " + riskList(g.names, 3)
			if p.gvr.Resource == "namespaces" {
				where = " (namespaces " + riskList(g.names, 3) + ")"
			}
			a.judgeStack(hooks, p, where, g.in, worst)
		}
	}

	var out []Risk
	details := map[string]string{} // by where: many webhooks share a stack
	for i, v := range worst {
		d, ok := details[v.where]
		if !ok {
			d = v.detail(hooks)
			details[v.where] = d
		}
		out = append(out, Risk{
			Webhook:  hooks[i].ref,
			Kind:     StackedTimeouts,
			Severity: v.sev,
			Detail:   d,
			Fix: fmt.Sprintf("lower timeoutSeconds (most webhooks answer in well under a second; 2 to 5 s is plenty), or narrow rules and selectors so fewer webhooks match %s",
				v.where),
		})
	}
	return out
}

func (a *riskAnalyzer) judgeStack(hooks []*riskHook, p riskPath, where string, in []int, worst map[int]riskViolation) {
	if len(in) < 2 {
		return
	}
	var mutSum, valMax, single int32
	for _, i := range in {
		h := hooks[i]
		if h.mutating {
			t := h.timeout
			if h.reinvoke {
				t *= 2
			}
			mutSum += t
			single = max(single, t)
		} else {
			valMax = max(valMax, h.timeout)
			single = max(single, h.timeout)
		}
	}
	total := mutSum + valMax
	// Only a stack is reported: the path must be slower than its slowest
	// webhook alone would make it (parallel validating webhooks are not).
	if total < riskLeaseBudget || total <= single {
		return
	}
	system := strings.HasPrefix(where, " in "+metav1.NamespaceSystem) || strings.HasPrefix(where, " in "+corev1.NamespaceNodeLease)
	sev := riskWarning
	if p.gvr.Group == "coordination.k8s.io" && p.gvr.Resource == "leases" ||
		p.gvr.Group == "" && p.gvr.Resource == "pods" && strings.HasPrefix(where, " in "+metav1.NamespaceSystem) {
		sev = riskCritical
	}
	v := riskViolation{sev: sev, total: total, mutSum: mutSum, valMax: valMax, where: p.String() + where, system: system, in: in}
	for _, i := range in {
		old, ok := worst[i]
		if !ok || riskWorse(v, old) {
			worst[i] = v
		}
	}
}

func riskWorse(a, b riskViolation) bool {
	if ra, rb := riskSeverityRank(a.sev), riskSeverityRank(b.sev); ra != rb {
		return ra < rb
	}
	if a.total != b.total {
		return a.total > b.total
	}
	if a.system != b.system {
		return a.system
	}
	return a.where < b.where
}

// riskList joins up to max names and says how many more there are.
func riskList(names []string, max int) string {
	switch {
	case len(names) > max:
		return fmt.Sprintf("%s and %d more", strings.Join(names[:max], ", "), len(names)-max)
	case len(names) > 1:
		return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
	}
	return strings.Join(names, "")
}

// riskDescribeRules is a short form of the rules for a sentence.
func riskDescribeRules(rs []admissionv1.RuleWithOperations) string {
	var parts []string
	for _, r := range rs {
		ops := make([]string, 0, len(r.Operations))
		for _, op := range r.Operations {
			ops = append(ops, string(op))
		}
		var res []string
		for _, g := range r.APIGroups {
			for _, x := range r.Resources {
				if g == "" {
					res = append(res, x)
				} else {
					res = append(res, x+"."+g)
				}
			}
		}
		parts = append(parts, strings.Join(ops, ",")+" "+riskList(res, 4))
	}
	return riskList(parts, 3)
}
