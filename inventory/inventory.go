// Package inventory resolves every admission webhook to what the API
// server will call (its Service, the endpoints behind the Service's port,
// their pods), from informers, and judges the objects alone: the failures
// that send no packet (ServiceNotFound, NoEndpoints, ...). It never reads
// Secrets.
package inventory

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/internal/kube"
)

// Inventory resolves the webhooks from informers on webhook configurations,
// Services and EndpointSlices.
//
// Its cost does not grow with the cluster: the webhook configurations are
// watched cluster-wide, but Services only in the namespaces that hold a
// webhook's Service (one namespaceWatch each), and EndpointSlices only for
// those Services (label selector kubernetes.io/service-name in (...)). A
// cluster with 30,000 pods and 3,000 unrelated Services costs an agent
// nothing more than an empty one, and their churn wakes it not at all.
//
// One namespace never stalls the others: a watch that cannot list (RBAC,
// an API server that drops it) leaves its webhooks unresolved, saying so,
// while every other webhook resolves; a webhook whose Service names cannot
// exist never reaches a selector.
type Inventory struct {
	api     kube.API
	log     *slog.Logger
	vwc     cache.SharedIndexInformer
	mwc     cache.SharedIndexInformer
	changed chan struct{}
	// apis reads the aggregated APIs (WatchAPIServices); nil: none.
	apis cache.SharedIndexInformer
	// crds reads the CRDs' conversion webhooks (WatchConversions); nil: none.
	crds cache.SharedIndexInformer
	// callOutTries say whether apis and crds have listed or failed to;
	// the first round waits for them up to callOutWait.
	callOutTries []cache.InformerSynced
	callOutWait  time.Duration
	// watches is owned by Run's goroutine.
	watches map[string]*namespaceWatch

	mu       sync.RWMutex
	webhooks []callout.Webhook
	stats    Stats
	// policies is the cluster's NetworkPolicies, watched only by the
	// agent that holds the Lease (WatchNetworkPolicies); nil until then.
	policies atomic.Pointer[informer]
	// budgets is the cluster's PodDisruptionBudgets, likewise
	// (WatchPodDisruptionBudgets).
	budgets atomic.Pointer[informer]
	// certs is cert-manager's Certificates, likewise, once the cluster has
	// their CRD (certificates.go).
	certs certificates
}

// Stats is what the inventory holds: the objects its informers cache, by
// kind, and the watches it keeps open on the API server.
type Stats struct {
	WebhookConfigurations int `json:"webhook_configurations"`
	Services              int `json:"services"`
	EndpointSlices        int `json:"endpoint_slices"`
	NetworkPolicies       int `json:"network_policies"`
	PodDisruptionBudgets  int `json:"pod_disruption_budgets"`
	// APIServices and CustomResourceDefinitions are what their informers
	// hold (a CRD without a conversion webhook as little more than its name).
	APIServices               int `json:"apiservices"`
	CustomResourceDefinitions int `json:"customresourcedefinitions"`
	// Namespaces are those watched for Services and EndpointSlices.
	Namespaces int `json:"namespaces"`
	Watches    int `json:"watches"`
}

// Bounds on the backend watches.
const (
	// maxSelectorNames: past this many Service names in one namespace, its
	// EndpointSlice watch selects every slice with a service-name label.
	maxSelectorNames = 100
	// maxNamespaces bounds the namespaces watched; webhooks past it stay
	// unresolved (and say so).
	maxNamespaces = 1000
	// firstSyncWait is how long a resolution waits for a new namespace's
	// watch before it resolves without it; the watch resolves its
	// webhooks when it syncs.
	firstSyncWait = 2 * time.Second
)

