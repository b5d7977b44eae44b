package inventory

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/callout"
)

// The aggregated APIs are read through the dynamic client: hookscope needs
// a handful of their fields, not the aggregator's typed clients and
// scheme.
var apiServicesGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// apiServiceObject is the part of an APIService hookscope reads.
type apiServiceObject struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Service *struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
			Port      *int32 `json:"port"`
		} `json:"service"`
		Group                 string `json:"group"`
		Version               string `json:"version"`
		CABundle              []byte `json:"caBundle"`
		InsecureSkipTLSVerify bool   `json:"insecureSkipTLSVerify"`
	} `json:"spec"`
	Status struct {
		Conditions []struct {
			Type string `json:"type"`
			callout.Condition
		} `json:"conditions"`
	} `json:"status"`
}

// apiServiceOf reads an APIService from its unstructured form.
func apiServiceOf(u *unstructured.Unstructured) (callout.APIService, error) {
	raw, err := json.Marshal(u.Object)
	if err != nil {
		return callout.APIService{}, err
	}
	var o apiServiceObject
	if err := json.Unmarshal(raw, &o); err != nil {
		return callout.APIService{}, fmt.Errorf("APIService %s: %w", u.GetName(), err)
	}
	a := callout.APIService{Name: o.Metadata.Name, Group: o.Spec.Group, Version: o.Spec.Version,
		CABundle: o.Spec.CABundle, InsecureSkipTLSVerify: o.Spec.InsecureSkipTLSVerify}
	if s := o.Spec.Service; s != nil {
		a.Service = &callout.ServiceRef{Namespace: s.Namespace, Name: s.Name, Port: 443}
		if s.Port != nil {
			a.Service.Port = *s.Port
		}
	}
	for _, c := range o.Status.Conditions {
		if c.Type == "Available" {
			a.Available = c.Condition
		}
	}
	return a, nil
}

// WatchAPIServices makes the inventory read the aggregated APIs too
// (call it before Run). Nothing waits for them: an agent that may not list
// APIServices resolves the webhooks all the same, and says so.
func (inv *Inventory) WatchAPIServices(client dynamic.Interface) {
	i := dynamicinformer.NewFilteredDynamicInformer(client, apiServicesGVR, "", 0, cache.Indexers{}, nil).Informer()
	_ = i.SetTransform(slimObject)
	_, _ = i.AddEventHandler(inv.pokeOnChange())
	inv.apis = i
}

// startAPIServices runs the APIService informer until ctx ends.
func (inv *Inventory) startAPIServices(ctx context.Context) {
	if inv.apis == nil {
		return
	}
	go inv.apis.RunWithContext(ctx)
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), inv.apis.HasSynced) {
			inv.poke()
		}
	}()
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
