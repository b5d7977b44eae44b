//go:build linux

package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/chaos/backend"
	"github.com/hookscope/hookscope/internal/podnet"
)

// The webhook's backend: its pod, and the server that answers for it, in a
// network namespace on this machine (local provider) or in the pod itself
// (kind, see kindwebhook.go).

// backendPod is the webhook's backend pod; schedulable false gives it a node
// selector no node has, so it stays Pending.
func (w *Webhook) backendPod(schedulable bool) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: w.Spec.Name + "-webhook-0", Namespace: w.Namespace, Labels: map[string]string{"app": w.Service}},
		Spec: corev1.PodSpec{
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name: "webhook", Image: "hookscope.local/chaos-webhook:dev",
				Ports: []corev1.ContainerPort{{Name: "https", ContainerPort: backendPort}},
			}},
		},
	}
	if w.inPods {
		pod.Spec.Containers[0] = podBackendContainer()
	}
	pod.Spec.HostNetwork = w.Spec.HostNetwork
	if schedulable {
		pod.Spec.NodeName = w.node
	} else {
		pod.Name = w.Spec.Name + "-webhook-pending"
		pod.Spec.NodeSelector = map[string]string{"hookscope.dev/no-such-node": "true"}
	}
	return pod
}

// StartBackend creates the backend pod on the lab's node, waits for kwok to
// give it an IP, and serves the webhook from a network namespace that owns
// that IP, with a valid certificate.
func (w *Webhook) StartBackend(ctx context.Context) error {
	if w.inPods {
		return w.startPodBackend(ctx)
	}
	if w.Spec.HostNetwork {
		if err := w.ensureHostAddress(ctx); err != nil {
			return err
		}
	}
	if _, err := w.createBackendPod(ctx, time.Minute); err != nil {
		return err
	}
	var err error
	if w.Spec.HostNetwork {
		w.pod, err = w.hostBackend()
	} else {
		w.pod, err = podnet.New(w.Spec.Name, w.PodIP)
	}
	if err != nil {
		return fmt.Errorf("starting backend of %s: %w", w.Spec.Name, err)
	}
	return w.StartServer()
}

// createBackendPod creates the backend pod on the lab's node and waits up to
// timeout until it runs with an IP (w.PodIP).
func (w *Webhook) createBackendPod(ctx context.Context, timeout time.Duration) (*corev1.Pod, error) {
	pod := w.backendPod(true)
	if _, err := w.client.CoreV1().Pods(w.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("starting backend of %s: creating pod: %w", w.Spec.Name, err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := w.client.CoreV1().Pods(w.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return false, nil
		}
		w.PodIP, err = netip.ParseAddr(p.Status.PodIP)
		return err == nil, err
	})
	if err != nil {
		return nil, fmt.Errorf("starting backend of %s: pod not Running with an IP: %w", w.Spec.Name, err)
	}
	return pod, nil
}

// StartServer starts the webhook server in the backend pod's network with
// a valid certificate.
func (w *Webhook) StartServer() error {
	if w.inPods {
		return w.servePod(true)
	}
	ln, err := w.pod.Listen(backendPort)
	if err != nil {
		return fmt.Errorf("starting the server of %s: %w", w.Spec.Name, err)
	}
	cert, err := w.ValidCertificate()
	if err != nil {
		ln.Close()
		return err
	}
	w.local = backend.Serve(ln, cert)
	w.Server = backend.Local{Server: w.local}
	return nil
}

// StopServer stops the webhook server but leaves its pod Running and Ready:
// the port is closed, so the pod's kernel refuses connections.
func (w *Webhook) StopServer() error {
	if w.inPods {
		return w.servePod(false)
	}
	if w.local == nil {
		return nil
	}
	err := w.local.Close()
	w.local = nil
	return err
}