// New sets up the informers, reading through api; Run starts them.
func New(api kube.API, log *slog.Logger) *Inventory {
	if log == nil {
		log = slog.Default()
	}
	byNamespace := cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}
	inv := &Inventory{
		api:     api,
		log:     log,
		vwc:     kube.NewInformer(api, validatingGVR, metav1.NamespaceAll, nil, &admissionv1.ValidatingWebhookConfiguration{}, byNamespace),
		mwc:     kube.NewInformer(api, mutatingGVR, metav1.NamespaceAll, nil, &admissionv1.MutatingWebhookConfiguration{}, byNamespace),
		changed: make(chan struct{}, 1),
		watches: map[string]*namespaceWatch{},

		callOutWait: firstCallOutWait,
	}
	for _, i := range []cache.SharedIndexInformer{inv.vwc, inv.mwc} {
		_ = i.SetTransform(slimObject)
		_, _ = i.AddEventHandler(inv.pokeOnChange())
	}
	return inv
}

func (inv *Inventory) pokeOnChange() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { inv.poke() },
		UpdateFunc: func(any, any) { inv.poke() },
		DeleteFunc: func(any) { inv.poke() },
	}
}

// slimObject drops what the agent never reads, to keep informer memory small.
func slimObject(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a != nil {
			delete(a, corev1.LastAppliedConfigAnnotation)
		}
	}
	return obj, nil
}

// firstCallOutWait bounds how long the first inventory waits for the CRDs
// and APIServices once the webhook configurations have listed: a cluster
// with thousands of CRDs does not hold back its webhooks' checks; theirs
// come in a later round.
const firstCallOutWait = time.Second

func (inv *Inventory) poke() {
	select {
	case inv.changed <- struct{}{}:
	default:
	}
}

// Run starts the informers and waits for the configurations (bounded by
// syncTimeout: an error then), then resolves on every change, calling
// onChange with the new list. It returns when ctx ends.
//
// The CRD and APIService informers start with the configurations'. Their
// lists are the largest the agent reads at start (a CRD carries its whole
// schema): started once the configurations had listed, and resolved in a
// round of their own, they were the last thing an agent's first complete
// inventory waited for. The first round waits for them, up to
// callOutWait after the configurations, or until a list of them
// fails (an agent that may not read them resolves the webhooks all the
// same, and says so).
func (inv *Inventory) Run(ctx context.Context, syncTimeout time.Duration, onChange func([]callout.Webhook)) error {
	defer inv.stopWatches()
	stop := inv.runConfigurations(ctx)
	defer stop()
	inv.startCallOutInformers(ctx)
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	for _, c := range []struct {
		typ runtime.Object
		i   cache.SharedIndexInformer
	}{{&admissionv1.ValidatingWebhookConfiguration{}, inv.vwc}, {&admissionv1.MutatingWebhookConfiguration{}, inv.mwc}} {
		if !kube.WaitSynced(sctx, c.i.HasSynced) {
			return fmt.Errorf("syncing the %T informer within %s: the API server is unreachable or the agent may not list it (check RBAC)", c.typ, syncTimeout)
		}
	}
	wctx, wcancel := context.WithTimeout(sctx, inv.callOutWait)
	kube.WaitSynced(wctx, inv.callOutTries...)
	wcancel()
	inv.round(ctx, syncTimeout, onChange)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-inv.changed:
			// Let a burst of changes settle into one resolution.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return nil
			}
			inv.round(ctx, firstSyncWait, onChange)
		}
	}
}

