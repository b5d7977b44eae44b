//go:build linux

package inventory

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/chaos"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube"
)

// The scale bench's last step, in one namespace: 50 webhooks, 30
// APIServices and 20 conversion webhooks call 100 Services
// (maxSelectorNames), and one more APIService calls a Service in a
// namespace the agent cannot list.
const (
	pokeNS     = "scale-inv"
	lockedNS   = "locked"
	pokeGroup  = "pokes.hookscope.dev"
	pokeHooks  = 50
	pokeAPIs   = 30
	pokeConvs  = 20
	lockedName = "api-locked"
)

func pokeAPIName(i int) string  { return fmt.Sprintf("v1alpha1.a%03d.%s", i, pokeGroup) }
func pokeCRDName(i int) string  { return fmt.Sprintf("widgets.c%03d.%s", i, pokeGroup) }
func pokeHookName(i int) string { return fmt.Sprintf("vinv-%03d.%s", i, pokeGroup) }

// heldRequests holds the inventory's requests: the APIServices' and the
// CRDs' until the test lets them pass, namespace locked's for good (an
// API server that never answers it), and says when scale-inv's
// EndpointSlice watch is restarted for the 30 APIServices' Services.
type heldRequests struct {
	apis, crds, never chan struct{}
	widened           chan struct{}
	once              sync.Once
}

type heldTransport struct {
	h    *heldRequests
	next http.RoundTripper
}

func (t heldTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var hold chan struct{}
	switch p := r.URL.Path; {
	case strings.HasSuffix(p, "/apiservices"):
		hold = t.h.apis
	case strings.HasSuffix(p, "/customresourcedefinitions"):
		hold = t.h.crds
	case strings.Contains(p, "/namespaces/"+lockedNS+"/"):
		hold = t.h.never
	case strings.HasSuffix(p, "/namespaces/"+pokeNS+"/endpointslices") && strings.Count(r.URL.Query().Get("labelSelector"), "api-") == pokeAPIs:
		t.h.once.Do(func() { close(t.h.widened) })
	}
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return t.next.RoundTrip(r)
}

// TestCallOutsArrivingWhileBackendsListAreWatched runs the inventory
// against a real kube-apiserver as the scale bench's Lease holder started:
// the webhooks resolve first, then the APIServices arrive and widen
// scale-inv's EndpointSlice watch, and the CRDs are listed while that
// round waits for its new watches. The conversion webhooks must resolve to
// their endpoints: their Services' names must reach the EndpointSlice
// watch. In the bench the wait was the new watch's list (until its
// 100 ms sync poll), and whether that watch's own poke came after the
// round's resolution, and saved it, was a coin toss; here the
// APIService in namespace locked, which never lists, holds the round for
// firstSyncWait, so the CRDs' poke always comes within it.
func TestCallOutsArrivingWhileBackendsListAreWatched(t *testing.T) {
	ctx, cluster, _ := chaos.LocalForTest(t, "invpokes", 3*time.Minute)
	cfg := configOf(t, cluster)
	cfg.QPS, cfg.Burst = 100, 200
	// The setup's own clients, before the held transport: kube.New keeps
	// cfg and builds each group version's client from it on first use.
	setup := rest.CopyConfig(cfg)
	createPokeCallOuts(ctx, t, newAPI(t, setup), setup)

	h := &heldRequests{apis: make(chan struct{}), crds: make(chan struct{}), never: make(chan struct{}), widened: make(chan struct{})}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return heldTransport{h: h, next: rt} })
	api := newAPI(t, cfg)
	inv := New(api, nil)
	inv.WatchAPIServices(api)
	inv.WatchConversions(api)
	rec := &resolutions{}
	done := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	go func() { done <- inv.Run(rctx, 30*time.Second, rec.add) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("inventory: %v", err)
		}
	})

	waitUntil(t, "the webhooks resolve", 20*time.Second, func() bool { return healthy(rec.last(), pokeNS) == pokeHooks })
	close(h.apis)
	select {
	case <-h.widened:
	case <-time.After(20 * time.Second):
		t.Fatal("the APIServices never widened scale-inv's EndpointSlice watch")
	}
	// That round waits for namespace locked (firstSyncWait): the CRDs
	// are listed meanwhile.
	close(h.crds)
	const all = pokeHooks + pokeAPIs + pokeConvs
	ok := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return healthy(rec.last(), pokeNS) == all && inv.Stats().EndpointSlices == all, nil
	}) == nil
	if !ok {
		noEndpoints := 0
		for _, w := range rec.last() {
			if judged(w) == findings.NoEndpoints {
				noEndpoints++
			}
		}
		t.Fatalf("%d of %d call-outs of %s resolve to their endpoint, %d say NoEndpoints; %d EndpointSlices cached, want %d (stats %+v)",
			healthy(rec.last(), pokeNS), all, pokeNS, noEndpoints, inv.Stats().EndpointSlices, all, inv.Stats())
	}
	// A call-out whose EndpointSlices were still being listed was never
	// said to have none: the agent would have opened a false finding.
	rec.mu.Lock()
	for i, ws := range rec.all {
		for _, w := range ws {
			if judged(w) == findings.NoEndpoints {
				t.Errorf("resolution %d: %s said NoEndpoints while its EndpointSlices were being listed", i, w.Ref)
			}
		}
	}
	rec.mu.Unlock()
	if w, ok := find(rec.last(), pokeCRDName(0)); !ok || !w.IsConversion() {
		t.Errorf("conversion webhook %s: %+v", pokeCRDName(0), w)
	}
}

