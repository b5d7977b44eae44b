//go:build linux

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

// TestAgentReleasesTheLeaseOnExit: an agent stopped as the kubelet stops a
// pod (SIGTERM) releases the cluster-checks Lease before it exits, and
// another agent, which follows the Lease in a watch, takes it at once
// rather than once the Lease expires (15 s).
func TestAgentReleasesTheLeaseOnExit(t *testing.T) {
	ctx, local, c := localCluster(t, "lease")
	bin := hookscopeBinary(t)
	dir := t.TempDir()
	start := func(node string) *exec.Cmd {
		t.Helper()
		log, err := os.Create(filepath.Join(dir, node+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { log.Close() })
		cmd := exec.Command(bin, "agent", "--kubeconfig", local.Kubeconfig(), "--node-name", node, "--lease-namespace", "default",
			"--listen", "127.0.0.1:0", "--no-ebpf", "--record-events=false")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	holder := func() string {
		l, err := c.CoordinationV1().Leases("default").Get(ctx, "hookscope-cluster-checks", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return ptr.Deref(l.Spec.HolderIdentity, "")
	}
	until := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, d, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
			t.Fatalf("%s: not within %s (holder %q; logs in %s)", what, d, holder(), dir)
		}
	}
	a := start("node-a")
	until("node-a holds the Lease", 30*time.Second, func() bool { return holder() == "node-a" })
	start("node-b")
	time.Sleep(3 * time.Second) // node-b lists and follows the Lease
	if h := holder(); h != "node-a" {
		t.Fatalf("the Lease is held by %q while node-a renews it", h)
	}
	if err := a.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	if err := a.Wait(); err != nil {
		t.Errorf("node-a on SIGTERM: %v", err)
	}
	until("node-b takes the Lease node-a released", 10*time.Second, func() bool { return holder() == "node-b" })
	t.Logf("node-b held the Lease %s after node-a was stopped", time.Since(stopped).Round(time.Millisecond))
	if took := time.Since(stopped); took > 5*time.Second {
		t.Errorf("node-b took the Lease %s after node-a stopped: node-a did not release it", took)
	}
}
