package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Inventory resolves every admission webhook to the endpoints the API
// server will dial, from informers on webhook configurations, Services and
// EndpointSlices. It never reads Secrets.
//
// Its cost does not grow with the cluster: the webhook configurations are
// watched cluster-wide, but Services only in the namespaces that hold a
// webhook's Service (one backendWatch per namespace), and EndpointSlices
// only for those Services (label selector kubernetes.io/service-name in
// (...)). A cluster with 30,000 pods and 3,000 unrelated Services costs an
// agent nothing more than an empty one, and their churn wakes it not at
// all.
type Inventory struct {
	client  kubernetes.Interface
	log     *slog.Logger
	factory informers.SharedInformerFactory
	vwc     cache.SharedIndexInformer
	mwc     cache.SharedIndexInformer

	changed chan struct{}

	// watches is owned by Run's goroutine; stats is what the last
	// resolution held, for Stats.
	watches map[string]*backendWatch

	mu       sync.RWMutex
	webhooks []Webhook
	stats    InventoryStats
}

// InventoryStats is what the inventory holds: the objects its informers
// cache, by kind, and the watches it keeps open on the API server.
type InventoryStats struct {
	WebhookConfigurations int `json:"webhook_configurations"`
	Services              int `json:"services"`
	EndpointSlices        int `json:"endpoint_slices"`
	// Namespaces are those watched for Services and EndpointSlices.
	Namespaces int `json:"namespaces"`
	Watches    int `json:"watches"`
}

// backendWatch caches the Services of one namespace and the EndpointSlices
// of the webhook Services in it.
type backendWatch struct {
	svc       cache.SharedIndexInformer
	svcCancel context.CancelFunc
	names     string // the webhook Services' names, sorted and comma-joined
	eps       cache.SharedIndexInformer
	epsCancel context.CancelFunc
}

func (w *backendWatch) stop() {
	w.svcCancel()
	w.epsCancel()
}

// NewInventory sets up the informers; Run starts them.
func NewInventory(client kubernetes.Interface) *Inventory {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(slimObject))
	inv := &Inventory{
		client:  client,
		log:     slog.Default(),
		factory: f,
		vwc:     f.Admissionregistration().V1().ValidatingWebhookConfigurations().Informer(),
		mwc:     f.Admissionregistration().V1().MutatingWebhookConfigurations().Informer(),
		changed: make(chan struct{}, 1),
		watches: map[string]*backendWatch{},
	}
	for _, i := range []cache.SharedIndexInformer{inv.vwc, inv.mwc} {
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

func (inv *Inventory) poke() {
	select {
	case inv.changed <- struct{}{}:
	default:
	}
}

// Run starts the informers and waits for their caches (bounded by
// syncTimeout), then re-resolves on every change, calling onChange with the
// new list. It returns when ctx ends.
func (inv *Inventory) Run(ctx context.Context, syncTimeout time.Duration, onChange func([]Webhook)) error {
	defer inv.stopWatches()
	inv.factory.Start(ctx.Done())
	defer inv.factory.Shutdown()
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	for typ, ok := range inv.factory.WaitForCacheSync(sctx.Done()) {
		if !ok {
			return fmt.Errorf("syncing the %v informer within %s: the API server is unreachable or the agent may not list it (check RBAC)", typ, syncTimeout)
		}
	}
	if err := inv.watchBackends(sctx); err != nil {
		return err
	}
	inv.resolve(onChange)
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
			wctx, cancel := context.WithTimeout(ctx, syncTimeout)
			err := inv.watchBackends(wctx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				// Resolving now would call a Service that is only not
				// cached yet "not found": keep the last resolution and
				// try again.
				inv.log.Warn("inventory not re-resolved: a backend watch is not synced; retrying in 1s", "err", err)
				time.AfterFunc(time.Second, inv.poke)
				continue
			}
			inv.resolve(onChange)
		}
	}
}

// wantedBackends is, per namespace, the sorted names of the Services the
// webhook configurations call.
func (inv *Inventory) wantedBackends() map[string][]string {
	vwcs, mwcs := inv.Configurations()
	want := map[string][]string{}
	add := func(cc admissionv1.WebhookClientConfig) {
		if s := cc.Service; s != nil && s.Namespace != "" && s.Name != "" && !slices.Contains(want[s.Namespace], s.Name) {
			want[s.Namespace] = append(want[s.Namespace], s.Name)
		}
	}
	for _, c := range vwcs {
		for _, w := range c.Webhooks {
			add(w.ClientConfig)
		}
	}
	for _, c := range mwcs {
		for _, w := range c.Webhooks {
			add(w.ClientConfig)
		}
	}
	for _, names := range want {
		sort.Strings(names)
	}
	return want
}

