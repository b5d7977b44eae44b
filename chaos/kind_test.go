package chaos

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

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
	if k.Name() != "kind" || k.APIServerLog() != "" {
		t.Errorf("name %q, API server log %q before any log was collected", k.Name(), k.APIServerLog())
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
