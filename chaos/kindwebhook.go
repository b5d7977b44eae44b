//go:build linux

package chaos

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hookscope/hookscope/chaos/backend"
)

// On kind a webhook's backend is a real pod: chaos/kind/backend serves the
// webhook port and takes orders on its control port, which the game day
// reaches through a port-forward. Its readiness probe is the control
// port's /readyz, so a scenario fails it for real and kubelet, not the
// game day, marks the pod not ready.

// podBackendContainer is the backend's container in a kind pod.
func podBackendContainer() corev1.Container {
	return corev1.Container{
		Name: "webhook", Image: kindBackendImage, ImagePullPolicy: corev1.PullNever,
		Args: []string{fmt.Sprintf("--listen=:%d", backendPort), fmt.Sprintf("--control=:%d", backendControl)},
		Ports: []corev1.ContainerPort{
			{Name: "https", ContainerPort: backendPort},
			{Name: "control", ContainerPort: backendControl},
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(backendControl)}},
			PeriodSeconds:    1,
			FailureThreshold: 1,
			SuccessThreshold: 1,
		},
	}
}

// startPodBackend creates the backend pod on the lab's node, waits for its
// IP, reaches its control port and sends it a valid certificate.
func (w *Webhook) startPodBackend(ctx context.Context) error {
	pod, err := w.createBackendPod(ctx, 2*time.Minute)
	if err != nil {
		return err
	}
	w.control.Close()
	if w.control, err = ForwardPort(ctx, w.restConfig, w.Namespace, pod.Name, backendControl); err != nil {
		return fmt.Errorf("starting backend of %s: %w", w.Spec.Name, err)
	}
	w.remote = &backend.Remote{Base: "http://" + w.control.Addr}
	w.Server = w.remote
	return w.servePod(true)
}

// servePod opens the webhook port with a valid certificate, or closes it
// (the pod stays Running and Ready; its kernel refuses connections).
func (w *Webhook) servePod(on bool) error {
	if w.remote == nil {
		return fmt.Errorf("webhook %s: no backend pod", w.Spec.Name)
	}
	if !on {
		return w.remote.SetServing(false)
	}
	if err := w.remote.SetServing(true); err != nil {
		return err
	}
	cert, err := w.ValidCertificate()
	if err != nil {
		return err
	}
	return w.remote.SetCertificate(cert)
}

// setPodReady fails or passes the backend's readiness probe, closing its
// connections as the restart that usually comes with a failing probe
// would, and waits until kubelet has marked the pod.
func (w *Webhook) setPodReady(ctx context.Context, ready bool) error {
	if w.remote == nil {
		return fmt.Errorf("webhook %s: no backend pod", w.Spec.Name)
	}
	if err := w.remote.SetReady(ready); err != nil {
		return err
	}
	if !ready {
		if err := w.remote.CloseConnections(); err != nil {
			return err
		}
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := w.client.CoreV1().Pods(w.Namespace).Get(ctx, w.Spec.Name+"-webhook-0", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return (c.Status == corev1.ConditionTrue) == ready, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("the backend pod of %s is not ready=%v: %w", w.Spec.Name, ready, err)
	}
	return nil
}
