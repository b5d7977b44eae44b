//go:build linux

package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hookscope/hookscope/chaos"
	"github.com/hookscope/hookscope/internal/jaeger"
)

// TestMain lets up start this test binary as the demo's background
// process, as it starts the demo's own executable.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "serve" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// x509Expired is the API server's text for the webhook's expired
// certificate.
const x509Expired = "x509: certificate has expired or is not yet valid"

// TestDemoUpDown runs the demo as `make demo` and `make demo-down` do: up
// leaves a cluster whose writes through the webhook fail, with the agent
// naming the failure; a second up changes nothing; down leaves no process,
// network namespace, open API server port or file; a second down is fine.
func TestDemoUpDown(t *testing.T) {
	skipUnlessLab(t)
	dir := t.TempDir()
	agent := os.Getenv("HOOKSCOPE_BIN") // empty: the lab builds ./cmd/hookscope
	t.Cleanup(func() {
		if st, _ := readState(dir); st != nil {
			t.Logf("demo log:\n%s", tail(logPath(dir), 40))
			run([]string{"down", "-dir", dir})
		}
	})
	start := time.Now()
	if code := run([]string{"up", "-dir", dir, "-agent", agent}); code != 0 {
		t.Fatalf("demo up exited %d; log:\n%s", code, tail(logPath(dir), 40))
	}
	t.Logf("demo up in %s", time.Since(start).Round(100*time.Millisecond))
	st, err := readState(dir)
	if err != nil || st == nil || !st.Ready {
		t.Fatalf("state after up: %+v, %v", st, err)
	}
	checkBroken(t, st)

	if code := run([]string{"up", "-dir", dir, "-agent", agent}); code != 0 {
		t.Fatalf("a second demo up exited %d", code)
	}
	if again, err := readState(dir); err != nil || again == nil || again.Pid != st.Pid {
		t.Fatalf("a second up replaced the running demo: %+v, %v", again, err)
	}

	if code := run([]string{"down", "-dir", dir}); code != 0 {
		t.Fatalf("demo down exited %d", code)
	}
	checkNothingLeft(t, st)
	if code := run([]string{"down", "-dir", dir}); code != 0 {
		t.Fatalf("demo down with no demo running exited %d", code)
	}
}

// skipUnlessLab skips where the lab cannot run: not root, -short, or the
// toolchain (`make tools`) or iproute2 missing.
func skipUnlessLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a local cluster, Jaeger and the agent")
	}
	if os.Geteuid() != 0 {
		t.Skip("the demo needs root (network namespaces, eBPF)")
	}
	if _, err := chaos.ToolsDir(); err != nil {
		t.Skip(err)
	}
	if _, err := jaeger.Binary(); err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2's ip is missing (make host-deps)")
	}
}

// checkBroken checks what up promises: the webhook rejects a write now,
// with the API server's text for an expired certificate, and the agent's
// /findings has it open as CertExpired, writes rejected.
func checkBroken(t *testing.T, st *State) {
	t.Helper()
	if !strings.Contains(st.WriteError, x509Expired) || !strings.Contains(st.WriteError, st.Webhook) {
		t.Errorf("the demo's write said %q, want the webhook %s and %q", st.WriteError, st.Webhook, x509Expired)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := clientcmd.BuildConfigFromFlags("", st.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	key, value, _ := strings.Cut(st.Label, "=")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "test-write", Namespace: st.Namespace, Labels: map[string]string{key: value}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
	_, err = client.CoreV1().Pods(st.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), x509Expired) {
		t.Errorf("a pod write in %s: %v, want %q", st.Namespace, err, x509Expired)
	}
	// The rest of the cluster is not behind the webhook.
	other := pod.DeepCopy()
	other.Namespace = metav1.NamespaceDefault
	if _, err := client.CoreV1().Pods(other.Namespace).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Errorf("a pod write in default went through the broken webhook: %v", err)
	}
	open, _, err := chaos.AgentPods([]string{st.AgentAPI}).Findings(ctx)
	if err != nil {
		t.Fatalf("reading the agent's /findings: %v", err)
	}
	found := false
	for _, f := range open {
		if f.Webhook.Name == st.Webhook && f.Class == "CertExpired" && f.Effect == "writes rejected" {
			found = true
		}
	}
	if !found {
		t.Errorf("the agent's open findings have no CertExpired (writes rejected) for %s: %+v", st.Webhook, open)
	}
	if len(st.NetworkNamespaces) == 0 || !netnsExists(st.NetworkNamespaces[0]) {
		t.Errorf("the webhook's network namespace is not recorded or missing: %v", st.NetworkNamespaces)
	}
	var cmds []string
	for _, p := range st.Processes {
		cmds = append(cmds, p.Command)
	}
	all := strings.Join(cmds, "\n")
	for _, want := range []string{"kube-apiserver", "etcd", "jaeger", " agent "} {
		if !strings.Contains(all, want) {
			t.Errorf("the state's processes have no %q:\n%s", want, all)
		}
	}
}

// checkNothingLeft checks that down left nothing of st running or on disk.
func checkNothingLeft(t *testing.T, st *State) {
	t.Helper()
	if _, ok := liveArgs(st.Pid); ok {
		t.Errorf("the demo's background process %d still runs", st.Pid)
	}
	for _, p := range st.Processes {
		if p.alive() {
			t.Errorf("process %d still runs: %s", p.Pid, p.Command)
		}
	}
	if left := processesOf(st.Dir); len(left) > 0 {
		t.Errorf("processes naming %s still run: %+v", st.Dir, left)
	}
	for _, ns := range st.NetworkNamespaces {
		if netnsExists(ns) {
			t.Errorf("network namespace %s still exists", ns)
		}
		if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), ns) {
			t.Errorf("ip netns list still has %s", ns)
		}
	}
	if out, _ := exec.Command("ip", "route", "show", "exact", st.BackendIP).Output(); st.BackendIP == "" || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("the route to the webhook's pod IP %q: %q, want none", st.BackendIP, out)
	}
	for _, addr := range []string{st.APIServer, strings.TrimPrefix(st.AgentAPI, "http://"), strings.TrimPrefix(st.JaegerUI, "http://")} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections", addr)
		}
	}
	if _, err := os.Stat(st.Dir); !os.IsNotExist(err) {
		t.Errorf("%s is still there (%v)", st.Dir, err)
	}
}
