package risk

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
)

// clusterScoped are the built-in cluster-scoped resources a rule may name.
// Anything else (custom resources included) is taken as namespaced.
var clusterScoped = map[string]bool{
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

// exempt are the resources the API server never sends to webhooks.
var exempt = map[string]bool{
	"validatingwebhookconfigurations": true, "mutatingwebhookconfigurations": true,
	"validatingadmissionpolicies": true, "validatingadmissionpolicybindings": true,
	"mutatingadmissionpolicies": true, "mutatingadmissionpolicybindings": true,
}

// path is one request path: a resource, a subresource and an operation.
type path struct {
	gvr     schema.GroupVersionResource
	sub     string
	op      admission.Operation
	cluster bool
}

func (p path) String() string {
	res := p.gvr.Resource
	if p.gvr.Group != "" {
		res += "." + p.gvr.Group
	}
	if p.sub != "" {
		res += "/" + p.sub
	}
	return string(p.op) + " " + res
}

// namespaced reports whether the path is judged per namespace class:
// namespaced resources, and namespaces themselves (whose selector is
// evaluated on the namespace being written).
func (p path) namespaced() bool { return !p.cluster || p.gvr.Resource == "namespaces" }

// paths lists the concrete request paths the rules name, plus the
// control-plane paths a wildcard rule would reach.
func paths(hooks []*hook) []path {
	seen := map[path]bool{}
	var out []path
	add := func(group, version, res, sub string, op admission.Operation) {
		if group == "admissionregistration.k8s.io" && exempt[res] {
			return
		}
		p := path{gvr: schema.GroupVersionResource{Group: group, Version: version, Resource: res}, sub: sub, op: op,
			cluster: clusterScoped[group+"/"+res]}
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
		for _, r := range h.GetRules() {
			ops, versions := ruleOps(r), ruleVersions(r)
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

// ruleOps are the operations of a rule; CONNECT only exists on a few
// subresources, so a "*" rule is about writes.
func ruleOps(r admissionv1.RuleWithOperations) []admission.Operation {
	var ops []admission.Operation
	for _, op := range r.Operations {
		if op == admissionv1.OperationAll {
			ops = append(ops, admission.Create, admission.Update, admission.Delete)
		} else {
			ops = append(ops, admission.Operation(op))
		}
	}
	return ops
}

// ruleVersions are the versions a rule names; v1 when it names only "*".
func ruleVersions(r admissionv1.RuleWithOperations) []string {
	var versions []string
	for _, v := range r.APIVersions {
		if v != "*" {
			versions = append(versions, v)
		}
	}
	if len(versions) == 0 {
		versions = []string{"v1"}
	}
	return versions
}

// nsClass is a set of namespaces every webhook's namespaceSelector treats
// alike, so a path is summed once per class, not per namespace.
type nsClass struct {
	names []string
	bits  []uint64
}

func (c *nsClass) has(i int) bool { return c.bits[i/64]&(1<<(i%64)) != 0 }

func (a *analyzer) nsClasses(hooks []*hook) []*nsClass {
	slices.Sort(a.nsNames) // for a stable report
	words := (len(hooks) + 63) / 64
	byKey := map[string]*nsClass{}
	var out []*nsClass
	for _, ns := range a.nsNames {
		attr := newAttr(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns}}, podGVK, podGVR, "", ns, "", admission.Create)
		bits := make([]uint64, words)
		for i, h := range hooks {
			if a.nsMatches(h, attr) {
				bits[i/64] |= 1 << (i % 64)
			}
		}
		var key []byte
		// kube-system and kube-node-lease stay classes of their own: their
		// paths are the critical ones and are named in the finding.
		if isSystem(ns) {
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
		c := &nsClass{names: []string{ns}, bits: bits}
		byKey[string(key)] = c
		out = append(out, c)
	}
	return out
}

// isSystem: kube-system and kube-node-lease, whose paths make a stack
// critical.
func isSystem(ns string) bool { return ns == metav1.NamespaceSystem || ns == corev1.NamespaceNodeLease }

// systemFirst orders namespace names kube-system, then kube-node-lease,
// then the rest as they were: the first two are why a path is critical.
func systemFirst(names []string) {
	rank := func(n string) int {
		switch n {
		case metav1.NamespaceSystem:
			return 0
		case corev1.NamespaceNodeLease:
			return 1
		}
		return 2
	}
	slices.SortStableFunc(names, func(x, y string) int { return cmp.Compare(rank(x), rank(y)) })
}

// nsGroup is the webhooks of a path that one or more namespace classes
// all call, and the namespaces of those classes.
type nsGroup struct {
	in    []int
	names []string
}

// groupByClass merges the classes in which the same webhooks of matched
// are called: they are one finding, named after kube-system or
// kube-node-lease when they are in it.
func groupByClass(matched []int, classes []*nsClass) []*nsGroup {
	var groups []*nsGroup
	byKey := map[string]*nsGroup{}
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
			g = &nsGroup{in: in}
			byKey[string(key)] = g
			groups = append(groups, g)
		}
		if isSystem(c.names[0]) {
			g.names = append(c.names[:1:1], g.names...)
		} else {
			g.names = append(g.names, c.names...)
		}
	}
	for _, g := range groups {
		systemFirst(g.names)
	}
	return groups
}

// violation is one over-budget stack; its sentence is only written for
// the stacks that end up reported.
type violation struct {
	sev            Severity
	total          int32
	mutSum, valMax int32
	where          string // the path and its namespaces
	system         bool   // in kube-system or kube-node-lease: the path to name
	in             []int
}

func (v violation) detail(hooks []*hook) string {
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
		v.where, len(v.in), v.total, v.mutSum, v.valMax, leaseBudget, strings.Join(parts, ", "))
}

