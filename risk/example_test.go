package risk_test

import (
	"fmt"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/risk"
)

// A policy engine that validates every pod, with one replica, next to a
// sidecar injector: the risks an SRE would be shown.
func ExampleAnalyze() {
	fail := admissionv1.Fail
	ifNeeded := admissionv1.IfNeededReinvocationPolicy
	vwcs := []*admissionv1.ValidatingWebhookConfiguration{{
		ObjectMeta: metav1.ObjectMeta{Name: "policy"},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name:          "pods.policy.example.com",
			ClientConfig:  admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "policy", Name: "policy-webhook"}},
			Rules:         []admissionv1.RuleWithOperations{rule("CREATE,UPDATE", "", "pods")},
			FailurePolicy: &fail,
		}},
	}}
	mwcs := []*admissionv1.MutatingWebhookConfiguration{{
		ObjectMeta: metav1.ObjectMeta{Name: "injector"},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name:               "sidecar.injector.example.com",
			ClientConfig:       admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "mesh", Name: "injector"}},
			Rules:              []admissionv1.RuleWithOperations{rule("CREATE", "", "pods")},
			NamespaceSelector:  notIn("kube-system", "kube-node-lease", "mesh"),
			ReinvocationPolicy: &ifNeeded,
		}},
	}}
	backends := map[callout.Ref][]callout.Backend{
		{Kind: "Validating", Configuration: "policy", Name: "pods.policy.example.com"}: backendPods("policy", "policy-webhook-7d9f@node-a"),
	}
	for _, r := range risk.Analyze(vwcs, mwcs, nil, backends) {
		fmt.Println(r.Severity, r.Kind, r.Webhook)
	}
	// Output:
	// critical BlocksSystemPods Validating/policy/pods.policy.example.com
	// critical SelfDeadlock Validating/policy/pods.policy.example.com
	// warning StackedTimeouts Mutating/injector/sidecar.injector.example.com
	// warning NoExclusion Validating/policy/pods.policy.example.com
	// warning SingleReplica Validating/policy/pods.policy.example.com
	// warning StackedTimeouts Validating/policy/pods.policy.example.com
}
