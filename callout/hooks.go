package callout

import (
	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Hook is one view of a validating or mutating webhook as its
// configuration writes it. k8s.io/apiserver's WebhookAccessor is the same
// view, but its package links the API server's CEL and REST clients (about
// 20 MB more binary); this is the part hookscope reads.
type Hook struct {
	Ref               Ref
	Mutating          bool
	Reinvoke          bool // reinvocationPolicy IfNeeded (mutating only)
	ClientConfig      admissionv1.WebhookClientConfig
	Rules             []admissionv1.RuleWithOperations
	FailurePolicy     *admissionv1.FailurePolicyType
	MatchPolicy       *admissionv1.MatchPolicyType
	NamespaceSelector *metav1.LabelSelector
	ObjectSelector    *metav1.LabelSelector
	SideEffects       *admissionv1.SideEffectClass
	TimeoutSeconds    *int32
	MatchConditions   []admissionv1.MatchCondition
	// InsecureSkipTLSVerify: the API server does not verify the serving
	// certificate (an APIService may say so; a webhook cannot).
	InsecureSkipTLSVerify bool
	// ReviewProbe: the configuration opts in to review probes
	// (ReviewProbeAnnotation).
	ReviewProbe bool
	// CAInjection is what the configuration's annotations ask
	// cert-manager's cainjector to write into the caBundle; nil: nothing.
	CAInjection *CAInjection
}

// Hooks views every webhook of the configurations, validating first, in
// the configurations' order: the one loop over both kinds. CallOuts adds
// the aggregated APIs.
func Hooks(vwcs []*admissionv1.ValidatingWebhookConfiguration, mwcs []*admissionv1.MutatingWebhookConfiguration) []Hook {
	var out []Hook
	for _, c := range vwcs {
		if c == nil {
			continue
		}
		for _, w := range c.Webhooks {
			out = append(out, Hook{
				Ref: Ref{Kind: KindValidating, Configuration: c.Name, Name: w.Name}, ClientConfig: w.ClientConfig,
				Rules: w.Rules, FailurePolicy: w.FailurePolicy, MatchPolicy: w.MatchPolicy,
				NamespaceSelector: w.NamespaceSelector, ObjectSelector: w.ObjectSelector, SideEffects: w.SideEffects,
				TimeoutSeconds: w.TimeoutSeconds, MatchConditions: w.MatchConditions,
				ReviewProbe: reviewProbeOptIn(c.Annotations),
				CAInjection: CAInjectionOf(c.Annotations),
			})
		}
	}
	for _, c := range mwcs {
		if c == nil {
			continue
		}
		for _, w := range c.Webhooks {
			out = append(out, Hook{
				Ref: Ref{Kind: KindMutating, Configuration: c.Name, Name: w.Name}, Mutating: true,
				Reinvoke:     w.ReinvocationPolicy != nil && *w.ReinvocationPolicy == admissionv1.IfNeededReinvocationPolicy,
				ClientConfig: w.ClientConfig, Rules: w.Rules, FailurePolicy: w.FailurePolicy, MatchPolicy: w.MatchPolicy,
				NamespaceSelector: w.NamespaceSelector, ObjectSelector: w.ObjectSelector, SideEffects: w.SideEffects,
				TimeoutSeconds: w.TimeoutSeconds, MatchConditions: w.MatchConditions,
				ReviewProbe: reviewProbeOptIn(c.Annotations),
				CAInjection: CAInjectionOf(c.Annotations),
			})
		}
	}
	return out
}

// CallOuts views every call-out: the webhooks of the configurations, the
// aggregated APIs that name a Service, and the CRDs' conversion webhooks.
func CallOuts(vwcs []*admissionv1.ValidatingWebhookConfiguration, mwcs []*admissionv1.MutatingWebhookConfiguration, apis []APIService, convs ...Conversion) []Hook {
	out := Hooks(vwcs, mwcs)
	for _, a := range apis {
		if a.Service != nil {
			out = append(out, a.Hook())
		}
	}
	for _, c := range convs {
		out = append(out, c.Hook())
	}
	return out
}
