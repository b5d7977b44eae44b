// Package kubefake serves kube.API from client-go's fake clientset (typed
// resources) and fake dynamic client (the others), for unit tests. Reactors
// prepended to Clientset or Dynamic apply, as with the clientsets.
package kubefake

import (
	"context"
	"fmt"
	"io"
	"reflect"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/internal/kube"
)

// API is kube.API on fakes.
type API struct {
	Clientset *fake.Clientset
	Dynamic   *dynamicfake.FakeDynamicClient
}

var _ kube.API = (*API)(nil)

// New holds objects: typed ones in the clientset, unstructured ones in the
// dynamic client (listKinds names the list Kind of each of their resources).
func New(listKinds map[schema.GroupVersionResource]string, objects ...runtime.Object) *API {
	var typed, other []runtime.Object
	for _, o := range objects {
		if _, ok := o.(*unstructured.Unstructured); ok {
			other = append(other, o)
		} else {
			typed = append(typed, o)
		}
	}
	return &API{
		Clientset: fake.NewClientset(typed...),
		Dynamic:   dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds, other...),
	}
}

func (f *API) fake(r schema.GroupVersionResource) *k8stesting.Fake {
	if kube.Typed(r) {
		return &f.Clientset.Fake
	}
	return &f.Dynamic.Fake
}

func (f *API) ListWatch(r schema.GroupVersionResource, namespace string, tweak func(*metav1.ListOptions)) cache.ListerWatcher {
	if tweak == nil {
		tweak = func(*metav1.ListOptions) {}
	}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return f.list(ctx, r, namespace, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return f.fake(r).InvokesWatch(k8stesting.NewWatchAction(r, namespace, o))
		},
	}
	// The fakes cannot stream a list's initial events (client-go's
	// informers would wait for ever): they say so, as their own informers'
	// list-watches do.
	if kube.Typed(r) {
		return cache.ToListWatcherWithWatchListSemantics(lw, f.Clientset)
	}
	return cache.ToListWatcherWithWatchListSemantics(lw, f.Dynamic)
}

// list lists r and keeps the objects o's label selector selects (the
// clientset's object tracker does not select).
func (f *API) list(ctx context.Context, r schema.GroupVersionResource, namespace string, o metav1.ListOptions) (runtime.Object, error) {
	if !kube.Typed(r) {
		return f.Dynamic.Resource(r).Namespace(namespace).List(ctx, o)
	}
	gvk := r.GroupVersion().WithKind(kube.Kind(r))
	obj, err := f.Clientset.Invokes(k8stesting.NewListAction(r, gvk, namespace, o), nil)
	if err != nil || obj == nil {
		return obj, err
	}
	sel, err := labels.Parse(o.LabelSelector)
	if err != nil {
		return nil, err
	}
	return filter(obj, sel)
}

func (f *API) Get(ctx context.Context, r schema.GroupVersionResource, namespace, name string, into runtime.Object) error {
	if !kube.Typed(r) {
		u, err := f.Dynamic.Resource(r).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
		return copyInto(u, err, into)
	}
	obj, err := f.Clientset.Invokes(k8stesting.NewGetAction(r, namespace, name), nil)
	return copyInto(obj, err, into)
}

func (f *API) List(ctx context.Context, r schema.GroupVersionResource, namespace string, opts metav1.ListOptions, into runtime.Object) error {
	obj, err := f.list(ctx, r, namespace, opts)
	return copyInto(obj, err, into)
}

func (f *API) Create(ctx context.Context, r schema.GroupVersionResource, namespace string, obj, into runtime.Object) error {
	out, err := f.fake(r).Invokes(k8stesting.NewCreateAction(r, namespace, obj), nil)
	return copyInto(out, err, into)
}

func (f *API) Update(ctx context.Context, r schema.GroupVersionResource, namespace string, obj, into runtime.Object) error {
	out, err := f.fake(r).Invokes(k8stesting.NewUpdateAction(r, namespace, obj), nil)
	return copyInto(out, err, into)
}

func (f *API) Patch(ctx context.Context, r schema.GroupVersionResource, namespace, name string, pt types.PatchType, data []byte, into runtime.Object) error {
	out, err := f.fake(r).Invokes(k8stesting.NewPatchAction(r, namespace, name, pt, data), nil)
	return copyInto(out, err, into)
}

// Raw has no API server behind it: tests of a raw path serve one.
func (f *API) Raw(ctx context.Context, path, accept string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("GET %s: the fake API has no raw paths", path)
}

// copyInto sets *into to *obj (both pointers to the same struct type).
func copyInto(obj runtime.Object, err error, into runtime.Object) error {
	if err != nil {
		return err
	}
	if obj == nil || reflect.ValueOf(obj).IsNil() {
		return fmt.Errorf("the fake returned no object")
	}
	src, dst := reflect.ValueOf(obj), reflect.ValueOf(into)
	if src.Type() != dst.Type() {
		return fmt.Errorf("the fake returned a %T, want a %T", obj, into)
	}
	dst.Elem().Set(src.Elem())
	return nil
}

// filter keeps the items of list sel selects.
func filter(list runtime.Object, sel labels.Selector) (runtime.Object, error) {
	if sel.Empty() {
		return list, nil
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	var kept []runtime.Object
	for _, it := range items {
		m, err := meta.Accessor(it)
		if err != nil {
			return nil, err
		}
		if sel.Matches(labels.Set(m.GetLabels())) {
			kept = append(kept, it)
		}
	}
	return list, meta.SetList(list, kept)
}
