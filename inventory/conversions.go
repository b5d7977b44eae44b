package inventory

import (
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/internal/kube"
)

// CRDs are read as unstructured objects, and kept small: a CRD's
// schemas can weigh hundreds of KB, and hookscope reads its conversion
// webhook only. A CRD without one is kept as its name.
var crdsGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// crdObject is the part of a CRD hookscope reads.
type crdObject struct {
	Metadata struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Versions []struct {
			Name   string `json:"name"`
			Served bool   `json:"served"`
		} `json:"versions"`
		Conversion *struct {
			Strategy string `json:"strategy"`
			Webhook  *struct {
				ClientConfig *admissionv1.WebhookClientConfig `json:"clientConfig"`
			} `json:"webhook"`
		} `json:"conversion"`
	} `json:"spec"`
}

// conversionOf reads a CRD's conversion webhook; ok is false when it has
// none.
func conversionOf(u *unstructured.Unstructured) (callout.Conversion, bool, error) {
	if strategy, _, _ := unstructured.NestedString(u.Object, "spec", "conversion", "strategy"); strategy != "Webhook" {
		return callout.Conversion{}, false, nil // most CRDs: nothing to read
	}
	raw, err := json.Marshal(u.Object)
	if err != nil {
		return callout.Conversion{}, false, err
	}
	c, ok, err := ConversionFromJSON(raw)
	if err != nil {
		return callout.Conversion{}, false, fmt.Errorf("CRD %s: %w", u.GetName(), err)
	}
	return c, ok, nil
}

// ConversionFromJSON reads a CRD, as JSON, for its conversion webhook (the
// inventory's informer and hookscope lint's manifests); ok is false when
// it has none.
func ConversionFromJSON(raw []byte) (callout.Conversion, bool, error) {
	var o crdObject
	if err := json.Unmarshal(raw, &o); err != nil {
		return callout.Conversion{}, false, err
	}
	cv := o.Spec.Conversion
	if cv == nil || cv.Strategy != "Webhook" || cv.Webhook == nil || cv.Webhook.ClientConfig == nil {
		return callout.Conversion{}, false, nil
	}
	c := callout.Conversion{CRD: o.Metadata.Name, Group: o.Spec.Group, Kind: o.Spec.Names.Kind, ClientConfig: *cv.Webhook.ClientConfig,
		CAInjection: callout.CAInjectionOf(o.Metadata.Annotations)}
	for _, v := range o.Spec.Versions {
		if v.Served {
			c.Versions = append(c.Versions, v.Name)
		}
	}
	return c, true, nil
}

// slimCRD keeps of a CRD what conversionOf reads: its name always, the
// rest only when it converts with a webhook.
func slimCRD(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	if strategy, _, _ := unstructured.NestedString(u.Object, "spec", "conversion", "strategy"); strategy != "Webhook" {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(),
			"metadata": map[string]any{"name": u.GetName(), "resourceVersion": u.GetResourceVersion()}}}, nil
	}
	if versions, ok, _ := unstructured.NestedSlice(u.Object, "spec", "versions"); ok {
		for _, v := range versions {
			if m, ok := v.(map[string]any); ok {
				delete(m, "schema")
				delete(m, "additionalPrinterColumns")
				delete(m, "subresources")
			}
		}
		_ = unstructured.SetNestedSlice(u.Object, versions, "spec", "versions")
	}
	delete(u.Object, "status")
	u.SetManagedFields(nil)
	return u, nil
}

// WatchConversions makes the inventory read the CRDs' conversion webhooks
// too (call it before Run). Nothing waits for them.
func (inv *Inventory) WatchConversions(api kube.API) {
	inv.crds = inv.dynamicInformer(api, crdsGVR, slimCRD)
}

// Conversions are the CRDs' conversion webhooks as the informer holds them.
func (inv *Inventory) Conversions() []callout.Conversion {
	if inv.crds == nil {
		return nil
	}
	var out []callout.Conversion
	for _, o := range inv.crds.GetStore().List() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		c, ok, err := conversionOf(u)
		if err != nil {
			inv.log.Warn("reading a CRD's conversion webhook", "err", err)
			continue
		}
		if ok {
			out = append(out, c)
		}
	}
	return out
}
