//go:build linux

package chaos

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

// cert-manager in the lab, as far as hookscope reads it: its Certificate
// CRD and Certificates whose Ready condition a scenario sets, and the
// annotation that asks its cainjector to write a configuration's caBundle.
// No cert-manager runs: the scenario plays the cainjector (it writes the
// caBundle) and the controller (it sets Ready).

const (
	certificatesCRD  = "certificates.cert-manager.io"
	certificatesPath = "/apis/cert-manager.io/v1"
	// InjectCAFrom is cainjector's annotation naming the Certificate
	// (namespace/name) whose CA it writes into the caBundle.
	InjectCAFrom = "cert-manager.io/inject-ca-from"
)

// EnsureCertificateCRD creates cert-manager's Certificate CRD
// (cert-manager.io/v1, status a subresource, any fields) unless it
// exists, as installing cert-manager does, and waits until it is
// established.
func (l *Lab) EnsureCertificateCRD(ctx context.Context) error {
	schema := map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
	obj := map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": certificatesCRD},
		"spec": map[string]any{
			"group": "cert-manager.io", "scope": "Namespaced",
			"names": map[string]any{"plural": "certificates", "singular": "certificate", "kind": "Certificate", "listKind": "CertificateList",
				"shortNames": []string{"cert", "certs"}},
			"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true, "schema": schema,
				"subresources": map[string]any{"status": map[string]any{}}}},
		},
	}
	body, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	rc := l.Client.Discovery().RESTClient()
	err = rc.Post().AbsPath(crdsPath).SetHeader("Content-Type", "application/json").Body(body).Do(ctx).Error()
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating CRD %s: %w", certificatesCRD, err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return rc.Get().AbsPath(certificatesPath, "certificates").Do(ctx).Error() == nil, nil
	})
	if err != nil {
		return fmt.Errorf("CRD %s is not served: %w", certificatesCRD, err)
	}
	return nil
}

// SetCertificate creates the Certificate namespace/name (for a Secret of
// the same name) unless it exists, and sets its Ready condition: True, or
// False with reason and message, as cert-manager's controller does.
func (l *Lab) SetCertificate(ctx context.Context, namespace, name string, ready bool, reason, message string) error {
	rc := l.Client.Discovery().RESTClient()
	cert := map[string]any{
		"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
		"metadata": map[string]any{"name": name, "namespace": namespace},
		"spec":     map[string]any{"secretName": name, "dnsNames": []string{name}, "issuerRef": map[string]any{"name": "selfsigned", "kind": "Issuer"}},
	}
	body, _ := json.Marshal(cert)
	err := rc.Post().AbsPath(certificatesPath, "namespaces", namespace, "certificates").SetHeader("Content-Type", "application/json").Body(body).Do(ctx).Error()
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating Certificate %s/%s: %w", namespace, name, err)
	}
	status := "True"
	if !ready {
		status = "False"
	}
	cond := map[string]any{"type": "Ready", "status": status, "reason": reason, "message": message,
		"lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}
	patch, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []any{cond}}})
	err = rc.Patch(types.MergePatchType).AbsPath(certificatesPath, "namespaces", namespace, "certificates", name, "status").Body(patch).Do(ctx).Error()
	if err != nil {
		return fmt.Errorf("setting Certificate %s/%s Ready=%s: %w", namespace, name, status, err)
	}
	return nil
}

// SetCAInjection writes the webhook's configuration as a chart that leaves
// the caBundle to cert-manager's cainjector does: the annotation (e.g.
// InjectCAFrom: namespace/certificate) and caBundle, empty (nil) until
// cainjector writes it.
func (w *Webhook) SetCAInjection(ctx context.Context, annotation, value string, caBundle []byte) error {
	ops := []map[string]any{
		{"op": "add", "path": "/metadata/annotations", "value": map[string]string{annotation: value}},
		{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": base64.StdEncoding.EncodeToString(caBundle)},
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	configs := w.client.AdmissionregistrationV1()
	if w.Spec.Mutating {
		_, err = configs.MutatingWebhookConfigurations().Patch(ctx, w.Spec.Name, types.JSONPatchType, patch, metav1.PatchOptions{})
	} else {
		_, err = configs.ValidatingWebhookConfigurations().Patch(ctx, w.Spec.Name, types.JSONPatchType, patch, metav1.PatchOptions{})
	}
	if err != nil {
		return fmt.Errorf("webhook %s: writing %s and a caBundle of %d bytes: %w", w.Spec.Name, annotation, len(caBundle), err)
	}
	return nil
}
