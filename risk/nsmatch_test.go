package risk

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
)

// TestNamespaceSelected holds the namespaceSelector check to the API
// server's (MatchNamespaceSelector in k8s.io/apiserver's namespace
// predicate). The selector of most cases selects team=a; the namespaces
// known are "shop" (team=a) and "lab" (team=b).
func TestNamespaceSelected(t *testing.T) {
	known := map[string]labels.Set{"shop": {"team": "a"}, "lab": {"team": "b"}}
	lookup := func(name string) (labels.Set, bool) {
		l, ok := known[name]
		return l, ok
	}
	teamA := labels.SelectorFromSet(labels.Set{"team": "a"})
	nsGVR := corev1.SchemeGroupVersion.WithResource("namespaces")
	nsGVK := corev1.SchemeGroupVersion.WithKind("Namespace")
	namespace := func(name, team string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"team": team}}}
	}
	pod := func(ns string) admission.Attributes {
		return newAttr(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns}}, podGVK, podGVR, "", ns, "", admission.Create)
	}
	nsReq := func(obj runtime.Object, sub string, op admission.Operation) admission.Attributes {
		name := ""
		if n, ok := obj.(*corev1.Namespace); ok {
			name = n.Name
		}
		return admission.NewAttributesRecord(obj, nil, nsGVK, name, name, nsGVR, sub, op, nil, false, nil)
	}
	// A Namespace created (the API server asks with no namespace for it).
	created := admission.NewAttributesRecord(namespace("new", "a"), nil, nsGVK, "", "new", nsGVR, "", admission.Create, nil, false, nil)
	createdOther := admission.NewAttributesRecord(namespace("new", "b"), nil, nsGVK, "", "new", nsGVR, "", admission.Create, nil, false, nil)
	node := newAttr(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, nodeGVK, nodeGVR, "", "", "n1", admission.Update)
	// A cluster-scoped resource of another group named "namespaces": the
	// API server looks at the resource's name only.
	otherGroupNS := admission.NewAttributesRecord(nil, nil, schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Namespace"}, "", "x",
		schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "namespaces"}, "", admission.Create, nil, false, nil)

	cases := []struct {
		name     string
		sel      labels.Selector
		attr     admission.Attributes
		want     bool
		notFound bool // the error is the API server's 404
		fails    bool // any other error
	}{
		{name: "a cluster-scoped request is sent whatever the selector", sel: labels.Nothing(), attr: node, want: true},
		{name: "an empty selector selects a namespace that does not exist", sel: labels.Everything(), attr: pod("gone"), want: true},
		{name: "a request in a namespace the selector selects", sel: teamA, attr: pod("shop"), want: true},
		{name: "a request in a namespace the selector does not select", sel: teamA, attr: pod("lab"), want: false},
		{name: "a request in a namespace that does not exist is a 404", sel: teamA, attr: pod("gone"), notFound: true},
		{name: "a Namespace created is judged by its own labels", sel: teamA, attr: created, want: true},
		{name: "a Namespace created with labels the selector does not select", sel: teamA, attr: createdOther, want: false},
		{name: "a Namespace updated is judged by its new labels, not the old ones", sel: teamA, attr: nsReq(namespace("lab", "a"), "", admission.Update), want: true},
		{name: "a Namespace updated away from the selector is not selected", sel: teamA, attr: nsReq(namespace("shop", "b"), "", admission.Update), want: false},
		{name: "a Namespace deleted is judged by the labels it has", sel: teamA,
			attr: admission.NewAttributesRecord(&metav1.DeleteOptions{}, nil, nsGVK, "shop", "shop", nsGVR, "", admission.Delete, nil, false, nil), want: true},
		{name: "a Namespace's status is judged by the labels it has", sel: teamA, attr: nsReq(namespace("shop", "b"), "status", admission.Update), want: true},
		{name: "another group's namespaces are judged as Namespaces", sel: teamA, attr: otherGroupNS, fails: true},
		{name: "a selector that could not be parsed fails the request", sel: nil, attr: pod("shop"), fails: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := namespaceSelected(c.sel, c.attr, lookup)
			switch {
			case c.notFound:
				if !apierrors.IsNotFound(err) || got {
					t.Fatalf("got %v, %v; want false and a NotFound error", got, err)
				}
			case c.fails:
				if err == nil || apierrors.IsNotFound(err) || got {
					t.Fatalf("got %v, %v; want false and an error other than NotFound", got, err)
				}
			case err != nil || got != c.want:
				t.Fatalf("got %v, %v; want %v", got, err, c.want)
			}
		})
	}
}
