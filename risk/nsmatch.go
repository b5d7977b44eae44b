package risk

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/admission"
)

// namespaceLabels gives the labels of a namespace by name; ok is false
// when the namespace does not exist.
type namespaceLabels func(name string) (l labels.Set, ok bool)

// namespaceSelected decides, as the API server does before it calls a
// webhook, whether the webhook's namespaceSelector sel lets the request
// attr through to it:
//
//   - a request for a cluster-scoped resource is always sent, unless it is
//     about a Namespace;
//   - an empty selector selects every request;
//   - a Namespace being created or updated is judged by its own labels (the
//     new ones); any other request by the labels of its namespace.
//
// An error is what makes the API server fail the request instead of
// judging it: a selector it could not parse, a Namespace object without
// metadata, or a namespace that does not exist (a NotFound error, as the
// API server answers).
func namespaceSelected(sel labels.Selector, attr admission.Attributes, lookup namespaceLabels) (bool, error) {
	gvr := attr.GetResource()
	// The API server looks at the resource's name only, whatever its group.
	aboutNamespace := gvr.Resource == "namespaces"
	if attr.GetNamespace() == "" && !aboutNamespace {
		return true, nil
	}
	if sel == nil {
		return false, fmt.Errorf("the namespaceSelector of the webhook could not be parsed")
	}
	if sel.Empty() {
		return true, nil
	}
	op := attr.GetOperation()
	if aboutNamespace && attr.GetSubresource() == "" && (op == admission.Create || op == admission.Update) {
		// The namespace written is the one to judge, not what it was.
		m, err := meta.Accessor(attr.GetObject())
		if err != nil {
			return false, fmt.Errorf("reading the labels of the namespace written: %w", err)
		}
		return sel.Matches(labels.Set(m.GetLabels())), nil
	}
	l, ok := lookup(attr.GetNamespace())
	if !ok {
		return false, apierrors.NewNotFound(corev1.Resource("namespaces"), attr.GetNamespace())
	}
	return sel.Matches(l), nil
}
