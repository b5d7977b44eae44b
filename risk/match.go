package risk

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/object"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/rules"
)

// analyzer holds the namespace view the predicates evaluate against.
type analyzer struct {
	// nsLabels are the labels of every namespace known, by name; every
	// namespace a request is judged in is added first (ensureNamespace).
	nsLabels map[string]labels.Set
	nsNames  []string // synthesized ones included; sorted in nsClasses
	objMatch object.Matcher
}

func newAnalyzer(namespaces []*corev1.Namespace) *analyzer {
	a := &analyzer{nsLabels: map[string]labels.Set{}}
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

// addNamespace stores a copy of the namespace's labels with the name label
// the API server puts on every namespace, so selectors on it work even when
// the caller's objects lack it.
func (a *analyzer) addNamespace(name string, lbls map[string]string) {
	if _, known := a.nsLabels[name]; known {
		return
	}
	l := make(labels.Set, len(lbls)+1)
	maps.Copy(l, lbls)
	l[corev1.LabelMetadataName] = name
	a.nsLabels[name] = l
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
	ok, err := a.nsSelected(h, attr)
	if err != nil {
		return true
	}
	if !ok {
		return false
	}
	// The object matcher's error is a *StatusError: compared to nil as
	// one, not as an error interface (which a nil pointer would not be).
	ok, objErr := a.objMatch.MatchObjectSelector(h, attr)
	return objErr != nil || ok
}

// nsMatches reports whether h's namespaceSelector selects the namespace of
// attr, a request in a namespace the analyzer knows.
func (a *analyzer) nsMatches(h *hook, attr admission.Attributes) bool {
	if h.nsSel.Empty() {
		return true
	}
	ok, err := a.nsSelected(h, attr)
	return err != nil || ok
}

// nsSelected is the API server's namespaceSelector check of h for attr,
// against the namespaces the analyzer knows.
func (a *analyzer) nsSelected(h *hook, attr admission.Attributes) (bool, error) {
	return namespaceSelected(h.nsSel, attr, func(name string) (labels.Set, bool) {
		l, ok := a.nsLabels[name]
		return l, ok
	})
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
