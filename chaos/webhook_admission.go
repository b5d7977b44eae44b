//go:build linux

package chaos

import (
	"context"
	"fmt"
	"net/netip"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// admissionWebhook is the webhook's entry in its configuration: pod creates
// in its namespace that carry TargetLabel, sent to /validate on its Service
// and verified with its CA. Deletes adds pod and ReplicaSet deletes;
// KubeSystem makes it match every pod in its namespace and in kube-system
// but its own backend's, TargetLabel or not.
func (w *Webhook) admissionWebhook() admissionv1.ValidatingWebhook {
	spec := w.Spec
	fp := spec.FailurePolicy
	if fp == "" {
		fp = admissionv1.Fail
	}
	timeout := spec.Timeout
	if timeout == 0 {
		timeout = 5
	}
	hook := admissionv1.ValidatingWebhook{
		Name: w.WebhookName,
		ClientConfig: admissionv1.WebhookClientConfig{
			Service:  &admissionv1.ServiceReference{Namespace: w.Namespace, Name: w.Service, Port: ptr.To[int32](443), Path: ptr.To("/validate")},
			CABundle: w.CA.PEM,
		},
		Rules: []admissionv1.RuleWithOperations{{
			Operations: []admissionv1.OperationType{admissionv1.Create},
			Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
		}},
		NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: w.Namespace}},
		ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{TargetLabel: spec.Name}},
		FailurePolicy:           &fp,
		SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
		AdmissionReviewVersions: []string{"v1"},
		TimeoutSeconds:          &timeout,
	}
	if spec.Deletes {
		hook.Rules = []admissionv1.RuleWithOperations{
			{Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Delete},
				Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}},
			{Operations: []admissionv1.OperationType{admissionv1.Delete},
				Rule: admissionv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"replicasets"}}},
		}
	}
	if spec.KubeSystem {
		hook.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{w.Namespace, "kube-system"}}}}
		hook.ObjectSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{w.Service}}}}
	}
	if spec.URL {
		hook.ClientConfig.Service = nil
		hook.ClientConfig.URL = ptr.To(w.URL())
	}
	return hook
}

// register creates the webhook's configuration, named after its spec: a
// MutatingWebhookConfiguration whose entry is served at /mutate when the
// spec says Mutating, else a ValidatingWebhookConfiguration.
func (w *Webhook) register(ctx context.Context) error {
	switch {
	case w.Spec.APIService:
		return w.registerAPIService(ctx)
	case w.Spec.Conversion:
		return w.registerConversion(ctx)
	}
	hook := w.admissionWebhook()
	configs := w.client.AdmissionregistrationV1()
	var annotations map[string]string
	if w.Spec.Guard {
		annotations = map[string]string{"guard.hookscope.dev/enabled": "true"}
	}
	if w.Spec.ReviewProbe {
		annotations = withReviewProbe(annotations)
	}
	if w.Spec.Mutating {
		mcfg := &admissionv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: w.Spec.Name, Annotations: annotations},
			Webhooks:   []admissionv1.MutatingWebhook{mutatingWebhook(hook)},
		}
		if !w.Spec.URL {
			mcfg.Webhooks[0].ClientConfig.Service.Path = ptr.To("/mutate")
		}
		if _, err := configs.MutatingWebhookConfigurations().Create(ctx, mcfg, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("deploying webhook %s: creating MutatingWebhookConfiguration: %w", w.Spec.Name, err)
		}
		return nil
	}
	cfg := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: w.Spec.Name, Annotations: annotations}, Webhooks: []admissionv1.ValidatingWebhook{hook}}
	if _, err := configs.ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("deploying webhook %s: creating ValidatingWebhookConfiguration: %w", w.Spec.Name, err)
	}
	return nil
}

// withReviewProbe adds to annotations the one that opts a configuration
// in to the agent's review probe (callout.ReviewProbeAnnotation).
func withReviewProbe(annotations map[string]string) map[string]string {
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations["hookscope.dev/review-probe"] = "true"
	return annotations
}

// mutatingWebhook is hook as a mutating webhook: the same client config,
// rules, selectors, failure policy, side effects, review versions and
// timeout.
func mutatingWebhook(hook admissionv1.ValidatingWebhook) admissionv1.MutatingWebhook {
	return admissionv1.MutatingWebhook{
		Name: hook.Name, ClientConfig: hook.ClientConfig, Rules: hook.Rules, NamespaceSelector: hook.NamespaceSelector,
		ObjectSelector: hook.ObjectSelector, FailurePolicy: hook.FailurePolicy, SideEffects: hook.SideEffects,
		AdmissionReviewVersions: hook.AdmissionReviewVersions, TimeoutSeconds: hook.TimeoutSeconds,
	}
}

// URL is the address a webhook with Spec.URL calls: its pod's IP, on the
// port its server listens on, with no Service in between.
func (w *Webhook) URL() string {
	path := "/validate"
	if w.Spec.Mutating {
		path = "/mutate"
	}
	return "https://" + netip.AddrPortFrom(w.PodIP, backendPort).String() + path
}

// SetWebhookPort points the webhook's clientConfig at another Service port.
func (w *Webhook) SetWebhookPort(ctx context.Context, port int32) error {
	patch := []byte(fmt.Sprintf(`[{"op":"replace","path":"/webhooks/0/clientConfig/service/port","value":%d}]`, port))
	var err error
	if w.Spec.Mutating {
		_, err = w.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, w.Spec.Name, types.JSONPatchType, patch, metav1.PatchOptions{})
	} else {
		_, err = w.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Patch(ctx, w.Spec.Name, types.JSONPatchType, patch, metav1.PatchOptions{})
	}
	if err != nil {
		return fmt.Errorf("setting the webhook's port to %d: %w", port, err)
	}
	return nil
}
