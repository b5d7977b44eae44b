//go:build linux

package chaos

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
)

// createService creates the webhook's Service: port 443 to the backend
// pod's "https" port.
func (w *Webhook) createService(ctx context.Context) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: w.Service, Namespace: w.Namespace},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": w.Service},
			Ports:    []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromString("https")}},
		},
	}
	if _, err := w.client.CoreV1().Services(w.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("deploying webhook %s: creating Service: %w", w.Spec.Name, err)
	}
	return nil
}

// DeleteService deletes the webhook's Service and returns it as a backup.
// It also closes the backend's connections: the API server keeps calling a
// webhook over its open connections after the Service is gone, and only a
// new connection looks the Service up (an uninstall restarts the pods too).
func (w *Webhook) DeleteService(ctx context.Context) (*corev1.Service, error) {
	defer func() {
		if w.Server != nil {
			_ = w.Server.CloseConnections()
		}
	}()
	svc, err := w.client.CoreV1().Services(w.Namespace).Get(ctx, w.Service, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("backing up Service %s/%s: %w", w.Namespace, w.Service, err)
	}
	if err := w.client.CoreV1().Services(w.Namespace).Delete(ctx, w.Service, metav1.DeleteOptions{}); err != nil {
		return nil, fmt.Errorf("deleting Service %s/%s: %w", w.Namespace, w.Service, err)
	}
	return svc, nil
}

// RestoreService recreates a Service from its backup and waits for its endpoint.
func (w *Webhook) RestoreService(ctx context.Context, backup *corev1.Service) error {
	svc := backup.DeepCopy()
	svc.ResourceVersion, svc.UID, svc.CreationTimestamp = "", "", metav1.Time{}
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "", nil // the allocator gives a new one
	if _, err := w.client.CoreV1().Services(w.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("restoring Service %s/%s: %w", w.Namespace, w.Service, err)
	}
	return w.waitEndpoint(ctx)
}

// waitEndpoint waits up to a minute until endpointReady.
func (w *Webhook) waitEndpoint(ctx context.Context) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		return w.endpointReady(ctx)
	})
	if err != nil {
		return fmt.Errorf("no ready endpoint %s:%d for Service %s/%s: %w", w.PodIP, backendPort, w.Namespace, w.Service, err)
	}
	return nil
}

// endpointReady says whether an EndpointSlice of the Service lists the
// backend pod's IP as ready (a missing condition counts as ready); it
// treats a failed list as not yet.
func (w *Webhook) endpointReady(ctx context.Context) (bool, error) {
	list, err := w.client.DiscoveryV1().EndpointSlices(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + w.Service})
	if err != nil {
		return false, nil
	}
	for _, es := range list.Items {
		for _, ep := range es.Endpoints {
			for _, a := range ep.Addresses {
				if a == w.PodIP.String() && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
					return true, nil
				}
			}
		}
	}
	return false, nil
}
