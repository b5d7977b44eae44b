package inventory

import (
	"context"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/internal/kube"
)

// cert-manager's Certificates, read as unstructured objects only once
// the cluster has cert-manager's CRD, and only their Ready condition: the
// source cainjector injects a caBundle from (callout.CAInjection). Never
// the Secrets they are issued into.
var certificatesGVR = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}

// certificatesCRD is the CRD whose existence starts the watch.
const certificatesCRD = "certificates.cert-manager.io"

// certificates is the inventory's watch of cert-manager's Certificates.
type certificates struct {
	api kube.API
	inf atomic.Pointer[informer]
}

// ReadCertificates lets the inventory read cert-manager's Certificates
// through api (call before Run, with WatchConversions: the CRDs say
// whether cert-manager is there). WatchCertificates starts the watch.
func (inv *Inventory) ReadCertificates(api kube.API) { inv.certs.api = api }

// WatchCertificates starts watching cert-manager's Certificates, once,
// when the cluster has their CRD; until then it does nothing, so call it
// again when the inventory changes. The agent that holds the Lease calls
// it: the Certificates matter to the risks only. A Certificate that a
// call-out's annotation names wakes the inventory when it changes.
func (inv *Inventory) WatchCertificates(ctx context.Context) {
	c := &inv.certs
	if c.api == nil || c.inf.Load() != nil || inv.crds == nil || !inv.crds.HasSynced() {
		return
	}
	if _, exists, err := inv.crds.GetStore().GetByKey(certificatesCRD); err != nil || !exists {
		return
	}
	i := kube.NewInformer(c.api, certificatesGVR, "", nil, &unstructured.Unstructured{}, cache.Indexers{})
	_ = i.SetTransform(slimCertificate)
	_, _ = i.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { inv.pokeIfNamed(o) },
		UpdateFunc: func(_, o any) { inv.pokeIfNamed(o) },
		DeleteFunc: func(o any) { inv.pokeIfNamed(o) },
	})
	ictx, cancel := context.WithCancel(ctx)
	if !c.inf.CompareAndSwap(nil, &informer{SharedIndexInformer: i, cancel: cancel}) {
		cancel()
		return
	}
	go i.RunWithContext(ictx)
	go func() {
		if kube.WaitSynced(ictx, i.HasSynced) {
			inv.poke()
		}
	}()
}

// Certificates reads the watched Certificates: found is false for one
// that does not exist. It is nil while they are not known (no
// cert-manager CRD, not listed yet, or the agent may not list them): a
// Certificate not in the cache may yet exist.
func (inv *Inventory) Certificates() func(namespace, name string) (c callout.Certificate, found bool) {
	i := inv.certs.inf.Load()
	if i == nil || !i.HasSynced() {
		return nil
	}
	store := i.GetStore()
	return func(namespace, name string) (callout.Certificate, bool) {
		o, exists, err := store.GetByKey(namespace + "/" + name)
		if err != nil || !exists {
			return callout.Certificate{}, false
		}
		return certificateOf(o.(*unstructured.Unstructured)), true
	}
}

// certificateOf reads a Certificate's Ready condition.
func certificateOf(u *unstructured.Unstructured) callout.Certificate {
	var c callout.Certificate
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, o := range conds {
		m, ok := o.(map[string]any)
		if !ok || m["type"] != "Ready" {
			continue
		}
		c.Ready.Status, _ = m["status"].(string)
		c.Ready.Reason, _ = m["reason"].(string)
		c.Ready.Message, _ = m["message"].(string)
	}
	return c
}

// slimCertificate keeps of a Certificate its name and its Ready condition.
func slimCertificate(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	meta := map[string]any{"name": u.GetName(), "namespace": u.GetNamespace(), "resourceVersion": u.GetResourceVersion()}
	slim := map[string]any{"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(), "metadata": meta}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, o := range conds {
		if m, ok := o.(map[string]any); ok && m["type"] == "Ready" {
			slim["status"] = map[string]any{"conditions": []any{map[string]any{
				"type": "Ready", "status": m["status"], "reason": m["reason"], "message": m["message"]}}}
		}
	}
	return &unstructured.Unstructured{Object: slim}, nil
}

// pokeIfNamed wakes the inventory when a call-out's annotation names the
// Certificate o: its readiness changes the risks.
func (inv *Inventory) pokeIfNamed(o any) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return
	}
	key := u.GetNamespace() + "/" + u.GetName()
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	for _, w := range inv.webhooks {
		if w.CAInjection != nil && w.CAInjection.Certificate == key {
			inv.poke()
			return
		}
	}
}
