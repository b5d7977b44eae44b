package inventory

import (
	"context"
	"fmt"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/internal/kube"
)

// Listed is a one-off resolution from listed objects, for the CLI.
type Listed struct {
	Webhooks   []callout.Webhook
	Validating []*admissionv1.ValidatingWebhookConfiguration
	Mutating   []*admissionv1.MutatingWebhookConfiguration
}

// FromLists resolves the webhooks of listed objects, as the informers would.
func FromLists(vwcs []admissionv1.ValidatingWebhookConfiguration, mwcs []admissionv1.MutatingWebhookConfiguration,
	apis []callout.APIService, convs []callout.Conversion, svcs []corev1.Service, slices []discoveryv1.EndpointSlice) Listed {
	var out Listed
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
	out.Webhooks = ResolveCallOuts(callout.CallOuts(out.Validating, out.Mutating, apis, convs...), sp, ep)
	describeAPIs(out.Webhooks, apis)
	describeConversions(out.Webhooks, convs)
	return out
}

// ListAPIServices reads the aggregated APIs through api, as unstructured
// objects.
func ListAPIServices(ctx context.Context, api kube.API) ([]callout.APIService, error) {
	var list unstructured.UnstructuredList
	if err := api.List(ctx, apiServicesGVR, "", metav1.ListOptions{}, &list); err != nil {
		return nil, fmt.Errorf("listing APIServices: %w", err)
	}
	out := make([]callout.APIService, 0, len(list.Items))
	for i := range list.Items {
		a, err := apiServiceOf(&list.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// ListConversions reads the CRDs' conversion webhooks through api, as
// unstructured objects.
func ListConversions(ctx context.Context, api kube.API) ([]callout.Conversion, error) {
	var list unstructured.UnstructuredList
	if err := api.List(ctx, crdsGVR, "", metav1.ListOptions{}, &list); err != nil {
		return nil, fmt.Errorf("listing CustomResourceDefinitions: %w", err)
	}
	var out []callout.Conversion
	for i := range list.Items {
		c, ok, err := conversionOf(&list.Items[i])
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, c)
		}
	}
	return out, nil
}