// key names the stack: its path and namespaces, and its webhooks. The
// where alone is not enough: paths that differ only in version (v1 and
// v1beta1 leases) read the same but, under matchPolicy Exact, stack
// different webhooks.
func (v violation) key() string {
	k := make([]byte, 0, len(v.where)+4*len(v.in))
	k = append(k, v.where...)
	for _, i := range v.in {
		k = append(k, ',')
		k = strconv.AppendInt(k, int64(i), 36)
	}
	return string(k)
}

// worse reports whether v is the violation to report over w.
func (v violation) worse(w violation) bool {
	if rv, rw := v.sev.rank(), w.sev.rank(); rv != rw {
		return rv < rw
	}
	if v.total != w.total {
		return v.total > w.total
	}
	if v.system != w.system {
		return v.system
	}
	return v.where < w.where
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
func (a *analyzer) stackedTimeouts(hooks []*hook) []Risk {
	if len(hooks) < 2 {
		return nil
	}
	classes := a.nsClasses(hooks)
	worst := map[int]violation{} // by index in hooks
	for _, p := range paths(hooks) {
		ns := ""
		if p.namespaced() {
			ns = metav1.NamespaceDefault
		}
		attr := newAttr(nil, schema.GroupVersionKind{Group: p.gvr.Group, Version: p.gvr.Version}, p.gvr, p.sub, ns, "", p.op)
		var matched []int
		for i, h := range hooks {
			if h.rulesMatch(attr) {
				matched = append(matched, i)
			}
		}
		if len(matched) < 2 {
			continue
		}
		if !p.namespaced() {
			// namespaceSelector never exempts cluster-scoped objects.
			judgeStack(hooks, p, "", matched, worst)
			continue
		}
		for _, g := range groupByClass(matched, classes) {
			where := " in " + list(g.names, 3)
			if p.gvr.Resource == "namespaces" {
				where = " (namespaces " + list(g.names, 3) + ")"
			}
			judgeStack(hooks, p, where, g.in, worst)
		}
	}
	return stackRisks(hooks, worst)
}

// stackRisks reports each webhook's worst stack.
func stackRisks(hooks []*hook, worst map[int]violation) []Risk {
	var out []Risk
	details := map[string]string{} // by stack: many webhooks share one
	for i, v := range worst {
		d, ok := details[v.key()]
		if !ok {
			d = v.detail(hooks)
			details[v.key()] = d
		}
		out = append(out, hooks[i].risk(StackedTimeouts, v.sev, d,
			fmt.Sprintf("lower timeoutSeconds (most webhooks answer in well under a second; 2 to 5 s is plenty), or narrow rules and selectors so fewer webhooks match %s",
				v.where)))
	}
	return out
}

// judgeStack records the stack of the webhooks in (indexes in hooks) on
// path p as the worst of each, if it is over budget.
func judgeStack(hooks []*hook, p path, where string, in []int, worst map[int]violation) {
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
	if total < leaseBudget || total <= single {
		return
	}
	system := strings.HasPrefix(where, " in "+metav1.NamespaceSystem) || strings.HasPrefix(where, " in "+corev1.NamespaceNodeLease)
	sev := Warning
	if p.gvr.Group == "coordination.k8s.io" && p.gvr.Resource == "leases" ||
		p.gvr.Group == "" && p.gvr.Resource == "pods" && strings.HasPrefix(where, " in "+metav1.NamespaceSystem) {
		sev = Critical
	}
	v := violation{sev: sev, total: total, mutSum: mutSum, valMax: valMax, where: p.String() + where, system: system, in: in}
	for _, i := range in {
		old, ok := worst[i]
		if !ok || v.worse(old) {
			worst[i] = v
		}
	}
}
