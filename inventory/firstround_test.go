//go:build linux

package inventory

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/chaos"
)

// crdTransport answers the inventory's CRD requests late, or refuses them
// as an API server does an agent whose role may not list CRDs.
type crdTransport struct {
	next   http.RoundTripper
	delay  time.Duration
	refuse bool
}

func (t crdTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(r.URL.Path, "/customresourcedefinitions") {
		return t.next.RoundTrip(r)
	}
	if t.refuse {
		body := `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,` +
			`"message":"customresourcedefinitions.apiextensions.k8s.io is forbidden: User \"agent\" cannot list resource \"customresourcedefinitions\""}`
		return &http.Response{StatusCode: http.StatusForbidden, Status: "403 Forbidden", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	}
	select {
	case <-time.After(t.delay):
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	return t.next.RoundTrip(r)
}

// TestFirstInventoryHoldsTheCallOuts runs the inventory against a real
// kube-apiserver holding a webhook, an APIService and a conversion webhook,
// each with its Service and an endpoint. Its first resolution, the one an
// agent's /readyz waits for, holds all three resolved to their endpoints,
// although the CRDs list after the webhook configurations: an agent no
// longer reported a complete inventory only after a second round, with
// watches of its own. An agent whose role may not list CRDs does not wait
// for them: its first resolution comes with what it may read, however long
// it would wait for a list.
func TestFirstInventoryHoldsTheCallOuts(t *testing.T) {
	ctx, cluster, _ := chaos.LocalForTest(t, "invfirst", 3*time.Minute)
	cfg := configOf(t, cluster)
	api := newAPI(t, rest.CopyConfig(cfg))
	mustNamespace(ctx, t, api, pokeNS)
	mustBackend(ctx, t, api, pokeNS, "hook", "10.0.20.1")
	mustBackend(ctx, t, api, pokeNS, "api", "10.0.20.2")
	mustBackend(ctx, t, api, pokeNS, "conv", "10.0.20.3")
	mustWebhook(ctx, t, api, "first", "vfirst."+pokeGroup, pokeNS, "hook")
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for r, obj := range map[schema.GroupVersionResource]map[string]any{
		apiServicesGVR: pokeAPIService(pokeAPIName(0), pokeNS, "api"),
		crdsGVR:        pokeCRD(0, "conv"),
	} {
		if _, err := dyn.Resource(r).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating %s: %v", r.Resource, err)
		}
	}
	settleCallOuts(ctx, t, api, 1, 1)

	// first runs an inventory whose CRD requests go through tr, and
	// returns its first resolution.
	first := func(t *testing.T, tr crdTransport) *resolutions {
		c := rest.CopyConfig(cfg)
		c.Wrap(func(rt http.RoundTripper) http.RoundTripper { tr.next = rt; return tr })
		a := newAPI(t, c)
		inv := New(a, nil)
		inv.callOutWait = time.Hour // only a list or its failure ends the wait
		inv.WatchAPIServices(a)
		inv.WatchConversions(a)
		rec := &resolutions{}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- inv.Run(rctx, 30*time.Second, rec.add) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("inventory: %v", err)
			}
		})
		waitUntil(t, "the first resolution", 30*time.Second, func() bool { return rec.count() > 0 })
		return rec
	}

	t.Run("listed late", func(t *testing.T) {
		rec := first(t, crdTransport{delay: 500 * time.Millisecond})
		rec.mu.Lock()
		ws := rec.all[0]
		rec.mu.Unlock()
		if n := healthy(ws, pokeNS); n != 3 {
			t.Errorf("the first resolution holds %d call-outs resolved to their endpoint, want 3 (webhook, APIService, conversion): %v", n, refs(ws))
		}
		if w, ok := find(ws, pokeCRDName(0)); !ok || !w.IsConversion() {
			t.Errorf("the first resolution has no conversion webhook %s: %v", pokeCRDName(0), refs(ws))
		}
	})
	t.Run("refused", func(t *testing.T) {
		rec := first(t, crdTransport{refuse: true})
		rec.mu.Lock()
		ws := rec.all[0]
		rec.mu.Unlock()
		if n := healthy(ws, pokeNS); n != 2 {
			t.Errorf("the first resolution holds %d call-outs resolved to their endpoint, want 2 (webhook, APIService): %v", n, refs(ws))
		}
		if _, ok := find(ws, pokeCRDName(0)); ok {
			t.Errorf("a conversion webhook the agent may not list was resolved: %v", refs(ws))
		}
	})
}

// refs names the call-outs of ws.
func refs(ws []callout.Webhook) []string {
	out := make([]string, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.Ref.String()+" "+string(judged(w)))
	}
	return out
}
