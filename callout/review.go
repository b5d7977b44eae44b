package callout

import (
	admissionv1 "k8s.io/api/admissionregistration/v1"
)

// ReviewProbeAnnotation, set to "true" on a validating or mutating webhook
// configuration, opts its webhooks in to the end-to-end review probe (a
// dryRun AdmissionReview the agent sends them), as --review-probe does for
// every webhook.
const ReviewProbeAnnotation = "hookscope.dev/review-probe"

// Admission is what an admission webhook's configuration says of the
// reviews it takes, beyond where to send them: what a review probe needs
// to send one it would get, and whether it may.
type Admission struct {
	// Mutating: its answers may carry a patch, which must apply.
	Mutating bool
	// SideEffects is its sideEffects ("None", "NoneOnDryRun", "Some",
	// "Unknown"; empty when unset): only the first two may be sent a
	// dryRun review.
	SideEffects string
	// Rules are its rules, in order.
	Rules []admissionv1.RuleWithOperations
	// ReviewProbe: its configuration carries ReviewProbeAnnotation "true".
	ReviewProbe bool
}

// Admission is h's Admission; nil when h is not an admission webhook (an
// aggregated API or a conversion webhook takes no AdmissionReview).
func (h Hook) Admission() *Admission {
	if h.Ref.Kind != KindValidating && h.Ref.Kind != KindMutating {
		return nil
	}
	a := &Admission{Mutating: h.Mutating, Rules: h.Rules, ReviewProbe: h.ReviewProbe}
	if h.SideEffects != nil {
		a.SideEffects = string(*h.SideEffects)
	}
	return a
}

// ReviewProbed reports whether w is sent review probes: it is an
// admission webhook and they are on for all webhooks (forAll, the agent's
// --review-probe) or its configuration opts in.
func (w Webhook) ReviewProbed(forAll bool) bool {
	return w.Admission != nil && (forAll || w.Admission.ReviewProbe)
}

// reviewProbeOptIn reads ReviewProbeAnnotation from a configuration's
// annotations.
func reviewProbeOptIn(annotations map[string]string) bool {
	return annotations[ReviewProbeAnnotation] == "true"
}
