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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
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
	// Mutating makes it a MutatingWebhookConfiguration (the seed's
	// mpod.elbv2.k8s.aws); the default is validating.
	Mutating bool
	// KubeSystem makes it match every pod created in kube-system as well
	// (except its own backend's), as the seed's pod webhook did: it then
	// blocks the CNI DaemonSet.
	KubeSystem bool
	// Deletes makes it also match DELETE of pods and ReplicaSets that carry
	// TargetLabel: while it fails closed, a deleted Deployment's dependents
	// cannot be garbage collected.
	Deletes bool
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
	// Server is the webhook server's controls, wherever it runs.
	Server backend.Control

	client kubernetes.Interface
	// local is the server this process runs in the backend pod's network
	// namespace (local provider).
	local *backend.Server
	// kind: the backend runs in its pod, driven through a port-forward
	// to its control port.
	inPods     bool
	restConfig *rest.Config
	control    *PortForward
	remote     *backend.Remote
	agent      *AgentProcess
	node       string
	pod        *podnet.Pod
	writes     int
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
		inPods:      l.restConfig != nil,
		restConfig:  l.restConfig,
	}
	if spec.Mutating {
		w.WebhookName = "mpod." + spec.Name + ".hookscope.dev"
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

	if err := w.StartBackend(ctx); err != nil {
		return nil, err
	}

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
	if err := w.waitEndpoint(ctx); err != nil {
		return nil, err
	}

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
	if spec.Mutating {
		mcfg := &admissionv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: spec.Name},
			Webhooks: []admissionv1.MutatingWebhook{{
				Name: hook.Name, ClientConfig: hook.ClientConfig, Rules: hook.Rules, NamespaceSelector: hook.NamespaceSelector,
				ObjectSelector: hook.ObjectSelector, FailurePolicy: hook.FailurePolicy, SideEffects: hook.SideEffects,
				AdmissionReviewVersions: hook.AdmissionReviewVersions, TimeoutSeconds: hook.TimeoutSeconds,
			}},
		}
		mcfg.Webhooks[0].ClientConfig.Service.Path = ptr.To("/mutate")
		if _, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mcfg, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("deploying webhook %s: creating MutatingWebhookConfiguration: %w", spec.Name, err)
		}
	} else {
		cfg := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: spec.Name}, Webhooks: []admissionv1.ValidatingWebhook{hook}}
		if _, err := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("deploying webhook %s: creating ValidatingWebhookConfiguration: %w", spec.Name, err)
		}
	}

	w.agent = l.Agent
	if err := w.WaitServing(ctx); err != nil {
		return nil, fmt.Errorf("deploying webhook %s: %w", spec.Name, err)
	}
	return w, nil
}

// WaitServing waits until the agent traces the backend (the game day
// measures from the first failed call, so tracing must start before any
// injection) and a write really goes through the webhook (the API server
// picks configurations and endpoints up asynchronously).
func (w *Webhook) WaitServing(ctx context.Context) error {
	if w.agent != nil {
		backend := netip.AddrPortFrom(w.PodIP, backendPort).String()
		if err := w.agent.WaitForTraced(ctx, w.WebhookName, backend, 30*time.Second); err != nil {
			return err
		}
	}
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		before, err := w.Server.Requests()
		if err != nil {
			lastErr = err
			return false, nil
		}
		if _, lastErr = w.Write(ctx); lastErr != nil {
			return false, nil
		}
		after, err := w.Server.Requests()
		return err == nil && after > before, nil
	})
	if err != nil {
		return fmt.Errorf("the API server does not call the webhook (last write: %v): %w", lastErr, err)
	}
	return nil
}

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
	if _, err := w.createBackendPod(ctx, time.Minute); err != nil {
		return err
	}
	var err error
	if w.pod, err = podnet.New(w.Spec.Name, w.PodIP); err != nil {
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
// Pending, as the seed's controller pods did.
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

func (w *Webhook) waitEndpoint(ctx context.Context) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		return w.endpointReady(ctx)
	})
	if err != nil {
		return fmt.Errorf("no ready endpoint %s:%d for Service %s/%s: %w", w.PodIP, backendPort, w.Namespace, w.Service, err)
	}
	return nil
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

// ValidCertificate is a serving certificate valid for a year, as
// cert-manager issues them: beyond the agent's expiring-soon horizon.
func (w *Webhook) ValidCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.CA.Serving([]string{w.ServerName()}, nil, now.Add(-time.Hour), now.Add(365*24*time.Hour))
}

// ExpiredCertificate is a serving certificate that expired an hour ago.
func (w *Webhook) ExpiredCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.CA.Serving([]string{w.ServerName()}, nil, now.Add(-90*24*time.Hour), now.Add(-time.Hour))
}

// NotYetValidCertificate is a serving certificate valid from tomorrow.
func (w *Webhook) NotYetValidCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.CA.Serving([]string{w.ServerName()}, nil, now.Add(24*time.Hour), now.Add(365*24*time.Hour))
}

// ExpiringCertificate is a serving certificate that expires in d.
func (w *Webhook) ExpiringCertificate(d time.Duration) (tls.Certificate, error) {
	now := time.Now()
	return w.CA.Serving([]string{w.ServerName()}, nil, now.Add(-30*24*time.Hour), now.Add(d))
}

// WrongNameCertificate is a valid certificate for another Service's name.
func (w *Webhook) WrongNameCertificate() (tls.Certificate, error) {
	now := time.Now()
	return w.CA.Serving([]string{"other-webhook." + w.Namespace + ".svc"}, nil, now.Add(-time.Hour), now.Add(365*24*time.Hour))
}

// OtherCACertificate is a valid certificate for the right name, signed by
// a CA the webhook's caBundle does not hold (a rotated CA).
func (w *Webhook) OtherCACertificate() (tls.Certificate, error) {
	other, err := certs.NewCA("hookscope-chaos-rotated-" + w.Spec.Name)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	return other.Serving([]string{w.ServerName()}, nil, now.Add(-time.Hour), now.Add(365*24*time.Hour))
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
	var err error
	if w.Spec.Mutating {
		err = w.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, w.Spec.Name, metav1.DeleteOptions{})
	} else {
		err = w.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, w.Spec.Name, metav1.DeleteOptions{})
	}
	if err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	err = w.client.CoreV1().Namespaces().Delete(ctx, w.Namespace, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	errs = append(errs, w.closeNetwork())
	return errors.Join(errs...)
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

func waitServiceAccount(ctx context.Context, c kubernetes.Interface, ns string) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}
