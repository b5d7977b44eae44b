//go:build linux

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hookscope/hookscope/internal/jaeger"
)

// On kind the lab's parts run as the cluster's own pods, each image built
// here and loaded into the nodes (nothing is pulled):
//   - the agent: hookscope's Dockerfile image, installed with the project's
//     Helm chart and the game day's intervals;
//   - Jaeger, as the OTLP endpoint deploy/base names
//     (otel-collector.observability.svc:4317);
//   - each webhook backend: chaos/kind/backend, driven through its control
//     port.
//
// The game day reaches them through port-forwards, over loopback only.
const (
	kindAgentImage   = "hookscope:dev"
	kindJaegerImage  = "hookscope.local/jaeger:kind"
	kindBackendImage = "hookscope.local/chaos-webhook:kind"
	kindAgentNS      = "hookscope"
	kindJaegerNS     = "observability"
	kindJaegerName   = "otel-collector"
	backendControl   = 9444
)

// startKind brings up the agent and Jaeger in the kind cluster.
func (l *Lab) startKind(ctx context.Context, k *Kind) error {
	cfg, err := k.restConfig()
	if err != nil {
		return err
	}
	l.restConfig = cfg
	nodes, err := k.Nodes()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := buildKindImages(ctx, l.Dir, l.Binary); err != nil {
		return err
	}
	for _, img := range []string{kindAgentImage, kindJaegerImage, kindBackendImage} {
		if err := loadImage(ctx, img, nodes); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "lab: images built and loaded into %d nodes in %s\n", len(nodes), time.Since(start).Round(time.Millisecond))

	if err := l.deployKindJaeger(ctx); err != nil {
		return err
	}
	return l.deployKindAgent(ctx)
}

// buildKindImages builds the agent's image with the project's Dockerfile
// (agent must be a static build), the webhook backend's and Jaeger's.
func buildKindImages(ctx context.Context, dir, agent string) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	// The Dockerfile copies bin/hookscope-agent: a build context of its own.
	bctx := filepath.Join(dir, "image")
	if err := os.MkdirAll(filepath.Join(bctx, "bin"), 0o755); err != nil {
		return err
	}
	for src, dst := range map[string]string{filepath.Join(root, "Dockerfile"): "Dockerfile", agent: "bin/hookscope-agent"} {
		if err := copyFile(src, filepath.Join(bctx, dst)); err != nil {
			return fmt.Errorf("building the agent's image: %w", err)
		}
	}
	if err := os.Chmod(filepath.Join(bctx, "bin/hookscope-agent"), 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "docker", "build", "-q", "-t", kindAgentImage, bctx).CombinedOutput(); err != nil {
		return fmt.Errorf("building the agent's image from the Dockerfile: %w: %s", err, out)
	}

	backend, err := goBinary(ctx, dir, "./chaos/kind/backend")
	if err != nil {
		return err
	}
	if err := scratchImage(ctx, kindBackendImage, []string{"/backend"}, file{"backend", 0o755, backend}); err != nil {
		return err
	}

	jbin, err := jaeger.Binary()
	if err != nil {
		return err
	}
	jb, err := os.ReadFile(jbin)
	if err != nil {
		return err
	}
	jcfg, err := jaeger.PodConfig()
	if err != nil {
		return err
	}
	return scratchImage(ctx, kindJaegerImage, []string{"/jaeger", "--config", "/jaeger.yaml"},
		file{"jaeger", 0o755, jb}, file{"jaeger.yaml", 0o644, jcfg})
}

// deployKindJaeger runs Jaeger as Deployment and Service
// observability/otel-collector and reaches its query API.
func (l *Lab) deployKindJaeger(ctx context.Context) error {
	c := l.Client
	labels := map[string]string{"app": kindJaegerName}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kindJaegerNS}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("deploying jaeger: %w", err)
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: kindJaegerName, Namespace: kindJaegerNS},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					// The lab's node: the joining one has no pod network.
					NodeSelector: map[string]string{corev1.LabelHostname: l.Node},
					Containers: []corev1.Container{{
						Name: "jaeger", Image: kindJaegerImage, ImagePullPolicy: corev1.PullNever,
						Ports: []corev1.ContainerPort{{Name: "otlp-grpc", ContainerPort: jaeger.PodOTLPGRPCPort}},
					}},
				},
			},
		},
	}
	if _, err := c.AppsV1().Deployments(kindJaegerNS).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("deploying jaeger: %w", err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: kindJaegerName, Namespace: kindJaegerNS},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{
			Name: "otlp-grpc", Port: jaeger.PodOTLPGRPCPort, TargetPort: intstr.FromInt32(jaeger.PodOTLPGRPCPort)}}},
	}
	if _, err := c.CoreV1().Services(kindJaegerNS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("deploying jaeger: %w", err)
	}
	pod, err := l.waitPod(ctx, kindJaegerNS, "app="+kindJaegerName, "", time.Minute)
	if err != nil {
		return fmt.Errorf("deploying jaeger: %w", err)
	}
	// The pod is Running before Jaeger listens, and a port-forward whose
	// first connection is refused stops forwarding: forward anew until
	// the query API answers.
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pf, err := ForwardPort(ctx, l.restConfig, kindJaegerNS, pod, jaeger.PodQueryHTTPPort)
		if err != nil {
			lastErr = err
			return false, nil
		}
		q := jaeger.Remote("http://" + pf.Addr)
		if _, lastErr = q.FindTraces(ctx, AgentServiceName, nil); lastErr != nil {
			pf.Close()
			return false, nil
		}
		l.forwards = append(l.forwards, pf)
		l.Jaeger = q
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("deploying jaeger: its query API does not answer: %v (%w)", lastErr, err)
	}
	return nil
}