// healthy is how many of ws call a Service in ns and resolve to its one
// ready endpoint.
func healthy(ws []callout.Webhook, ns string) int {
	n := 0
	for _, w := range ws {
		if w.Service != nil && w.Service.Namespace == ns && judged(w) == findings.Healthy && len(w.Backends) == 1 {
			n++
		}
	}
	return n
}

func waitUntil(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return ok(), nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// createPokeCallOuts creates the namespaces, the Services with their
// EndpointSlices (endpoints in the guarded 10.0.0.0/16), the webhooks, the
// APIServices and the CRDs, and waits until the API server has settled
// them (CRDs Established, APIServices checked), so that nothing changes
// once the inventory runs.
func createPokeCallOuts(ctx context.Context, t *testing.T, api kube.API, cfg *rest.Config) {
	t.Helper()
	for _, ns := range []string{pokeNS, lockedNS} {
		mustNamespace(ctx, t, api, ns)
	}
	slot := 0
	backend := func(ns, name string) {
		slot++
		mustBackend(ctx, t, api, ns, name, fmt.Sprintf("10.0.%d.%d", 9+slot/250, slot%250))
	}
	// The agent writes only typed objects: the APIServices and CRDs are
	// created through the dynamic client.
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	post := func(r schema.GroupVersionResource, obj map[string]any) {
		if _, err := dyn.Resource(r).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating %s %s: %v", r.Resource, obj["metadata"], err)
		}
	}
	for i := range pokeHooks {
		name := fmt.Sprintf("inv-%03d", i)
		backend(pokeNS, name)
		mustWebhook(ctx, t, api, "poke-"+name, pokeHookName(i), pokeNS, name)
	}
	for i := range pokeAPIs {
		name := fmt.Sprintf("api-%03d", i)
		backend(pokeNS, name)
		post(apiServicesGVR, pokeAPIService(pokeAPIName(i), pokeNS, name))
	}
	backend(lockedNS, lockedName)
	post(apiServicesGVR, pokeAPIService("v1alpha1.locked."+pokeGroup, lockedNS, lockedName))
	for i := range pokeConvs {
		name := fmt.Sprintf("conv-%03d", i)
		backend(pokeNS, name)
		post(crdsGVR, pokeCRD(i, name))
	}
	settleCallOuts(ctx, t, api, pokeConvs, pokeAPIs+1)
}

func pokeAPIService(name, ns, svc string) map[string]any {
	group := strings.TrimPrefix(name, "v1alpha1.")
	return map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": map[string]any{"name": name},
		"spec": map[string]any{"group": group, "version": "v1alpha1", "groupPriorityMinimum": 1000, "versionPriority": 15,
			"service": map[string]any{"namespace": ns, "name": svc, "port": 443}, "insecureSkipTLSVerify": true},
	}
}

// pokeCRD is CRD i, its v1 and v2 converted by a webhook at Service svc.
func pokeCRD(i int, svc string) map[string]any {
	openAPI := map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
	return map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": map[string]any{"name": pokeCRDName(i)},
		"spec": map[string]any{
			"group": strings.TrimPrefix(pokeCRDName(i), "widgets."), "scope": "Namespaced",
			"names": map[string]any{"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
			"versions": []any{
				map[string]any{"name": "v1", "served": true, "storage": true, "schema": openAPI},
				map[string]any{"name": "v2", "served": true, "storage": false, "schema": openAPI},
			},
			"conversion": map[string]any{"strategy": "Webhook", "webhook": map[string]any{"conversionReviewVersions": []string{"v1"},
				"clientConfig": map[string]any{"service": map[string]any{"namespace": pokeNS, "name": svc, "path": "/convert", "port": 443}}}},
		},
	}
}

// settleCallOuts waits until wantCRDs CRDs are Established and wantAPIs
// APIServices have their Available condition.
func settleCallOuts(ctx context.Context, t *testing.T, api kube.API, wantCRDs, wantAPIs int) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var crds, apis unstructured.UnstructuredList
		err1 := api.List(ctx, crdsGVR, "", metav1.ListOptions{}, &crds)
		err2 := api.List(ctx, apiServicesGVR, "", metav1.ListOptions{}, &apis)
		if err1 != nil || err2 != nil {
			last = fmt.Sprint(err1, err2)
			return false, nil
		}
		established, checked := withCondition(crds.Items, "widgets.", "Established", "True"), withCondition(apis.Items, "v1alpha1.", "Available", "")
		last = fmt.Sprintf("%d/%d CRDs Established, %d/%d APIServices checked", established, wantCRDs, checked, wantAPIs)
		return established == wantCRDs && checked == wantAPIs, nil
	})
	if err != nil {
		t.Fatalf("the call-outs settle: %v (%s)", err, last)
	}
}

// withCondition is how many of items are named prefix... within
// pokeGroup (not the aggregator's local APIServices for the CRDs'
// versions) and carry condition cond (with status, unless that is empty).
func withCondition(items []unstructured.Unstructured, prefix, cond, status string) int {
	n := 0
	for _, u := range items {
		if !strings.HasPrefix(u.GetName(), prefix) || !strings.HasSuffix(u.GetName(), pokeGroup) {
			continue
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == cond && (status == "" || m["status"] == status) {
				n++
			}
		}
	}
	return n
}
