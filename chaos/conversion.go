package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
)

// A CRD with a conversion webhook in the lab (WebhookSpec.Conversion): the
// same backend pod, Service and CA as a webhook's, called to convert the
// CRD Widget (group <name>.hookscope.dev) between v1, which is stored, and
// v2. A "write" creates a Widget at v2, which the API server converts to v1
// to store it.

const crdsPath = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

// crdName is the CRD's name.
func (w *Webhook) crdName() string { return "widgets." + w.apiGroup() }

// registerConversion creates the CRD and waits until it is established.
func (w *Webhook) registerConversion(ctx context.Context) error {
	schema := map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
	obj := map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": w.crdName()},
		"spec": map[string]any{
			"group": w.apiGroup(), "scope": "Namespaced",
			"names": map[string]any{"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
			"versions": []any{
				map[string]any{"name": "v1", "served": true, "storage": true, "schema": schema},
				map[string]any{"name": "v2", "served": true, "storage": false, "schema": schema},
			},
			"conversion": map[string]any{"strategy": "Webhook", "webhook": map[string]any{
				"conversionReviewVersions": []string{"v1"},
				"clientConfig": map[string]any{
					"service":  map[string]any{"namespace": w.Namespace, "name": w.Service, "path": "/convert", "port": 443},
					"caBundle": w.CA.PEM,
				},
			}},
		},
	}
	body, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	rc := w.client.Discovery().RESTClient()
	if err := rc.Post().AbsPath(crdsPath).SetHeader("Content-Type", "application/json").Body(body).Do(ctx).Error(); err != nil {
		return fmt.Errorf("deploying conversion webhook %s: creating the CRD: %w", w.Spec.Name, err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		raw, err := rc.Get().AbsPath(crdsPath, w.crdName()).DoRaw(ctx)
		if err != nil {
			return false, nil
		}
		var crd struct {
			Status struct {
				Conditions []struct{ Type, Status string } `json:"conditions"`
			} `json:"status"`
		}
		if json.Unmarshal(raw, &crd) != nil {
			return false, nil
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == "Established" && c.Status == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("deploying conversion webhook %s: the CRD is not established: %w", w.Spec.Name, err)
	}
	return nil
}

// removeConversion deletes the CRD; one already gone is no error.
func (w *Webhook) removeConversion(ctx context.Context) error {
	err := w.client.Discovery().RESTClient().Delete().AbsPath(crdsPath, w.crdName()).Do(ctx).Error()
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// writeWidget creates a Widget at v2 (the API server converts it to v1 to
// store it) and deletes it again; it returns when the write started.
// CreateWidget creates Widget name in namespace at v2 (the conversion
// webhook converts it to the stored v1) and leaves it there.
func (w *Webhook) CreateWidget(ctx context.Context, namespace, name string) error {
	body, err := json.Marshal(map[string]any{"apiVersion": w.apiGroup() + "/v2", "kind": "Widget",
		"metadata": map[string]any{"name": name, "namespace": namespace}, "spec": map[string]any{"size": 1}})
	if err != nil {
		return err
	}
	path := "/apis/" + w.apiGroup() + "/v2/namespaces/" + namespace + "/widgets"
	if err := w.client.Discovery().RESTClient().Post().AbsPath(path).SetHeader("Content-Type", "application/json").Body(body).Do(ctx).Error(); err != nil {
		return fmt.Errorf("creating Widget %s/%s: %w", namespace, name, err)
	}
	return nil
}

func (w *Webhook) writeWidget(ctx context.Context) (time.Time, error) {
	w.writes++
	name := fmt.Sprintf("w-%d-%d", time.Now().UnixNano()%100000, w.writes)
	body, err := json.Marshal(map[string]any{"apiVersion": w.apiGroup() + "/v2", "kind": "Widget",
		"metadata": map[string]any{"name": name, "namespace": w.Namespace}, "spec": map[string]any{"size": 1}})
	if err != nil {
		return time.Now(), err
	}
	path := "/apis/" + w.apiGroup() + "/v2/namespaces/" + w.Namespace + "/widgets"
	rc := w.client.Discovery().RESTClient()
	start := time.Now()
	if err := rc.Post().AbsPath(path).SetHeader("Content-Type", "application/json").Body(body).Do(ctx).Error(); err != nil {
		return start, err
	}
	_ = rc.Delete().AbsPath(path, name).Do(ctx).Error()
	return start, nil
}
