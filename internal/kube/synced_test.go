package kube_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/internal/kube"
	"github.com/hookscope/hookscope/internal/kube/kubefake"
)

var servicesGVR = corev1.SchemeGroupVersion.WithResource("services")

func TestWaitSynced(t *testing.T) {
	api := kubefake.New(nil, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "hook"}})
	i := kube.NewInformer(api, servicesGVR, "", nil, &corev1.Service{}, cache.Indexers{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tried := kube.TrackTries(i)
	if tried.Done() {
		t.Fatal("an informer that has not run says it has listed")
	}
	go i.RunWithContext(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if !kube.WaitSynced(wctx, i.HasSynced) {
		t.Fatal("WaitSynced: the informer of a listable resource never synced")
	}
	if n := len(i.GetStore().List()); n != 1 || !tried.Done() {
		t.Errorf("synced with %d Services, tried %v; want 1, true", n, tried.Done())
	}

	never := func() bool { return false }
	short, scancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer scancel()
	if kube.WaitSynced(short, i.HasSynced, never) {
		t.Error("WaitSynced said an informer that never syncs had synced")
	}
}

func TestTriedSaysARefusedList(t *testing.T) {
	api := kubefake.New(nil)
	lists := make(chan struct{}, 100)
	api.Clientset.PrependReactor("list", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		lists <- struct{}{}
		return true, nil, apierrors.NewForbidden(servicesGVR.GroupResource(), "", nil)
	})
	i := kube.NewInformer(api, servicesGVR, "", nil, &corev1.Service{}, cache.Indexers{})
	tried := kube.TrackTries(i)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go i.RunWithContext(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if !kube.WaitSynced(wctx, tried.Done) {
		t.Fatal("a refused list never ended the wait")
	}
	if i.HasSynced() {
		t.Error("the informer says it synced although its list was refused")
	}
	if len(lists) == 0 {
		t.Error("no list was made")
	}
}