// watchBackends makes the backend watches match the webhook configurations:
// one per namespace that holds a webhook Service, its EndpointSlice
// selector naming exactly those Services (a change of names restarts only
// the EndpointSlice watch). It returns once every watch is synced, so a
// resolution never mistakes a Service not cached yet for one that does not
// exist.
func (inv *Inventory) watchBackends(ctx context.Context) error {
	want := inv.wantedBackends()
	for ns, w := range inv.watches {
		if _, ok := want[ns]; !ok {
			w.stop()
			delete(inv.watches, ns)
		}
	}
	for ns, names := range want {
		w := inv.watches[ns]
		if w == nil {
			w = &backendWatch{}
			w.svc, w.svcCancel = inv.runInformer(coreinformers.NewServiceInformer(inv.client, ns, 0, cache.Indexers{}))
			inv.watches[ns] = w
		}
		if joined := strings.Join(names, ","); joined != w.names {
			if w.epsCancel != nil {
				w.epsCancel()
			}
			selector := fmt.Sprintf("%s in (%s)", discoveryv1.LabelServiceName, joined)
			w.names = joined
			w.eps, w.epsCancel = inv.runInformer(discoveryinformers.NewFilteredEndpointSliceInformer(inv.client, ns, 0, cache.Indexers{},
				func(o *metav1.ListOptions) { o.LabelSelector = selector }))
		}
	}
	for ns, w := range inv.watches {
		if !cache.WaitForCacheSync(ctx.Done(), w.svc.HasSynced, w.eps.HasSynced) {
			return fmt.Errorf("syncing the Services and EndpointSlices of namespace %s: %w (the API server is unreachable or the agent may not list them: check RBAC)", ns, context.Cause(ctx))
		}
	}
	return nil
}

// runInformer slims what i caches, pokes the inventory on its changes and
// runs it until the returned cancel.
func (inv *Inventory) runInformer(i cache.SharedIndexInformer) (cache.SharedIndexInformer, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	_ = i.SetTransform(slimObject)
	_, _ = i.AddEventHandler(inv.pokeOnChange())
	go i.RunWithContext(ctx)
	return i, cancel
}

func (inv *Inventory) stopWatches() {
	for ns, w := range inv.watches {
		w.stop()
		delete(inv.watches, ns)
	}
}

func (inv *Inventory) resolve(onChange func([]Webhook)) {
	// What poked before the stores are read is in this resolution: a
	// watch started for a new webhook pokes once per object it lists.
	select {
	case <-inv.changed:
	default:
	}
	var (
		svcs []*corev1.Service
		eps  []*discoveryv1.EndpointSlice
	)
	vwcs, mwcs := inv.Configurations()
	for _, w := range inv.watches {
		for _, o := range w.svc.GetStore().List() {
			svcs = append(svcs, o.(*corev1.Service))
		}
		for _, o := range w.eps.GetStore().List() {
			eps = append(eps, o.(*discoveryv1.EndpointSlice))
		}
	}
	ws := Resolve(vwcs, mwcs, svcs, eps)
	inv.mu.Lock()
	inv.webhooks = ws
	inv.stats = InventoryStats{
		WebhookConfigurations: len(vwcs) + len(mwcs),
		Services:              len(svcs),
		EndpointSlices:        len(eps),
		Namespaces:            len(inv.watches),
		Watches:               2 + 2*len(inv.watches),
	}
	inv.mu.Unlock()
	onChange(ws)
}

