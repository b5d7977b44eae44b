package risk

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/namespace"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/object"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/rules"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// analyzer holds the namespace view the predicates evaluate against.
type analyzer struct {
	nsIndexer cache.Indexer
	nsNames   []string // synthesized ones included; sorted in nsClasses
	nsKnown   map[string]bool
	nsMatcher namespace.Matcher
	objMatch  object.Matcher
}

func newAnalyzer(namespaces []*corev1.Namespace) *analyzer {
	a := &analyzer{
		nsIndexer: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		nsKnown:   map[string]bool{},
	}
	// The matcher's Client is only used when the lister misses; every
	// namespace asked about is added first (ensureNamespace), so none is
	// needed and a nil Client is never reached.
	a.nsMatcher = namespace.Matcher{NamespaceLister: corelisters.NewNamespaceLister(a.nsIndexer)}
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
func (a *analyzer) addNamespace(name string, lbls map[string]string) {
	if a.nsKnown[name] {
		return
	}
	a.nsKnown[name] = true
	l := make(map[string]string, len(lbls)+1)
	maps.Copy(l, lbls)
	l[corev1.LabelMetadataName] = name
	// A plain indexer cannot fail to add an object with a name.
	_ = a.nsIndexer.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}})
	a.nsNames = append(a.nsNames, name)
}

func (a *analyzer) ensureNamespace(name string) {
	if name != "" {
		a.addNamespace(name, nil)
	}
}

// request is one synthetic request and the words that name it.
type request struct {
	desc string
	attr admission.Attributes
}

func newAttr(obj runtime.Object, gvk schema.GroupVersionKind, gvr schema.GroupVersionResource, sub, ns, name string, op admission.Operation) admission.Attributes {
	var old runtime.Object
	if op == admission.Update {
		old = obj
	}
	return admission.NewAttributesRecord(obj, old, gvk, ns, name, gvr, sub, op, nil, false, nil)
}

// versionOverride is a request seen at another version of its resource,
// as the API server retries rules under matchPolicy Equivalent.
type versionOverride struct {
	admission.Attributes
	gvr schema.GroupVersionResource
}

func (o versionOverride) GetResource() schema.GroupVersionResource { return o.gvr }

// rulesMatch is the rules part of the API server's ShouldCallHook. For
// matchPolicy Equivalent it retries at every version a rule names of the
// same group and resource; the API server only does that for versions it
// serves, so this errs on the side of matching.
func (h *hook) rulesMatch(attr admission.Attributes) bool {
	gvr := attr.GetResource()
	if !h.anyGroup && !h.groups[gvr.Group] {
		return false
	}
	rs := h.GetRules()
	for _, r := range rs {
		m := rules.Matcher{Rule: r, Attr: attr}
		if m.Matches() {
			return true
		}
	}
	if !h.equivalent {
		return false
	}
	for _, r := range rs {
		for _, v := range r.APIVersions {
			if v == gvr.Version || v == "*" {
				continue
			}
			o := gvr
			o.Version = v
			m := rules.Matcher{Rule: r, Attr: versionOverride{Attributes: attr, gvr: o}}
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
func (a *analyzer) calls(h *hook, attr admission.Attributes) bool {
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
func (a *analyzer) nsMatches(h *hook, attr admission.Attributes) bool {
	if h.nsSel.Empty() {
		return true
	}
	ok, err := a.nsMatcher.MatchNamespaceSelector(h, attr)
	return err != nil || ok
}

// matching names the requests the API server would send to h; requests
// that differ only in the object's labels share a name and count once.
func (a *analyzer) matching(h *hook, reqs []request) []string {
	var out []string
	for _, r := range reqs {
		if !slices.Contains(out, r.desc) && a.calls(h, r.attr) {
			out = append(out, r.desc)
		}
	}
	return out
}
