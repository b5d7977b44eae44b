package inventory

import (
	"context"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/internal/kube"
)

// namespaceWatch caches the Services of one namespace and the
// EndpointSlices of the webhook Services in it. When the names change, a
// new EndpointSlice watch starts beside the old one, which serves until
// the new one has listed: a backend never looks gone while its watch
// restarts.
type namespaceWatch struct {
	ns        string
	svc       informer
	names     string // the webhook Services' names, sorted and comma-joined
	eps       informer
	next      *informer // the EndpointSlice watch for new names, until it syncs
	nextNames string
	started   time.Time
}

// informer is a running informer and its stop.
type informer struct {
	cache.SharedIndexInformer
	cancel context.CancelFunc
}

func (w *namespaceWatch) stop() {
	w.svc.cancel()
	w.eps.cancel()
	if w.next != nil {
		w.next.cancel()
	}
}

// synced reports whether the watch's Services and EndpointSlices are
// listed; a pending replacement that has synced takes over here.
func (w *namespaceWatch) synced() bool {
	if w.next != nil && w.next.HasSynced() {
		w.eps.cancel()
		w.eps, w.names, w.next = *w.next, w.nextNames, nil
	}
	return w.svc.HasSynced() && w.eps.HasSynced()
}

// selects reports whether the active EndpointSlice watch covers Service
// name (more than maxSelectorNames names: it watches them all).
func (w *namespaceWatch) selects(name string) bool {
	names := strings.Split(w.names, ",")
	return len(names) > maxSelectorNames || slices.Contains(names, name)
}

// why says why the watch has not listed yet.
func (w *namespaceWatch) why() string {
	return "the Services and EndpointSlices of namespace " + w.ns + " are not listed yet (since " + time.Since(w.started).Round(time.Second).String() +
		"; the API server is slow or the agent may not list them there: check RBAC)"
}

// list appends what the watch caches.
func (w *namespaceWatch) list(svcs []*corev1.Service, eps []*discoveryv1.EndpointSlice) ([]*corev1.Service, []*discoveryv1.EndpointSlice) {
	for _, o := range w.svc.GetStore().List() {
		svcs = append(svcs, o.(*corev1.Service))
	}
	for _, o := range w.eps.GetStore().List() {
		eps = append(eps, o.(*discoveryv1.EndpointSlice))
	}
	return svcs, eps
}

// watchBackends makes the namespace watches match the webhook
// configurations, then waits up to wait for the new ones to list. It never
// fails: a watch that has not listed leaves only its namespace's webhooks
// unresolved, and resolves them (a poke) when it has.
func (inv *Inventory) watchBackends(ctx context.Context, wait time.Duration) {
	hooks, _, _ := inv.callOuts()
	want := wantedBackends(hooks)
	for ns, w := range inv.watches {
		if _, ok := want[ns]; !ok {
			w.stop()
			delete(inv.watches, ns)
		}
	}
	var fresh []cache.InformerSynced
	for ns, names := range want {
		joined := strings.Join(names, ",")
		w := inv.watches[ns]
		switch {
		case w == nil:
			w = &namespaceWatch{ns: ns, names: joined, started: time.Now()}
			w.svc = inv.runInformer(ctx, kube.NewInformer(inv.api, servicesGVR, ns, nil, &corev1.Service{}, cache.Indexers{}))
			w.eps = inv.runInformer(ctx, inv.sliceInformer(ns, names))
			inv.watches[ns] = w
			fresh = append(fresh, w.svc.HasSynced, w.eps.HasSynced)
		case joined == w.names && w.next != nil:
			// Back to the names the active watch serves: the pending
			// replacement would take over with the wrong ones.
			w.next.cancel()
			w.next, w.nextNames = nil, ""
		case joined != w.names && joined != w.nextNames:
			if w.next != nil {
				w.next.cancel()
			}
			next := inv.runInformer(ctx, inv.sliceInformer(ns, names))
			w.next, w.nextNames = &next, joined
			fresh = append(fresh, next.HasSynced)
		}
	}
	if len(fresh) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	kube.WaitSynced(wctx, fresh...)
}

// sliceInformer watches the EndpointSlices of the named Services in ns.
func (inv *Inventory) sliceInformer(ns string, names []string) cache.SharedIndexInformer {
	var sel labels.Selector
	if len(names) > maxSelectorNames {
		req, _ := labels.NewRequirement(discoveryv1.LabelServiceName, selection.Exists, nil)
		sel = labels.NewSelector().Add(*req)
	} else {
		req, err := labels.NewRequirement(discoveryv1.LabelServiceName, selection.In, names)
		if err != nil { // the names were validated: this does not happen
			req, _ = labels.NewRequirement(discoveryv1.LabelServiceName, selection.Exists, nil)
		}
		sel = labels.NewSelector().Add(*req)
	}
	selector := sel.String()
	return kube.NewInformer(inv.api, slicesGVR, ns, func(o *metav1.ListOptions) { o.LabelSelector = selector },
		&discoveryv1.EndpointSlice{}, cache.Indexers{})
}

// runInformer slims what i caches, pokes the inventory on its changes and
// when it has listed, and runs it until its cancel or ctx ends.
func (inv *Inventory) runInformer(ctx context.Context, i cache.SharedIndexInformer) informer {
	return inv.runInformerWith(ctx, i, inv.pokeOnChange())
}

// runInformerWith is runInformer with the handler that pokes the
// inventory on i's changes.
func (inv *Inventory) runInformerWith(ctx context.Context, i cache.SharedIndexInformer, onChange cache.ResourceEventHandler) informer {
	ictx, cancel := context.WithCancel(ctx)
	_ = i.SetTransform(slimObject)
	_, _ = i.AddEventHandler(onChange)
	go i.RunWithContext(ictx)
	go func() {
		if kube.WaitSynced(ictx, i.HasSynced) {
			inv.poke()
		}
	}()
	return informer{SharedIndexInformer: i, cancel: cancel}
}