// StopBackend deletes the backend pod (as a Deployment scaled to zero
// would) and stops its server and network.
func (w *Webhook) StopBackend(ctx context.Context) error {
	var errs []error
	// A real kubelet (kind) stops the container on a graceful delete (the
	// backend exits on SIGTERM at once); a forced one would drop the pod
	// from the API while its process still answers on the API server's
	// open connections. kwok has no process to stop.
	grace := ptr.To[int64](0)
	if w.inPods {
		grace = nil
	}
	err := w.client.CoreV1().Pods(w.Namespace).Delete(ctx, w.Spec.Name+"-webhook-0", metav1.DeleteOptions{GracePeriodSeconds: grace})
	if err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	errs = append(errs, w.closeNetwork())
	// Wait until the pod is gone, so a restart can reuse its name.
	errs = append(errs, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := w.client.CoreV1().Pods(w.Namespace).Get(ctx, w.Spec.Name+"-webhook-0", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}))
	return errors.Join(errs...)
}

// SetBackendReady sets the backend pod's Ready condition as a kubelet
// does when its readiness probe fails or passes again: the pod stays
// Running with its IP, and the EndpointSlice controller marks its endpoint
// not ready. kwok leaves a Running pod's status alone.
//
// The API server resolves a webhook's endpoints when it dials, so it keeps
// calling a pod that turned not ready over its open HTTP/2 connection
// (measured: writes went through for as long as it stayed open); a pod whose
// readiness fails is usually restarting too, so this closes the backend's
// connections, as that restart would.
func (w *Webhook) SetBackendReady(ctx context.Context, ready bool) error {
	if w.inPods {
		return w.setPodReady(ctx, ready)
	}
	defer func() {
		if !ready && w.Server != nil {
			_ = w.Server.CloseConnections()
		}
	}()
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	pods := w.client.CoreV1().Pods(w.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := pods.Get(ctx, w.Spec.Name+"-webhook-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		for i, c := range p.Status.Conditions {
			if (c.Type == corev1.PodReady || c.Type == corev1.ContainersReady) && c.Status != status {
				p.Status.Conditions[i].Status, p.Status.Conditions[i].LastTransitionTime = status, now
				if !ready {
					p.Status.Conditions[i].Reason = "ContainersNotReady"
				} else {
					p.Status.Conditions[i].Reason = ""
				}
			}
		}
		for i := range p.Status.ContainerStatuses {
			p.Status.ContainerStatuses[i].Ready = ready
		}
		_, err = pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("setting the backend pod of %s ready=%v: %w", w.Spec.Name, ready, err)
	}
	return nil
}

// AddPendingBackend creates a backend pod that no node can take: it stays
// Pending, as the article's controller pods did.
func (w *Webhook) AddPendingBackend(ctx context.Context) error {
	if _, err := w.client.CoreV1().Pods(w.Namespace).Create(ctx, w.backendPod(false), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating a Pending backend pod: %w", err)
	}
	return nil
}

// RemovePendingBackend deletes the Pending backend pod.
func (w *Webhook) RemovePendingBackend(ctx context.Context) error {
	err := w.client.CoreV1().Pods(w.Namespace).Delete(ctx, w.Spec.Name+"-webhook-pending", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the Pending backend pod: %w", err)
	}
	return nil
}

// NetworkNamespace is the name of the network namespace that holds the
// backend pod's IP on this machine (`ip netns list`); empty when the
// backend is not a local one (kind, a hostNetwork pod) or is stopped.
func (w *Webhook) NetworkNamespace() string {
	if w.pod == nil {
		return ""
	}
	return w.pod.Name
}

// closeNetwork stops the server and removes the backend's pod network.
func (w *Webhook) closeNetwork() error {
	var errs []error
	if w.local != nil {
		errs = append(errs, w.local.Close())
		w.local = nil
	}
	if w.pod != nil {
		errs = append(errs, w.pod.Close())
		w.pod = nil
	}
	w.control.Close()
	w.control, w.remote = nil, nil
	return errors.Join(errs...)
}
