package chaos

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

// TestKindConfig: the kind cluster has one control plane whose API server
// calls webhooks at endpoint IPs, as EKS does and as the local provider
// does, and the workers the game day uses, named as kind names them.
func TestKindConfig(t *testing.T) {
	t.Setenv("HOOKSCOPE_KIND_IMAGE", "hookscope.local/kind-node:v1.34.4")
	k := NewKind("hs", t.TempDir(), 2)
	cfg := k.Config()
	if len(cfg.Nodes) != 3 || cfg.Nodes[0].Role != v1alpha4.ControlPlaneRole || cfg.Nodes[1].Role != v1alpha4.WorkerRole || cfg.Nodes[2].Role != v1alpha4.WorkerRole {
		t.Fatalf("nodes %+v, want a control plane and 2 workers", cfg.Nodes)
	}
	for _, n := range cfg.Nodes {
		if n.Image != "hookscope.local/kind-node:v1.34.4" {
			t.Errorf("node image %q, want HOOKSCOPE_KIND_IMAGE's", n.Image)
		}
	}
	for _, n := range cfg.Nodes {
		if n.Labels[CNILabel] != CNIName {
			t.Errorf("%s node labels %v, want %s=%s (aws-node runs there)", n.Role, n.Labels, CNILabel, CNIName)
		}
	}
	if !cfg.Networking.DisableDefaultCNI || cfg.Networking.KubeProxyMode != v1alpha4.NFTablesProxyMode {
		t.Errorf("networking %+v: want kind's CNI off (aws-node is the CNI) and kube-proxy in nftables mode", cfg.Networking)
	}
	if p := strings.Join(cfg.Nodes[0].KubeadmConfigPatches, "\n"); !strings.Contains(p, `enable-aggregator-routing: "true"`) {
		t.Errorf("control plane patches %q lack enable-aggregator-routing", p)
	}
	if got := strings.Join(k.WorkerNames(), ","); got != "hs-worker,hs-worker2" {
		t.Errorf("worker names %s", got)
	}
	if err := k.AddNode(context.Background(), "hs-worker2"); err != nil {
		t.Errorf("AddNode of a worker kind made: %v", err)
	}
	if err := k.AddNode(context.Background(), "hookscope-node-0"); err == nil || !strings.Contains(err.Error(), "kind makes its nodes with the cluster") {
		t.Errorf("AddNode of a node kind did not make: %v", err)
	}
	if k.Name() != "kind" {
		t.Errorf("name %q", k.Name())
	}
	// Nothing was created: deleting is a no-op, not an error.
	if err := k.Delete(context.Background()); err != nil {
		t.Errorf("Delete before Create: %v", err)
	}
}

// TestKindWithoutContainerRuntime: where no container runtime runs (this
// machine: no runtime, or the Docker CLI with no daemon), Create says so in
// one line, with the way out.
func TestKindWithoutContainerRuntime(t *testing.T) {
	if exec.Command("docker", "info").Run() == nil || exec.Command("podman", "info").Run() == nil {
		t.Skip("a container runtime runs here: the message for its absence cannot be shown")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := NewKind("hs-none", t.TempDir(), 1).Create(ctx)
	if err == nil {
		t.Fatal("Create succeeded with no container runtime")
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "PROVIDER=local") ||
		!(strings.Contains(msg, "no container runtime") || strings.Contains(msg, "docker info")) {
		t.Errorf("error %q, want one line naming the missing runtime and the way out", msg)
	}
	t.Logf("one line: %v", err)
}

// TestKindCluster creates a real kind cluster from the offline node image:
// every node Ready once aws-node runs on it, kube-proxy and CoreDNS Running
// (CoreDNS reaches the API server through its Service IP), and a pod on the
// worker gets an address from the node's pod CIDR. It runs where a Docker
// daemon and the node image are (make docker-up kind-image) and says why it
// skips elsewhere.
func TestKindCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("creates a kind cluster")
	}
	if exec.Command("docker", "info").Run() != nil {
		t.Skip("no Docker daemon here (make docker-up starts one)")
	}
	k := NewKind("hs-kindtest", t.TempDir(), 1)
	image := k.Image
	if exec.Command("docker", "image", "inspect", image).Run() != nil {
		t.Skipf("no kind node image %s (make kind-image builds it)", image)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if err := k.Delete(context.Background()); err != nil {
			t.Errorf("deleting: %v", err)
		}
	})
	// What a killed run leaves: a node container of a cluster of the same
	// name (kind finds clusters by this label). Create deletes it first.
	leftover := exec.Command("docker", "create", "--name", "hs-kindtest-control-plane",
		"--label", "io.x-k8s.kind.cluster=hs-kindtest", image)
	if out, err := leftover.CombinedOutput(); err != nil {
		t.Fatalf("creating a leftover node container: %v: %s", err, out)
	}
	start := time.Now()
	if err := k.Create(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster with every node Ready in %s (a leftover of the same name deleted first)", time.Since(start).Round(time.Second))
	cfg, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	running := func(selector, ns string, want int) func(context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				return false, nil
			}
			n := 0
			for _, p := range pods.Items {
				for _, cs := range p.Status.ContainerStatuses {
					if cs.Ready {
						n++
					}
				}
			}
			return n >= want, nil
		}
	}
	for _, w := range []struct {
		what, selector string
		want           int
	}{
		{"aws-node on both nodes", "k8s-app=aws-node", 2},
		{"kube-proxy on both nodes", "k8s-app=kube-proxy", 2},
		{"CoreDNS Ready (it reaches the API server through the kubernetes Service)", "k8s-app=kube-dns", 2},
	} {
		if err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, running(w.selector, "kube-system", w.want)); err != nil {
			t.Fatalf("%s: %v", w.what, err)
		}
	}
	worker := k.WorkerNames()[0]
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pause", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: worker, Containers: []corev1.Container{{
			Name: "pause", Image: "registry.k8s.io/pause:3.10.1", ImagePullPolicy: corev1.PullNever}}},
	}
	if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err = c.CoreV1().Pods("default").Get(ctx, "pause", metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("pod on %s not Running: %+v", worker, got.Status)
	}
	node, err := c.CoreV1().Nodes().Get(ctx, worker, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	prefix := strings.Join(strings.Split(node.Spec.PodCIDR, ".")[:3], ".") + "."
	if !strings.HasPrefix(got.Status.PodIP, prefix) {
		t.Errorf("pod IP %s is not in %s's pod CIDR %s", got.Status.PodIP, worker, node.Spec.PodCIDR)
	}
	// The API server's log, as the game day's baselines read it: klog lines.
	log, err := os.ReadFile(k.APIServerLog())
	if err != nil || !strings.Contains(string(log), "] Serving securely on") {
		t.Errorf("kube-apiserver log (%v) lacks klog's \"Serving securely on\": %.300s", err, log)
	}
}
