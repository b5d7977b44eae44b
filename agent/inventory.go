package agent

import (
	"context"
	"fmt"
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
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Inventory resolves every admission webhook to the endpoints the API
// server will dial, from informers on webhook configurations, Services and
// EndpointSlices. It never reads Secrets.
type Inventory struct {
	factory informers.SharedInformerFactory
	vwc     cache.SharedIndexInformer
	mwc     cache.SharedIndexInformer
	svc     cache.SharedIndexInformer
	eps     cache.SharedIndexInformer

	changed chan struct{}

	mu       sync.RWMutex
	webhooks []Webhook
}

// NewInventory sets up the informers; Run starts them.
func NewInventory(client kubernetes.Interface) *Inventory {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(slimObject))
	inv := &Inventory{
		factory: f,
		vwc:     f.Admissionregistration().V1().ValidatingWebhookConfigurations().Informer(),
		mwc:     f.Admissionregistration().V1().MutatingWebhookConfigurations().Informer(),
		svc:     f.Core().V1().Services().Informer(),
		eps:     f.Discovery().V1().EndpointSlices().Informer(),
		changed: make(chan struct{}, 1),
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { inv.poke() },
		UpdateFunc: func(any, any) { inv.poke() },
		DeleteFunc: func(any) { inv.poke() },
	}
	for _, i := range []cache.SharedIndexInformer{inv.vwc, inv.mwc, inv.svc, inv.eps} {
		_, _ = i.AddEventHandler(h)
	}
	return inv
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
	inv.factory.Start(ctx.Done())
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	for typ, ok := range inv.factory.WaitForCacheSync(sctx.Done()) {
		if !ok {
			return fmt.Errorf("syncing the %v informer within %s: the API server is unreachable or the agent may not list it (check RBAC)", typ, syncTimeout)
		}
	}
	inv.resolve(onChange)
	for {
		select {
		case <-ctx.Done():
			inv.factory.Shutdown()
			return nil
		case <-inv.changed:
			// Let a burst of changes settle into one resolution.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
			}
			inv.resolve(onChange)
		}
	}
}

func (inv *Inventory) resolve(onChange func([]Webhook)) {
	var (
		svcs []*corev1.Service
		eps  []*discoveryv1.EndpointSlice
	)
	vwcs, mwcs := inv.Configurations()
	for _, o := range inv.svc.GetStore().List() {
		svcs = append(svcs, o.(*corev1.Service))
	}
	for _, o := range inv.eps.GetStore().List() {
		eps = append(eps, o.(*discoveryv1.EndpointSlice))
	}
	ws := Resolve(vwcs, mwcs, svcs, eps)
	inv.mu.Lock()
	inv.webhooks = ws
	inv.mu.Unlock()
	onChange(ws)
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