// runConfigurations runs the webhook configurations' informers until ctx
// ends or stop, which returns once they have.
func (inv *Inventory) runConfigurations(ctx context.Context) (stop func()) {
	ictx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, i := range []cache.SharedIndexInformer{inv.vwc, inv.mwc} {
		wg.Go(func() { i.RunWithContext(ictx) })
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// round makes the backend watches match the call-outs (waiting up to wait
// for new ones to list), then resolves. It takes the pending poke first,
// before anything reads a store: what poked before is in this round, what
// pokes after makes another. Taken later (in resolve, as it once was), it
// lost a call-out that arrived while watchBackends waited: resolve read
// it, but its Service's name never reached its namespace's EndpointSlice
// selector, so it said NoEndpoints until something else changed. (The
// scale bench's Lease holder: the CRDs listed while the APIServices' new
// EndpointSlice watch did, and 20 conversion webhooks stayed NoEndpoints.)
// A new watch's own pokes while it lists cost one more round, no more.
func (inv *Inventory) round(ctx context.Context, wait time.Duration, onChange func([]callout.Webhook)) {
	select {
	case <-inv.changed:
	default:
	}
	inv.watchBackends(ctx, wait)
	inv.resolve(onChange)
}

// callOuts reads every call-out the informers hold: the webhooks, the
// aggregated APIs and the conversion webhooks.
func (inv *Inventory) callOuts() ([]callout.Hook, []callout.APIService, []callout.Conversion) {
	vwcs, mwcs := inv.Configurations()
	apis, convs := inv.APIServices(), inv.Conversions()
	return callout.CallOuts(vwcs, mwcs, apis, convs...), apis, convs
}

// wantedBackends is, per namespace, the sorted names of the Services the
// call-outs call; names that cannot be a Service are left
// out (the webhook says why: callout.Webhook.Invalid).
func wantedBackends(hooks []callout.Hook) map[string][]string {
	want := map[string][]string{}
	for _, h := range hooks {
		s := h.ClientConfig.Service
		if s == nil || !validService(s) || slices.Contains(want[s.Namespace], s.Name) {
			continue
		}
		if _, ok := want[s.Namespace]; !ok && len(want) >= maxNamespaces {
			continue
		}
		want[s.Namespace] = append(want[s.Namespace], s.Name)
	}
	for _, names := range want {
		sort.Strings(names)
	}
	return want
}

func (inv *Inventory) stopWatches() {
	for ns, w := range inv.watches {
		w.stop()
		delete(inv.watches, ns)
	}
}

func (inv *Inventory) resolve(onChange func([]callout.Webhook)) {
	var (
		svcs     []*corev1.Service
		eps      []*discoveryv1.EndpointSlice
		unsynced = map[string]string{}
	)
	hooks, apis, convs := inv.callOuts()
	for ns, w := range inv.watches {
		if !w.synced() {
			unsynced[ns] = w.why()
			continue
		}
		svcs, eps = w.list(svcs, eps)
	}
	ws := ResolveCallOuts(hooks, svcs, eps)
	describeAPIs(ws, apis)
	describeConversions(ws, convs)
	want := wantedBackends(hooks)
	for i := range ws {
		s := ws[i].Service
		if s == nil || !validService(&admissionv1.ServiceReference{Namespace: s.Namespace, Name: s.Name, Port: &s.Port}) {
			continue
		}
		if why, ok := unsynced[s.Namespace]; ok {
			ws[i].Unresolved = why
		} else if _, watched := want[s.Namespace]; !watched {
			ws[i].Unresolved = fmt.Sprintf("namespace %s is not watched: more than %d namespaces hold webhook Services", s.Namespace, maxNamespaces)
		} else if w := inv.watches[s.Namespace]; w != nil && !w.selects(s.Name) {
			// A call-out that arrived since the namespace's watch began:
			// its EndpointSlices are being listed, not missing.
			ws[i].Unresolved = "the EndpointSlices of Service " + s.Namespace + "/" + s.Name + " are being listed"
		}
	}
	budgets, _ := inv.PodDisruptionBudgets()
	inv.mu.Lock()
	inv.webhooks = ws
	inv.stats = Stats{
		WebhookConfigurations:     len(inv.vwc.GetStore().List()) + len(inv.mwc.GetStore().List()),
		Services:                  len(svcs),
		EndpointSlices:            len(eps),
		NetworkPolicies:           len(inv.NetworkPolicies()),
		PodDisruptionBudgets:      len(budgets),
		Namespaces:                len(inv.watches),
		APIServices:               storeLen(inv.apis),
		CustomResourceDefinitions: storeLen(inv.crds),
		Watches: 2 + 2*len(inv.watches) + inv.policyWatches() + inv.budgetWatches() +
			boolInt(inv.apis != nil) + boolInt(inv.crds != nil),
	}
	inv.mu.Unlock()
	if len(unsynced) > 0 {
		inv.log.Debug("inventory resolved with namespaces not listed yet", "namespaces", strings.Join(slices.Sorted(mapsKeys(unsynced)), ","))
	}
	onChange(ws)
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// WatchNetworkPolicies starts watching the cluster's NetworkPolicies, once:
// the agent that holds the Lease judges them for every webhook. One watch,
// not one per namespace: a cluster has few policies and many namespaces.
// Nothing waits for it: an agent that may not list them resolves the
// webhooks all the same.
func (inv *Inventory) WatchNetworkPolicies(ctx context.Context) {
	if inv.policies.Load() != nil {
		return
	}
	i := inv.runInformer(ctx, kube.NewInformer(inv.api, policiesGVR, metav1.NamespaceAll, nil, &networkingv1.NetworkPolicy{}, cache.Indexers{}))
	if !inv.policies.CompareAndSwap(nil, &i) {
		i.cancel()
	}
}

// policyWatches is 1 while the NetworkPolicies are watched.
// storeLen is how many objects informer i holds (0 without one).
func storeLen(i cache.SharedIndexInformer) int {
	if i == nil {
		return 0
	}
	return len(i.GetStore().ListKeys())
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (inv *Inventory) policyWatches() int {
	if inv.policies.Load() == nil {
		return 0
	}
	return 1
}

// NetworkPolicies are the cluster's NetworkPolicies, while watched.
func (inv *Inventory) NetworkPolicies() []*networkingv1.NetworkPolicy {
	i := inv.policies.Load()
	if i == nil {
		return nil
	}
	var out []*networkingv1.NetworkPolicy
	for _, o := range i.GetStore().List() {
		out = append(out, o.(*networkingv1.NetworkPolicy))
	}
	return out
}

// NetworkPoliciesIn are namespace ns's NetworkPolicies: from the watch
// when this agent keeps one, else read from the API server (an agent on
// a node asks only when a backend there stops answering).
func (inv *Inventory) NetworkPoliciesIn(ctx context.Context, ns string) ([]*networkingv1.NetworkPolicy, error) {
	if i := inv.policies.Load(); i != nil && i.HasSynced() {
		var out []*networkingv1.NetworkPolicy
		for _, np := range inv.NetworkPolicies() {
			if np.Namespace == ns {
				out = append(out, np)
			}
		}
		return out, nil
	}
	var list networkingv1.NetworkPolicyList
	if err := inv.api.List(ctx, policiesGVR, ns, metav1.ListOptions{}, &list); err != nil {
		return nil, err
	}
	out := make([]*networkingv1.NetworkPolicy, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	return out, nil
}

// Pod reads one pod from the API server.
func (inv *Inventory) Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	var pod corev1.Pod
	if err := inv.api.Get(ctx, podsGVR, namespace, name, &pod); err != nil {
		return nil, err
	}
	return &pod, nil
}

// Stats returns what the last resolution held.
func (inv *Inventory) Stats() Stats {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.stats
}

// Configurations returns the webhook configurations as the informers hold them.
func (inv *Inventory) Configurations() ([]*admissionv1.ValidatingWebhookConfiguration, []*admissionv1.MutatingWebhookConfiguration) {
	var (
		vwcs []*admissionv1.ValidatingWebhookConfiguration
		mwcs []*admissionv1.MutatingWebhookConfiguration
	)
	for _, o := range inv.vwc.GetStore().List() {
		vwcs = append(vwcs, o.(*admissionv1.ValidatingWebhookConfiguration))
	}
	for _, o := range inv.mwc.GetStore().List() {
		mwcs = append(mwcs, o.(*admissionv1.MutatingWebhookConfiguration))
	}
	return vwcs, mwcs
}

// Webhooks returns the last resolution.
func (inv *Inventory) Webhooks() []callout.Webhook {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return slices.Clone(inv.webhooks)
}