// deployKindAgent installs the agent with the project's Helm chart (helm
// template, then a server-side apply), with the image loaded here, the game
// day's intervals and HOOKSCOPE_AGENT_EXTRA_ARGS, and reaches every agent's
// API: a finding comes from the agent that saw it, the one on the
// backend's node or the one holding the Lease.
func (l *Lab) deployKindAgent(ctx context.Context) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	tools, err := ToolsDir()
	if err != nil {
		return err
	}
	extra, err := json.Marshal(strings.Fields(os.Getenv("HOOKSCOPE_AGENT_EXTRA_ARGS")))
	if err != nil {
		return err
	}
	repo, tag, _ := strings.Cut(kindAgentImage, ":")
	render := exec.CommandContext(ctx, filepath.Join(tools, "helm"), "template", "hookscope", filepath.Join(root, "deploy", "chart", "hookscope"),
		"--namespace", kindAgentNS, "--kube-version", l.Report.KubernetesVersion, "--set", "namespace.create=true",
		"--set", "image.repository="+repo, "--set", "image.tag="+tag, "--set", "image.pullPolicy=Never",
		"--set", "agent.probeInterval=2s", "--set", "agent.apiserverMetricsInterval=1s", "--set", "agent.logLevel=debug",
		"--set", "agent.peerFindings=true", "--set", "guard.enabled=true", "--set-json", `guard.configurations=["`+GuardedConfiguration+`"]`,
		"--set", "guard.grace="+guardGrace, "--set", "guard.revertAfter="+guardRevertAfter, "--set", "guard.window=1m",
		"--set-json", "agent.extraArgs="+string(extra))
	var stderr bytes.Buffer
	render.Stderr = &stderr
	manifests, err := render.Output()
	if err != nil {
		return fmt.Errorf("deploying the agent: helm template (make tools builds helm): %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	apply := exec.CommandContext(ctx, "kubectl", "--kubeconfig", l.Provider.Kubeconfig(), "apply", "--server-side", "-f", "-")
	apply.Stdin = bytes.NewReader(manifests)
	if out, err := apply.CombinedOutput(); err != nil {
		return fmt.Errorf("deploying the agent: kubectl apply: %w: %s", err, out)
	}
	// An agent on every node, the joining one (NotReady, no pod network)
	// included: the host network needs no CNI.
	nodes, err := l.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("deploying the agent: %w", err)
	}
	var apis []string
	for _, n := range nodes.Items {
		pod, err := l.waitPod(ctx, kindAgentNS, "app.kubernetes.io/name=hookscope-agent", n.Name, 2*time.Minute)
		if err != nil {
			return fmt.Errorf("deploying the agent: on %s: %w", n.Name, err)
		}
		pf, err := ForwardPort(ctx, l.restConfig, kindAgentNS, pod, 9477)
		if err != nil {
			return fmt.Errorf("deploying the agent: %w", err)
		}
		l.forwards = append(l.forwards, pf)
		apis = append(apis, "http://"+pf.Addr)
	}
	l.Agent = AgentPods(apis)
	return nil
}

// waitPod waits for a Ready pod matching selector (on node, if set) and
// returns its name.
func (l *Lab) waitPod(ctx context.Context, ns, selector, node string, timeout time.Duration) (string, error) {
	var name, last string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		pods, err := l.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			if node != "" && p.Spec.NodeName != node {
				continue
			}
			last = string(p.Status.Phase)
			if p.DeletionTimestamp == nil && slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
				return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
			}) {
				name = p.Name
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("no Ready pod %s in %s (last phase %q): %w", selector, ns, last, err)
	}
	return name, nil
}