// Stats returns what the last resolution held.
func (inv *Inventory) Stats() InventoryStats {
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

// ListedInventory is a one-off resolution from listed objects, for the CLI.
type ListedInventory struct {
	Webhooks   []Webhook
	Validating []*admissionv1.ValidatingWebhookConfiguration
	Mutating   []*admissionv1.MutatingWebhookConfiguration
}

// InventoryFromLists resolves the webhooks of listed objects, as the
// informers would.
func InventoryFromLists(vwcs []admissionv1.ValidatingWebhookConfiguration, mwcs []admissionv1.MutatingWebhookConfiguration,
	svcs []corev1.Service, slices []discoveryv1.EndpointSlice) ListedInventory {
	var out ListedInventory
	for i := range vwcs {
		out.Validating = append(out.Validating, &vwcs[i])
	}
	for i := range mwcs {
		out.Mutating = append(out.Mutating, &mwcs[i])
	}
	sp := make([]*corev1.Service, len(svcs))
	for i := range svcs {
		sp[i] = &svcs[i]
	}
	ep := make([]*discoveryv1.EndpointSlice, len(slices))
	for i := range slices {
		ep[i] = &slices[i]
	}
	out.Webhooks = Resolve(out.Validating, out.Mutating, sp, ep)
	return out
}

// Webhooks returns the last resolution.
func (inv *Inventory) Webhooks() []Webhook {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return slices.Clone(inv.webhooks)
}

// Resolve maps each webhook of the configurations to its backends: the
// Service port it names, that port's target in the Service, and the
// EndpointSlice addresses and ports for it (named target ports resolve
// through the slices, as the API server's endpoint routing does).
func Resolve(vwcs []*admissionv1.ValidatingWebhookConfiguration, mwcs []*admissionv1.MutatingWebhookConfiguration,
	svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) []Webhook {
	svcByKey := map[string]*corev1.Service{}
	for _, s := range svcs {
		svcByKey[s.Namespace+"/"+s.Name] = s
	}
	slicesBySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, es := range slices {
		name := es.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		slicesBySvc[es.Namespace+"/"+name] = append(slicesBySvc[es.Namespace+"/"+name], es)
	}

	var out []Webhook
	add := func(ref WebhookRef, cc admissionv1.WebhookClientConfig, fp *admissionv1.FailurePolicyType, timeout *int32) {
		w := Webhook{Ref: ref, FailurePolicy: string(admissionv1.Fail), TimeoutSeconds: 10, CABundle: cc.CABundle}
		if fp != nil {
			w.FailurePolicy = string(*fp)
		}
		if timeout != nil {
			w.TimeoutSeconds = *timeout
		}
		if cc.URL != nil {
			w.URL = *cc.URL
		}
		if s := cc.Service; s != nil {
			ref := &ServiceRef{Namespace: s.Namespace, Name: s.Name, Port: 443}
			if s.Port != nil {
				ref.Port = *s.Port
			}
			if s.Path != nil {
				ref.Path = *s.Path
			}
			w.Service = ref
			key := s.Namespace + "/" + s.Name
			svc := svcByKey[key]
			w.Backends = backendsOf(svc, ref.Port, slicesBySvc[key])
			if svc != nil {
				w.ServiceSelector = svc.Spec.Selector
			}
			w.Problem, w.ProblemDetail = objectProblem(svc, ref, w.Backends)
		}
		out = append(out, w)
	}
	for _, c := range vwcs {
		for _, wh := range c.Webhooks {
			add(WebhookRef{Kind: "Validating", Configuration: c.Name, Name: wh.Name}, wh.ClientConfig, wh.FailurePolicy, wh.TimeoutSeconds)
		}
	}
	for _, c := range mwcs {
		for _, wh := range c.Webhooks {
			add(WebhookRef{Kind: "Mutating", Configuration: c.Name, Name: wh.Name}, wh.ClientConfig, wh.FailurePolicy, wh.TimeoutSeconds)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref.String() < out[j].Ref.String() })
	return out
}

// objectProblem says what the API server will hit when it calls the
// webhook, from the Service and its endpoints alone, in the API server's
// words where it has them.
func objectProblem(svc *corev1.Service, ref *ServiceRef, backends []BackendTarget) (FailureClass, string) {
	if svc == nil {
		return ServiceNotFound, fmt.Sprintf("service %q not found", ref.Name)
	}
	hasPort := false
	for _, p := range svc.Spec.Ports {
		hasPort = hasPort || p.Port == ref.Port
	}
	if !hasPort {
		return PortMismatch, fmt.Sprintf("service %q has no port %d", ref.Name, ref.Port)
	}
	ready := 0
	for _, b := range backends {
		if b.Ready {
			ready++
		}
	}
	switch {
	case ready > 0:
		return "", ""
	case len(backends) > 0:
		return BackendPodsNotReady, fmt.Sprintf("%d endpoints of service %q, none ready", len(backends), ref.Name)
	default:
		return NoEndpoints, fmt.Sprintf("no endpoints available for service %q", ref.Name)
	}
}

// backendsOf finds the endpoints behind port of svc. A nil svc (Service not
// found) or a port the Service does not have yields none.
func backendsOf(svc *corev1.Service, port int32, slices []*discoveryv1.EndpointSlice) []BackendTarget {
	if svc == nil {
		return nil
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == port {
			sp = &svc.Spec.Ports[i]
			break
		}
	}
	if sp == nil {
		return nil
	}
	var out []BackendTarget
	for _, es := range slices {
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		target := int32(-1)
		for _, p := range es.Ports {
			// The slice's port carries the Service port's name and the
			// resolved number (named target ports included).
			if p.Port != nil && ptrString(p.Name) == sp.Name {
				target = *p.Port
			}
		}
		if target < 0 {
			continue
		}
		for _, ep := range es.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			var pod *PodRef
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				pod = &PodRef{Namespace: ep.TargetRef.Namespace, Name: ep.TargetRef.Name, Node: ptrString(ep.NodeName)}
			}
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue // a malformed address is skipped, never guessed
				}
				out = append(out, BackendTarget{Addr: netip.AddrPortFrom(ip, uint16(target)), Pod: pod, Ready: ready,
					Terminating: ep.Conditions.Terminating != nil && *ep.Conditions.Terminating})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Compare(out[j].Addr) < 0 })
	return out
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// describeBackends is a short human form for logs.
func describeBackends(bs []BackendTarget) string {
	parts := make([]string, 0, len(bs))
	for _, b := range bs {
		s := b.Addr.String()
		if b.Pod != nil {
			s += "(" + b.Pod.Namespace + "/" + b.Pod.Name + ")"
		}
		if !b.Ready {
			s += "[not ready]"
		}
		if b.Terminating {
			s += "[terminating]"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}
