//go:build linux

package chaos

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/chaos/backend"
	"github.com/hookscope/hookscope/internal/certs"
	"github.com/hookscope/hookscope/internal/podnet"
)

// TargetLabel marks the objects a scenario's webhook intercepts.
const TargetLabel = "hookscope.dev/chaos-target"

// backendPort is the port the webhook server listens on in its pod.
const backendPort = 8443

// WebhookSpec describes one scenario's webhook.
type WebhookSpec struct {
	Name          string // a DNS label: namespace, Service and configuration are named after it
	FailurePolicy admissionv1.FailurePolicyType
	Timeout       int32 // timeoutSeconds
}

// Webhook is a deployed webhook: a backend pod whose IP is a real network
// namespace on this machine with an HTTPS admission server in it, a Service
// for it, and a ValidatingWebhookConfiguration for pod creates in its
// namespace that carry TargetLabel.
type Webhook struct {
	Spec        WebhookSpec
	Namespace   string
	Service     string
	WebhookName string // the webhook's name in its configuration
	PodIP       netip.Addr
	CA          *certs.CA
	Server      *backend.Server

	client kubernetes.Interface
	node   string
	pod    *podnet.Pod
	writes int
}

// DeployWebhook deploys a webhook serving a valid certificate and waits until
// the API server calls it and the agent traces its backend.
func (l *Lab) DeployWebhook(ctx context.Context, spec WebhookSpec) (_ *Webhook, err error) {
	w := &Webhook{
		Spec:        spec,
		Namespace:   "chaos-" + spec.Name,
		Service:     spec.Name + "-webhook",
		WebhookName: "vpod." + spec.Name + ".hookscope.dev",
		client:      l.Client,
		node:        l.Node,
	}
	defer func() {
		if err != nil {
			w.Remove(context.Background())
		}
	}()
	if w.CA, err = certs.NewCA("hookscope-chaos-" + spec.Name); err != nil {
		return nil, err
	}
	c := l.Client
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.Namespace}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("deploying webhook %s: creating namespace: %w", spec.Name, err)
	}
	if err := waitServiceAccount(ctx, c, w.Namespace); err != nil {
		return nil, fmt.Errorf("deploying webhook %s: %w", spec.Name, err)
	}

	// The backend pod: kwok runs it on the lab's node and gives it an IP.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: spec.Name + "-webhook-0", Namespace: w.Namespace, Labels: map[string]string{"app": w.Service}},
		Spec: corev1.PodSpec{
			NodeName:    l.Node,
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name: "webhook", Image: "hookscope.local/chaos-webhook:dev",
				Ports: []corev1.ContainerPort{{Name: "https", ContainerPort: backendPort}},
			}},
		},
	}
	if _, err := c.CoreV1().Pods(w.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("deploying webhook %s: creating backend pod: %w", spec.Name, err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := c.CoreV1().Pods(w.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return false, nil
		}
		w.PodIP, err = netip.ParseAddr(p.Status.PodIP)
		return err == nil, err
	})
	if err != nil {
		return nil, fmt.Errorf("deploying webhook %s: backend pod not Running with an IP: %w", spec.Name, err)
	}

	// Its network: the pod IP in a namespace on this machine, with the
	// webhook server listening in it.
	if w.pod, err = podnet.New(spec.Name, w.PodIP); err != nil {
		return nil, fmt.Errorf("deploying webhook %s: %w", spec.Name, err)
	}
	ln, err := w.pod.Listen(backendPort)
	if err != nil {
		return nil, fmt.Errorf("deploying webhook %s: %w", spec.Name, err)
	}
	valid, err := w.ValidCertificate()
	if err != nil {
		ln.Close()
		return nil, err
	}
	w.Server = backend.Serve(ln, valid)

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: w.Service, Namespace: w.Namespace},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": w.Service},
			Ports:    []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromString("https")}},
		},
	}
	if _, err := c.CoreV1().Services(w.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("deploying webhook %s: creating Service: %w", spec.Name, err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		return w.endpointReady(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("deploying webhook %s: no ready endpoint %s:%d in the Service's EndpointSlices: %w", spec.Name, w.PodIP, backendPort, err)
	}

	fp := spec.FailurePolicy
	if fp == "" {
		fp = admissionv1.Fail
	}
	timeout := spec.Timeout
	if timeout == 0 {
		timeout = 5
	}
	cfg := &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: spec.Name},
		Webhooks: []admissionv1.ValidatingWebhook{{
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
		}},
	}
	if _, err := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("deploying webhook %s: creating ValidatingWebhookConfiguration: %w", spec.Name, err)
	}

	// The game day measures from the first failed call: the agent must
	// trace the backend before anything is injected.
	if l.Agent != nil {
		backend := netip.AddrPortFrom(w.PodIP, backendPort).String()
		if err := l.Agent.WaitForTraced(ctx, w.WebhookName, backend, 30*time.Second); err != nil {
			return nil, fmt.Errorf("deploying webhook %s: %w", spec.Name, err)
		}
	}
	// The API server picks the configuration up asynchronously: wait until
	// a write really goes through the webhook.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		before := w.Server.Requests()
		if _, err := w.Write(ctx); err != nil {
			return false, nil
		}
		return w.Server.Requests() > before, nil
	})
	if err != nil {
		return nil, fmt.Errorf("deploying webhook %s: the API server does not call it: %w", spec.Name, err)
	}
	return w, nil
}

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

// ServerName is the name the API server verifies: <service>.<namespace>.svc.
func (w *Webhook) ServerName() string { return w.Service + "." + w.Namespace + ".svc" }

// ValidCertificate is a serving certificate valid now.
func (w *Webhook) ValidCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.CA.Serving([]string{w.ServerName()}, nil, now.Add(-time.Hour), now.Add(24*time.Hour))
}

// ExpiredCertificate is a serving certificate that expired an hour ago.
func (w *Webhook) ExpiredCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.CA.Serving([]string{w.ServerName()}, nil, now.Add(-90*24*time.Hour), now.Add(-time.Hour))
}

// Write creates a pod that the webhook intercepts, as a user's write would,
// and deletes it again if it was admitted. It returns when the write started.
func (w *Webhook) Write(ctx context.Context) (time.Time, error) {
	w.writes++
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("write-%d-%d", time.Now().UnixNano()%100000, w.writes),
			Namespace: w.Namespace,
			Labels:    map[string]string{TargetLabel: w.Spec.Name},
		},
		Spec: corev1.PodSpec{
			NodeName:    w.node,
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers:  []corev1.Container{{Name: "app", Image: "hookscope.local/app:dev"}},
		},
	}
	start := time.Now()
	_, err := w.client.CoreV1().Pods(w.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return start, err
	}
	_ = w.client.CoreV1().Pods(w.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	return start, nil
}

// Remove deletes the webhook's configuration, namespace and pod network.
func (w *Webhook) Remove(ctx context.Context) error {
	var errs []error
	err := w.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, w.Spec.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	err = w.client.CoreV1().Namespaces().Delete(ctx, w.Namespace, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	if w.Server != nil {
		errs = append(errs, w.Server.Close())
	}
	if w.pod != nil {
		errs = append(errs, w.pod.Close())
	}
	return errors.Join(errs...)
}

func waitServiceAccount(ctx context.Context, c kubernetes.Interface, ns string) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}
