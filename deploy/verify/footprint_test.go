//go:build linux

package verify

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// The cluster the agent's footprint is measured on.
const (
	footprintNodes      = 5
	footprintNamespaces = 10
	footprintServices   = 300 // each with an EndpointSlice of 3 endpoints
	footprintWebhooks   = 10
)

// TestAgentFitsItsResources runs the built agent (HOOKSCOPE_AGENT_BIN, as
// `make build` writes it and the image ships it; else HOOKSCOPE_BIN) without eBPF against a real API server holding a few
// hundred objects, leading the cluster-wide checks, and reads its memory and
// CPU from /proc. Its peak RSS must fit the chart's memory limit, its RSS
// at the end the memory request, and its average CPU the CPU limit. Run it
// longer with HOOKSCOPE_FOOTPRINT_FOR=60s; the figures are logged (-v) and
// written beside the resources in values.yaml and deploy/base.
func TestAgentFitsItsResources(t *testing.T) {
	bin := os.Getenv("HOOKSCOPE_AGENT_BIN")
	if bin == "" {
		bin = os.Getenv("HOOKSCOPE_BIN")
	}
	if bin == "" {
		t.Skip("HOOKSCOPE_AGENT_BIN is not set: build the agent (make build) and point HOOKSCOPE_AGENT_BIN at bin/hookscope-agent")
	}
	runFor := 20 * time.Second
	if v := os.Getenv("HOOKSCOPE_FOOTPRINT_FOR"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("HOOKSCOPE_FOOTPRINT_FOR: %v", err)
		}
		runFor = d
	}
	requests, limits := chartResources(t)
	ctx, local, client := localCluster(t, "footprint")
	if err := populate(ctx, client); err != nil {
		t.Fatal(err)
	}
	node := "footprint-0"
	for i := range footprintNodes {
		if err := local.AddNode(ctx, fmt.Sprintf("footprint-%d", i)); err != nil {
			t.Fatal(err)
		}
	}

	listen := freeLoopbackPort(t)
	logPath := filepath.Join(t.TempDir(), "agent.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	args := []string{"agent", "--kubeconfig", local.Kubeconfig(), "--node-name", node,
		"--lease-namespace", "default", "--listen", listen, "--otlp-endpoint", ""}
	// With HOOKSCOPE_FOOTPRINT_EBPF=1 the agent also loads its BPF programs
	// (root); their maps are kernel memory, outside the RSS measured here.
	dataPlane := "--no-ebpf"
	if os.Getenv("HOOKSCOPE_FOOTPRINT_EBPF") == "1" {
		dataPlane = "eBPF"
	} else {
		args = append(args, "--no-ebpf")
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	agentLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	// It works: ready, and leading (so it runs the cluster-wide informers).
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("the agent exited: %v", err)
		default:
		}
		resp, err := http.Get("http://" + listen + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		lease, err := client.CoordinationV1().Leases("default").Get(ctx, "hookscope-cluster-checks", metav1.GetOptions{})
		return resp.StatusCode == http.StatusOK && err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity == node, nil
	})
	if err != nil {
		t.Fatalf("the agent never became ready and leader: %v\n%s", err, agentLog())
	}

	deadline := time.NewTimer(runFor)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var rss, hwm int64
	var cpu time.Duration
	for running := true; running; {
		select {
		case err := <-exited:
			t.Fatalf("the agent exited after %s: %v\n%s", time.Since(start).Round(time.Second), err, agentLog())
		case <-deadline.C:
			running = false
		case <-tick.C:
		}
		if rss, hwm, err = memory(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		if cpu, err = cpuTime(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
	}
	wall := time.Since(start)
	millicores := cpu.Seconds() / wall.Seconds() * 1000
	t.Logf("agent %s, %d nodes, %d Services and EndpointSlices, %d webhooks, leading, %s: VmHWM %.1f MiB, VmRSS %.1f MiB, CPU %.2f s (%.1fm on average)",
		dataPlane, footprintNodes, footprintServices, footprintWebhooks, wall.Round(time.Second), mib(hwm), mib(rss), cpu.Seconds(), millicores)

	if limit := limits.Memory().Value(); hwm > limit {
		t.Errorf("peak RSS %.1f MiB is over the memory limit %s", mib(hwm), limits.Memory())
	}
	if request := requests.Memory().Value(); rss > request {
		t.Errorf("RSS %.1f MiB is over the memory request %s", mib(rss), requests.Memory())
	}
	if limit := limits.Cpu().MilliValue(); limit > 0 && millicores > float64(limit) {
		t.Errorf("average CPU %.1fm is over the CPU limit %s", millicores, limits.Cpu())
	}
}

// chartResources reads the resources the chart gives the agent by default.
func chartResources(t *testing.T) (requests, limits corev1.ResourceList) {
	t.Helper()
	var values struct {
		Resources corev1.ResourceRequirements `json:"resources"`
	}
	if err := yaml.Unmarshal(readFile(t, filepath.Join(chartDir, "values.yaml")), &values); err != nil {
		t.Fatal(err)
	}
	if values.Resources.Limits.Memory().IsZero() || values.Resources.Requests.Memory().IsZero() {
		t.Fatalf("values.yaml sets no memory request or limit: %v", values.Resources)
	}
	return values.Resources.Requests, values.Resources.Limits
}

// populate gives the cluster what the agent's informers hold: Services with
// EndpointSlices in several namespaces, and webhook configurations calling
// some of them. Nothing is ever dialled: the agent runs without eBPF and
// the endpoints are on other nodes, in the unreachable 10.0.0.0/16.
func populate(ctx context.Context, client kubernetes.Interface) error {
	ready := true
	for n := range footprintNamespaces {
		ns := fmt.Sprintf("team-%d", n)
		if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("populating the cluster: %w", err)
		}
	}
	for i := range footprintServices {
		ns, name := fmt.Sprintf("team-%d", i%footprintNamespaces), fmt.Sprintf("svc-%d", i)
		labels := map[string]string{"app": name}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			// Headless: kwokctl's Service range is one /24.
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: labels,
				Ports: []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intOrString(8443)}}},
		}
		if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("populating the cluster: %w", err)
		}
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("https"), Port: ptr(int32(8443)), Protocol: ptr(corev1.ProtocolTCP)}},
		}
		for e := range 3 {
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.0.%d.%d", 100+e, 1+i%250)},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready},
				NodeName:   ptr(fmt.Sprintf("footprint-%d", 1+e%(footprintNodes-1))),
			})
		}
		if _, err := client.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("populating the cluster: %w", err)
		}
	}
	ignore := admissionv1.Ignore
	none := admissionv1.SideEffectClassNone
	for i := range footprintWebhooks {
		name := fmt.Sprintf("policy-%d.example.com", i)
		cfg := &admissionv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("policy-%d", i)},
			Webhooks: []admissionv1.ValidatingWebhook{{
				Name: name,
				ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{
					Namespace: fmt.Sprintf("team-%d", i%footprintNamespaces), Name: fmt.Sprintf("svc-%d", i), Path: ptr("/validate")}},
				// Matches nothing that is ever written, so no call is made.
				Rules: []admissionv1.RuleWithOperations{{
					Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule:       admissionv1.Rule{APIGroups: []string{"example.com"}, APIVersions: []string{"v1"}, Resources: []string{"widgets"}},
				}},
				FailurePolicy:           &ignore,
				SideEffects:             &none,
				AdmissionReviewVersions: []string{"v1"},
			}},
		}
		if _, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("populating the cluster: %w", err)
		}
	}
	return nil
}

// memory returns the process's resident set size now and at its peak
// (VmRSS, VmHWM), in bytes.
func memory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("reading the agent's memory: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text()) // "VmRSS:   41234 kB"
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("reading the agent's memory: %q: %w", sc.Text(), err)
		}
		switch f[0] {
		case "VmRSS:":
			rss = kb * 1024
		case "VmHWM:":
			hwm = kb * 1024
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("reading the agent's memory: no VmRSS or VmHWM in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the agent's CPU time: %w", err)
	}
	// The command name, in parentheses, may hold spaces: count from after it.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("reading the agent's CPU time: short /proc/%d/stat", pid)
	}
	// Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name,
	// in clock ticks of 1/100 s (USER_HZ on Linux).
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading the agent's CPU time: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// freeLoopbackPort returns a 127.0.0.1 address nobody listens on now.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func intOrString(port int) intstr.IntOrString { return intstr.FromInt32(int32(port)) }
