//go:build linux

package chaos

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/chaos/backend"
	"github.com/hookscope/hookscope/internal/certs"
	"github.com/hookscope/hookscope/internal/podnet"
)

// A webhook's parts live in files by concern: its backend pod and server
// (webhook_backend.go), its Service (webhook_service.go), its admission
// configuration (webhook_admission.go) and its serving certificates
// (webhook_certs.go). This file deploys, exercises and removes the whole.

// TargetLabel marks the objects a scenario's webhook intercepts.
const TargetLabel = "hookscope.dev/chaos-target"

// backendPort is the port the webhook server listens on in its pod.
const backendPort = 8443

// WebhookSpec describes one scenario's webhook.
type WebhookSpec struct {
	Name          string // a DNS label: namespace, Service and configuration are named after it
	FailurePolicy admissionv1.FailurePolicyType
	Timeout       int32 // timeoutSeconds
	// Mutating makes it a MutatingWebhookConfiguration (the article's
	// mpod.elbv2.k8s.aws); the default is validating.
	Mutating bool
	// KubeSystem makes it match every pod created in kube-system as well
	// (except its own backend's), as the article's pod webhook did: it then
	// blocks the CNI DaemonSet.
	KubeSystem bool
	// Deletes makes it also match DELETE of pods and ReplicaSets that carry
	// TargetLabel: while it fails closed, a deleted Deployment's dependents
	// cannot be garbage collected.
	Deletes bool
	// Node is the node its backend pod runs on, added to the cluster when
	// missing (local provider); empty: the lab's node, where the agent
	// runs. On another node no agent traces the backend.
	Node string
	// APIService registers the backend as an aggregated API (the group
	// <name>.hookscope.dev, version v1alpha1) instead of a webhook; its
	// writes are discovery reads through the API server.
	APIService bool
	// Conversion registers the backend as the conversion webhook of a CRD
	// (Widget, group <name>.hookscope.dev, v1 stored and v2) instead of
	// an admission webhook; its writes create Widgets at v2.
	Conversion bool
	// Guard opts the webhook's configuration in to the agent's guard
	// (the annotation guard.hookscope.dev/enabled=true); the lab's guard
	// may change only GuardedConfiguration, so Name must be that.
	Guard bool
	// ReviewProbe opts the webhook's configuration in to the agent's
	// review probe (the annotation hookscope.dev/review-probe=true): the
	// agent sends it dryRun AdmissionReviews and judges the answers.
	ReviewProbe bool
	// MetricsAPI, with APIService, registers the backend as
	// metrics-server's API (v1beta1.metrics.k8s.io), which HPAs read: one
	// scenario at a time, the name is the cluster's.
	MetricsAPI bool
	// HostNetwork runs the backend pod on its node's network: it serves on
	// the node's address, where the agent sees its connections on the
	// node's own interfaces (loopback for a client on the same host).
	HostNetwork bool
	// URL registers the admission webhook with clientConfig.url naming its
	// pod's address (https://<pod IP>:8443/validate), not a Service, as a
	// webhook served at a fixed address is; its certificates name that IP.
	URL bool
}

// Webhook is a deployed webhook: a backend pod whose IP is a real network
// namespace on this machine with an HTTPS admission server in it, a Service
// for it, and a webhook configuration (validating, or mutating with
// Spec.Mutating) for pod creates in its namespace that carry TargetLabel.
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
	traced     bool // an agent runs on node
	pod        *podnet.Pod
	writes     int
}

// DeployWebhook deploys a webhook serving a valid certificate and waits until
// the API server calls it and the agent traces its backend.
func (l *Lab) DeployWebhook(ctx context.Context, spec WebhookSpec) (_ *Webhook, err error) {
	w := l.newWebhook(spec)
	defer func() {
		if err != nil {
			w.Remove(context.Background())
		}
	}()
	if w.CA, err = certs.NewCA("hookscope-chaos-" + spec.Name); err != nil {
		return nil, err
	}
	if err := w.createNamespace(ctx); err != nil {
		return nil, err
	}
	if err := l.ensureNode(ctx, w.node); err != nil {
		return nil, err
	}
	if err := w.StartBackend(ctx); err != nil {
		return nil, err
	}
	if err := w.createService(ctx); err != nil {
		return nil, err
	}
	if err := w.waitEndpoint(ctx); err != nil {
		return nil, err
	}
	if err := w.register(ctx); err != nil {
		return nil, err
	}
	w.agent = l.Agent
	w.traced = w.node == l.Node
	if err := w.WaitServing(ctx); err != nil {
		return nil, fmt.Errorf("deploying webhook %s: %w", spec.Name, err)
	}
	return w, nil
}

// newWebhook names the webhook's namespace, Service and configuration entry
// after spec.Name, for the lab's cluster and node; it creates nothing.
func (l *Lab) newWebhook(spec WebhookSpec) *Webhook {
	w := &Webhook{
		Spec:        spec,
		Namespace:   "chaos-" + spec.Name,
		Service:     spec.Name + "-webhook",
		WebhookName: "vpod." + spec.Name + ".hookscope.dev",
		client:      l.Client,
		node:        cmp.Or(spec.Node, l.Node),
		inPods:      l.restConfig != nil,
		restConfig:  l.restConfig,
	}
	switch {
	case spec.Mutating:
		w.WebhookName = "mpod." + spec.Name + ".hookscope.dev"
	case spec.APIService:
		w.WebhookName = w.apiVersion() + "." + w.apiGroup() // the APIService's name
	case spec.Conversion:
		w.WebhookName = w.crdName()
	}
	return w
}

// createNamespace creates the webhook's namespace and waits for its default
// ServiceAccount, without which the API server admits no pod there.
func (w *Webhook) createNamespace(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.Namespace}}
	if _, err := w.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("deploying webhook %s: creating namespace: %w", w.Spec.Name, err)
	}
	if err := waitServiceAccount(ctx, w.client, w.Namespace); err != nil {
		return fmt.Errorf("deploying webhook %s: %w", w.Spec.Name, err)
	}
	return nil
}

// WaitServing waits until the agent traces the backend (the game day
// measures from the first failed call, so tracing must start before any
// injection) and a write really goes through the webhook (the API server
// picks configurations and endpoints up asynchronously).
func (w *Webhook) WaitServing(ctx context.Context) error {
	if w.agent != nil && w.traced {
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

// Write creates a pod that the webhook intercepts, as a user's write would,
// and deletes it again if it was admitted. It returns when the write started.
func (w *Webhook) Write(ctx context.Context) (time.Time, error) {
	switch {
	case w.Spec.APIService:
		return w.readAPI(ctx)
	case w.Spec.Conversion:
		return w.writeWidget(ctx)
	}
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
	switch {
	case w.Spec.APIService:
		err = w.removeAPIService(ctx)
	case w.Spec.Conversion:
		err = w.removeConversion(ctx)
	case w.Spec.Mutating:
		err = w.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, w.Spec.Name, metav1.DeleteOptions{})
	default:
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

// waitServiceAccount waits until the controller manager has created ns's
// default ServiceAccount.
func waitServiceAccount(ctx context.Context, c kubernetes.Interface, ns string) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

// ensureNode adds node to the cluster unless it is there (the lab's own
// node always is).
func (l *Lab) ensureNode(ctx context.Context, node string) error {
	if node == l.Node {
		return nil
	}
	if _, err := l.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err == nil {
		return nil
	}
	return l.Provider.AddNode(ctx, node)
}
