package inventory

import (
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/hookscope/hookscope/callout"
)

// Listed is a one-off resolution from listed objects, for the CLI.
type Listed struct {
	Webhooks   []callout.Webhook
	Validating []*admissionv1.ValidatingWebhookConfiguration
	Mutating   []*admissionv1.MutatingWebhookConfiguration
}

// FromLists resolves the webhooks of listed objects, as the informers would.
func FromLists(vwcs []admissionv1.ValidatingWebhookConfiguration, mwcs []admissionv1.MutatingWebhookConfiguration,
	svcs []corev1.Service, slices []discoveryv1.EndpointSlice) Listed {
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
	out.Webhooks = Resolve(out.Validating, out.Mutating, sp, ep)
	return out
}
