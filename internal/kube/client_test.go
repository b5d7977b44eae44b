//go:build linux

package kube_test

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/chaos"
	"github.com/hookscope/hookscope/internal/kube"
)

// TestClientOnARealAPIServer: every call of the API on a real API server,
// typed and unstructured, and two agents electing a Lease holder there.
func TestClientOnARealAPIServer(t *testing.T) {
	ctx, local, _ := chaos.LocalForTest(t, "kube", 3*time.Minute)
	cfg, err := clientcmd.BuildConfigFromFlags("", local.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	api, err := kube.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	leases := coordinationv1.SchemeGroupVersion.WithResource("leases")

	t.Run("create, get, update, patch", func(t *testing.T) {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "one", Namespace: "default", Labels: map[string]string{"k": "v"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("a")}}
		var got coordinationv1.Lease
		if err := api.As("hookscope-test").Create(ctx, leases, "default", l, &got); err != nil || got.UID == "" {
			t.Fatalf("create: %v (uid %q)", err, got.UID)
		}
		if m := got.ManagedFields; len(m) != 1 || m[0].Manager != "hookscope-test" {
			t.Errorf("managed fields %+v, want one entry of hookscope-test", m)
		}
		got.Spec.HolderIdentity = ptr.To("b")
		if err := api.Update(ctx, leases, "default", &got, &got); err != nil {
			t.Fatalf("update: %v", err)
		}
		stale := got.DeepCopy()
		stale.ResourceVersion = "1"
		if err := api.Update(ctx, leases, "default", stale, stale); !apierrors.IsConflict(err) {
			t.Errorf("update of a stale copy: %v, want a conflict", err)
		}
		patch := []byte(`{"spec":{"holderIdentity":"c"}}`)
		if err := api.Patch(ctx, leases, "default", "one", types.MergePatchType, patch, &got); err != nil {
			t.Fatalf("patch: %v", err)
		}
		var read coordinationv1.Lease
		if err := api.Get(ctx, leases, "default", "one", &read); err != nil || ptr.Deref(read.Spec.HolderIdentity, "") != "c" {
			t.Errorf("get: %v, holder %q", err, ptr.Deref(read.Spec.HolderIdentity, ""))
		}
		if err := api.Get(ctx, leases, "default", "none", &read); !apierrors.IsNotFound(err) {
			t.Errorf("get of no object: %v, want not found", err)
		}
		var list coordinationv1.LeaseList
		if err := api.List(ctx, leases, "default", metav1.ListOptions{LabelSelector: "k=v"}, &list); err != nil || len(list.Items) != 1 {
			t.Errorf("list by label: %v, %d items", err, len(list.Items))
		}
	})

	t.Run("typed informer", func(t *testing.T) {
		i := cache.NewSharedIndexInformer(api.ListWatch(corev1.SchemeGroupVersion.WithResource("namespaces"), "",
			func(o *metav1.ListOptions) { o.LabelSelector = "hookscope.dev/kube-test" }), &corev1.Namespace{}, 0, cache.Indexers{})
		go i.RunWithContext(ctx)
		if !cache.WaitForCacheSync(ctx.Done(), i.HasSynced) {
			t.Fatal("no sync")
		}
		if n := len(i.GetStore().List()); n != 0 {
			t.Fatalf("%d namespaces carry the label before any was made", n)
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-test", Labels: map[string]string{"hookscope.dev/kube-test": "1"}}}
		if err := api.Create(ctx, corev1.SchemeGroupVersion.WithResource("namespaces"), "", ns, ns); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the watch delivers the namespace", func() bool {
			_, ok, _ := i.GetStore().GetByKey("kube-test")
			return ok
		})
	})

	t.Run("unstructured informer", func(t *testing.T) {
		apiservices := api.ListWatch(kubeAggregator, "", nil)
		i := cache.NewSharedIndexInformer(apiservices, &unstructured.Unstructured{}, 0, cache.Indexers{})
		go i.RunWithContext(ctx)
		if !cache.WaitForCacheSync(ctx.Done(), i.HasSynced) {
			t.Fatal("no sync")
		}
		_, ok, _ := i.GetStore().GetByKey("v1.coordination.k8s.io")
		if !ok {
			t.Errorf("the APIService v1.coordination.k8s.io is not listed (%d listed)", len(i.GetStore().List()))
		}
	})

	t.Run("raw", func(t *testing.T) {
		body, err := api.Raw(ctx, "/version", "application/json")
		if err != nil {
			t.Fatal(err)
		}
		defer body.Close()
		var v struct{ GitVersion string }
		if err := json.NewDecoder(body).Decode(&v); err != nil || !strings.HasPrefix(v.GitVersion, "v1.") {
			t.Errorf("/version: %v, %q", err, v.GitVersion)
		}
		m, err := api.Raw(ctx, "/metrics", "text/plain;version=0.0.4")
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		text, _ := io.ReadAll(m)
		if !strings.Contains(string(text), "apiserver_request_total") {
			t.Errorf("/metrics has no apiserver_request_total (%d bytes)", len(text))
		}
	})

	t.Run("election", func(t *testing.T) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "hookscope"}}
		if err := api.Create(ctx, corev1.SchemeGroupVersion.WithResource("namespaces"), "", ns, ns); err != nil {
			t.Fatal(err)
		}
		actx, stopA := contextWithCancel(ctx)
		a := stand(actx, api, "node-a")
		eventually(t, "node-a leads", a.leading.Load)
		b := stand(ctx, api, "node-b")
		time.Sleep(500 * time.Millisecond)
		if b.leading.Load() {
			t.Fatal("node-b leads while node-a renews")
		}
		stopA()
		<-a.stopped
		eventually(t, "node-b leads once node-a released the Lease", b.leading.Load)
	})
}

var kubeAggregator = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

func contextWithCancel(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}
