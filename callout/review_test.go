package callout

import (
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestReviewProbeOptIn: the annotation on a configuration opts its
// webhooks in; only admission webhooks take a review, and --review-probe
// sends one to every admission webhook.
func TestReviewProbeOptIn(t *testing.T) {
	rules := []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
		Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}}
	vwc := &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "opted-in", Annotations: map[string]string{ReviewProbeAnnotation: "true"}},
		Webhooks:   []admissionv1.ValidatingWebhook{{Name: "v.example.com", Rules: rules, SideEffects: ptr.To(admissionv1.SideEffectClassNone)}},
	}
	mwc := &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "not-opted-in", Annotations: map[string]string{ReviewProbeAnnotation: "yes"}},
		Webhooks:   []admissionv1.MutatingWebhook{{Name: "m.example.com", Rules: rules, SideEffects: ptr.To(admissionv1.SideEffectClassSome)}},
	}
	hooks := Hooks([]*admissionv1.ValidatingWebhookConfiguration{vwc}, []*admissionv1.MutatingWebhookConfiguration{mwc})
	if len(hooks) != 2 {
		t.Fatalf("%d hooks", len(hooks))
	}
	v, m := hooks[0].Admission(), hooks[1].Admission()
	if v == nil || !v.ReviewProbe || v.Mutating || v.SideEffects != "None" || len(v.Rules) != 1 {
		t.Errorf("validating: %+v", v)
	}
	if m == nil || m.ReviewProbe || !m.Mutating || m.SideEffects != "Some" {
		t.Errorf("mutating (annotation not \"true\"): %+v", m)
	}
	for _, c := range []struct {
		w      Webhook
		forAll bool
		want   bool
	}{
		{Webhook{Admission: v}, false, true},
		{Webhook{Admission: m}, false, false},
		{Webhook{Admission: m}, true, true},
		{Webhook{Ref: Ref{Kind: KindAPIService}}, true, false},
	} {
		if got := c.w.ReviewProbed(c.forAll); got != c.want {
			t.Errorf("%+v forAll=%v: ReviewProbed %v, want %v", c.w.Admission, c.forAll, got, c.want)
		}
	}
	api := APIService{Name: "v1beta1.metrics.k8s.io", Group: "metrics.k8s.io", Version: "v1beta1", Service: &ServiceRef{Namespace: "kube-system", Name: "metrics-server"}}
	if a := api.Hook().Admission(); a != nil {
		t.Errorf("an aggregated API has an Admission: %+v", a)
	}
}
