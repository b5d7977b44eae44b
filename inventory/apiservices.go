package inventory

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/internal/kube"
)

// The aggregated APIs are read as unstructured objects: hookscope needs a
// handful of their fields, not the aggregator's typed clients and scheme.
var apiServicesGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// apiServiceOf reads an APIService from its unstructured form, field by
// field: every resolution reads them all, so no JSON round trip.
func apiServiceOf(u *unstructured.Unstructured) (callout.APIService, error) {
	o := u.Object
	a := callout.APIService{Name: u.GetName(), CAInjection: callout.CAInjectionOf(u.GetAnnotations())}
	var err error
	str := func(fields ...string) string {
		v, _, e := unstructured.NestedString(o, fields...)
		err = errors.Join(err, e)
		return v
	}
	a.Group, a.Version = str("spec", "group"), str("spec", "version")
	a.InsecureSkipTLSVerify, _, _ = unstructured.NestedBool(o, "spec", "insecureSkipTLSVerify")
	if ca := str("spec", "caBundle"); ca != "" {
		b, e := base64.StdEncoding.DecodeString(ca)
		err = errors.Join(err, e)
		a.CABundle = b
	}
	if svc, ok, _ := unstructured.NestedMap(o, "spec", "service"); ok {
		a.Service = &callout.ServiceRef{Namespace: str("spec", "service", "namespace"), Name: str("spec", "service", "name"), Port: 443}
		switch p := svc["port"].(type) {
		case nil:
		case int64: // as the API server's decoder gives numbers
			a.Service.Port = int32(p)
		case float64: // as encoding/json gives them
			a.Service.Port = int32(p)
		default:
			err = errors.Join(err, fmt.Errorf("spec.service.port is %T, not a number", p))
		}
	}
	conds, _, e := unstructured.NestedSlice(o, "status", "conditions")
	err = errors.Join(err, e)
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != "Available" {
			continue
		}
		a.Available.Status, _ = m["status"].(string)
		a.Available.Reason, _ = m["reason"].(string)
		a.Available.Message, _ = m["message"].(string)
	}
	if err != nil {
		return callout.APIService{}, fmt.Errorf("APIService %s: %w", u.GetName(), err)
	}
	return a, nil
}

// WatchAPIServices makes the inventory read the aggregated APIs too
// (call it before Run). Nothing waits for them: an agent that may not list
// APIServices resolves the webhooks all the same, and says so.
func (inv *Inventory) WatchAPIServices(api kube.API) {
	inv.apis = inv.dynamicInformer(api, apiServicesGVR, slimObject)
}

// dynamicInformer is an informer of gvr through api, as unstructured
// objects slimmed by transform, poking the inventory on changes. Run
// starts it (startCallOutInformers).
func (inv *Inventory) dynamicInformer(api kube.API, gvr schema.GroupVersionResource, transform cache.TransformFunc) cache.SharedIndexInformer {
	i := kube.NewInformer(api, gvr, "", nil, &unstructured.Unstructured{}, cache.Indexers{})
	_ = i.SetTransform(transform)
	_, _ = i.AddEventHandler(inv.pokeOnChange())
	inv.callOutTries = append(inv.callOutTries, kube.TrackTries(i).Done)
	return i
}

// startCallOutInformers runs the APIService and CRD informers, those there
// are, until ctx ends; each pokes the inventory once it has listed.
func (inv *Inventory) startCallOutInformers(ctx context.Context) {
	for _, i := range []cache.SharedIndexInformer{inv.apis, inv.crds} {
		if i == nil {
			continue
		}
		go i.RunWithContext(ctx)
		go func() {
			if kube.WaitSynced(ctx, i.HasSynced) {
				inv.poke()
			}
		}()
	}
}

// APIServices are the aggregated APIs as the informer holds them; one that
// does not read is logged and left out.
func (inv *Inventory) APIServices() []callout.APIService {
	if inv.apis == nil {
		return nil
	}
	var out []callout.APIService
	for _, o := range inv.apis.GetStore().List() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		a, err := apiServiceOf(u)
		if err != nil {
			inv.log.Warn("reading an APIService", "err", err)
			continue
		}
		out = append(out, a)
	}
	return out
}
