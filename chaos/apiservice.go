package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"
)

// An aggregated API in the lab (WebhookSpec.APIService): the same backend
// pod, Service and CA as a webhook's, registered as an APIService for the
// group <name>.hookscope.dev, version v1alpha1, instead of a webhook
// configuration. The backend answers its discovery; a "write" is a
// discovery GET through the API server, as kubectl's discovery and
// namespace deletion do.

const apiServicesPath = "/apis/apiregistration.k8s.io/v1/apiservices"

// apiGroup is the aggregated API's group: metrics.k8s.io for a metrics
// API, else the lab's own.
func (w *Webhook) apiGroup() string {
	if w.Spec.MetricsAPI {
		return "metrics.k8s.io"
	}
	return w.Spec.Name + ".hookscope.dev"
}

// apiVersion is the aggregated API's version.
func (w *Webhook) apiVersion() string {
	if w.Spec.MetricsAPI {
		return "v1beta1"
	}
	return "v1alpha1"
}

// registerAPIService creates the APIService.
func (w *Webhook) registerAPIService(ctx context.Context) error {
	obj := map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": w.WebhookName},
		"spec": map[string]any{
			"group": w.apiGroup(), "version": w.apiVersion(), "groupPriorityMinimum": 1000, "versionPriority": 15,
			"service":  map[string]any{"namespace": w.Namespace, "name": w.Service, "port": 443},
			"caBundle": w.CA.PEM,
		},
	}
	body, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	err = w.client.Discovery().RESTClient().Post().AbsPath(apiServicesPath).SetHeader("Content-Type", "application/json").
		Body(body).Do(ctx).Error()
	if err != nil {
		return fmt.Errorf("deploying aggregated API %s: creating APIService: %w", w.Spec.Name, err)
	}
	return nil
}

// removeAPIService deletes the APIService; one already gone is no error.
func (w *Webhook) removeAPIService(ctx context.Context) error {
	err := w.client.Discovery().RESTClient().Delete().AbsPath(apiServicesPath, w.WebhookName).Do(ctx).Error()
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// readAPI runs a client's discovery through the API server, as kubectl
// and the namespace controller do, and returns when it started: the error
// of the aggregated API's group, in client-go's words, or nil.
func (w *Webhook) readAPI(ctx context.Context) (time.Time, error) {
	start := time.Now()
	_, _, err := w.client.Discovery().ServerGroupsAndResources()
	var failed *discovery.ErrGroupDiscoveryFailed
	if errors.As(err, &failed) {
		for gv, gerr := range failed.Groups {
			if gv.Group == w.apiGroup() {
				return start, fmt.Errorf("unable to retrieve the complete list of server APIs: %s: %w", gv, gerr)
			}
		}
		return start, nil // another group's failure
	}
	if err == nil {
		// Discovery lists the group (the API server's availability check
		// has not failed yet); reading it proves the proxy works.
		path := "/apis/" + w.ErrorName()
		if _, err = w.client.Discovery().RESTClient().Get().AbsPath(path).DoRaw(ctx); err != nil {
			err = fmt.Errorf("GET %s: %w", path, err)
		}
	}
	return start, err
}

// ErrorName is the name the API server's errors give the call-out: the
// webhook's, or the aggregated API's group/version.
func (w *Webhook) ErrorName() string {
	switch {
	case w.Spec.APIService:
		return w.apiGroup() + "/" + w.apiVersion()
	case w.Spec.Conversion:
		return "conversion webhook for " + w.apiGroup() + "/v2, Kind=Widget" // the write is at v2
	}
	return w.WebhookName
}

// Kind is the call-out's kind as the agent names it: Validating,
// Mutating, APIService or Conversion.
func (w *Webhook) Kind() string {
	switch {
	case w.Spec.APIService:
		return "APIService"
	case w.Spec.Conversion:
		return "Conversion"
	case w.Spec.Mutating:
		return "Mutating"
	}
	return "Validating"
}

// Configuration is what the agent names the call-out's configuration: the
// webhook configuration (named after the spec), or the APIService.
func (w *Webhook) Configuration() string {
	if w.Spec.APIService || w.Spec.Conversion {
		return w.WebhookName
	}
	return w.Spec.Name
}
