//go:build linux

package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/agent"
	"github.com/hookscope/hookscope/chaos"
	"github.com/hookscope/hookscope/findings"
)

// The cluster's shape: the measured agent's node, the node of the agent
// that holds the Lease, and namespaces for the bulk pods and the
// inventory-only webhooks.
const (
	agentNode     = "scale-node-0"
	leaderNode    = "scale-node-1"
	podsNamespace = "scale-pods"
	invNamespace  = "scale-inv"
	// realWebhooks are deployed with chaos.Lab.DeployWebhook on the agent's
	// node: a backend in a network namespace the API server really calls.
	// One carries the load, one is broken to time detection.
	realWebhooks = 2
	// agentPodCIDR is where kwok takes the agent's node's pod IPs from:
	// inside the guarded 10.0.0.0/16, above what the bulk pods reach.
	agentPodCIDR = "10.0.213.0/24"
	// createWorkers is how many objects are created at once.
	createWorkers = 16
)

// TestBenchScale measures the agent's scale and cost figures and adds them to
// $HOOKSCOPE_BENCH_REPORT/report.json: the agent's RSS, CPU, startup,
// watches and cached objects as a kwok cluster grows (SCALE=small, the
// default, or full) and then takes CRDs, conversion webhooks and
// APIServices at its largest size; its CPU, its programs' cost and dropped
// events at paced call rates, detection time under that load next to idle,
// and the fitted cost curves. Timings go to the report; only real errors
// fail.
func TestBenchScale(t *testing.T) {
	dir := reportDir(t, "the agent loads BPF programs; backends live in network namespaces")
	plan, err := ScalePlanFor(os.Getenv("SCALE"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chaos.ToolsDir(); err != nil {
		t.Skipf("no local cluster tools (make tools): %v", err)
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
	defer cancel()

	work, err := filepath.Abs(filepath.Join(dir, "scale-work"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(work); err != nil {
		t.Fatal(err)
	}
	bin := agentBinary(t, ctx, work)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enabling bpf_stats: %v", err)
	}
	defer stats.Close()

	cluster := chaos.NewLocal("hsscale", filepath.Join(work, "cluster"))
	if err := cluster.Create(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.CollectLogs(filepath.Join(work, "logs")); err != nil {
			t.Logf("collecting the cluster's logs: %v", err)
		}
		dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
		defer dcancel()
		if err := cluster.Delete(dctx); err != nil {
			t.Errorf("deleting the cluster: %v", err)
		}
	})
	client := fastClient(t, cluster.Kubeconfig())
	s := &scaleRig{t: t, plan: plan, client: client, bin: bin, kubeconfig: cluster.Kubeconfig(), work: work}
	s.setup(ctx)

	run := &ScaleRun{Scale: plan.Name}
	rows, callRates, detection := s.measureSteps(ctx, run)

	run.Fits = fits(t, rows, callRates)
	run.Charts = writeCharts(t, dir, rows, callRates)
	if fi, err := os.Stat(bin); err == nil {
		run.AgentBinaryBytes = fi.Size()
	}
	run.Notes = goalNotes(plan, rows, callRates, detection, run.Fits, run.AgentBinaryBytes)
	run.TotalSeconds = time.Since(began).Seconds()
	err = Update(dir, func(r *Report) {
		if r.Kernel == "" {
			r.Kernel = kernelRelease()
		}
		r.Scale, r.CallRate, r.DetectionUnderLoad, r.ScaleRun = rows, callRates, detection, run
		r.KernelNsPerCallNewConnection, r.KernelNsPerCallKeptAlive = 0, 0
		for _, c := range callRates {
			if c.CallsPerSecond != goalCPURate {
				continue
			}
			if c.Mode == "new_connection" {
				r.KernelNsPerCallNewConnection = c.KernelNsPerCall
			} else {
				r.KernelNsPerCallKeptAlive = c.KernelNsPerCall
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range run.Notes {
		t.Log(n)
	}
	t.Logf("wrote the scale sections of %s/report.json and report.md in %.0f s", dir, run.TotalSeconds)
}

// measureSteps grows the cluster through the plan's steps, measures both
// agents at each and, at the plan's LoadStep, runs the call rates and
// detection timings on its follower. Growth goes into run.
func (s *scaleRig) measureSteps(ctx context.Context, run *ScaleRun) (rows []ScaleSize, callRates []CallRate, detection *DetectionUnderLoad) {
	for i, step := range s.plan.Steps {
		g := s.grow(ctx, step)
		run.Growth = append(run.Growth, g)
		s.t.Logf("grown to %d nodes, %d pods, %d services, %d webhooks, %s CRDs/conversion webhooks/APIServices: created in %.1f s (%.0f objects/s), settled in %.1f s",
			g.Nodes, g.Pods, g.Services, g.Webhooks, callOutsCell(g.CRDs, g.ConversionWebhooks, g.APIServices), g.CreateSeconds, g.ObjectsPerSec, g.SettledSeconds)
		measured, leader, follower := s.measureAgents(ctx, step)
		rows = append(rows, measured...)
		if i == s.plan.LoadStep() {
			// The Lease holder stays meanwhile: the measured agent stays a
			// follower, as on every node but one.
			callRates = s.callRates(ctx, follower)
			detection = s.detection(ctx, follower)
		}
		follower.stop()
		leader.stop()
	}
	return rows, callRates, detection
}

// agentBinary is $HOOKSCOPE_AGENT_BIN (else $HOOKSCOPE_BIN), or
// ./cmd/hookscope-agent built into dir: the agent as the image ships it.
func agentBinary(t *testing.T, ctx context.Context, dir string) string {
	if bin, _ := chaos.BinariesFromEnv(); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	_, here, _, _ := runtime.Caller(0)
	bin := filepath.Join(dir, "hookscope-agent")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/hookscope-agent")
	cmd.Dir = filepath.Dir(filepath.Dir(here))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the agent: %v\n%s", err, out)
	}
	return bin
}

// fastClient is a clientset that creates thousands of objects quickly:
// protobuf, and client-side rate limits well above what the API server on
// two cores takes.
func fastClient(t *testing.T, kubeconfig string) kubernetes.Interface {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type scaleRig struct {
	t          *testing.T
	plan       ScalePlan
	client     kubernetes.Interface
	bin        string
	kubeconfig string
	work       string

	healthy, broken *chaos.Webhook
	// What the cluster holds now.
	nodes, pods, services, invWebhooks int
	crds, conversions, apiServices     int
	agents                             int
}

// setup creates the two agents' nodes, the namespaces, and the two real
// webhooks on the measured agent's node.
func (s *scaleRig) setup(ctx context.Context) {
	t := s.t
	for _, ns := range []string{podsNamespace, invNamespace} {
		if _, err := s.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating namespace %s: %v", ns, err)
		}
	}
	if err := s.createNodes(ctx, 2); err != nil {
		t.Fatal(err)
	}
	s.nodes = 2
	if err := s.waitNodesReady(ctx, 2, time.Minute); err != nil {
		t.Fatal(err)
	}
	lab := &chaos.Lab{Client: s.client, Node: agentNode}
	var err error
	if s.healthy, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "scale-load", FailurePolicy: admissionv1.Ignore}); err != nil {
		t.Fatalf("deploying the loaded webhook: %v", err)
	}
	t.Cleanup(func() { s.healthy.Remove(context.Background()) })
	if s.broken, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "scale-break", FailurePolicy: admissionv1.Fail}); err != nil {
		t.Fatalf("deploying the webhook to break: %v", err)
	}
	t.Cleanup(func() { s.broken.Remove(context.Background()) })
}

func nodeName(i int) string { return "scale-node-" + strconv.Itoa(i) }

// createNodes creates kwok nodes up to n, shaped as chaos.Local's AddNode.
func (s *scaleRig) createNodes(ctx context.Context, n int) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return parallel(ctx, s.nodes, n, func(ctx context.Context, i int) error {
		name := nodeName(i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
				Labels: map[string]string{"type": "kwok", "kubernetes.io/hostname": name,
					"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
			},
			Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
		}
		if name == agentNode {
			// kwok gives every other node's pods IPs from 10.0.0.1 up, as it
			// does in any local cluster on this machine; the backends that
			// get a network namespace (and a host route) take their own range
			// so that no other test's pod network can take their route.
			node.Spec.PodCIDR, node.Spec.PodCIDRs = agentPodCIDR, []string{agentPodCIDR}
		}
		_, err := s.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		return ignoreExists(err, "creating node "+name)
	})
}

// parallel runs fn for every i in [from, to) on createWorkers goroutines
// and returns the first error.
func parallel(ctx context.Context, from, to int, fn func(ctx context.Context, i int) error) error {
	if to <= from {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range createWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
	for i := from; i < to && ctx.Err() == nil; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

func ignoreExists(err error, what string) error {
	if err == nil || apierrors.IsAlreadyExists(err) {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// grow brings the cluster to step: nodes, bulk pods spread over the nodes,
// a headless Service for every PodsPerService of them (the EndpointSlice
// controller writes their slices), and webhooks that never match a write.
func (s *scaleRig) grow(ctx context.Context, step ScaleStep) ScaleGrowth {
	t := s.t
	g := ScaleGrowth{Nodes: step.Nodes, Pods: step.Pods, Webhooks: step.Webhooks, Services: step.Pods / PodsPerService,
		CRDs: step.CRDs, ConversionWebhooks: step.Conversions, APIServices: step.APIServices}
	start := time.Now()
	created := 0
	if err := s.createNodes(ctx, step.Nodes); err != nil {
		t.Fatal(err)
	}
	created += max(0, step.Nodes-s.nodes)
	s.nodes = max(s.nodes, step.Nodes)
	created += s.growPods(ctx, step)
	created += s.setInventoryWebhooks(ctx, step.Webhooks-realWebhooks, step.Nodes)
	created += s.setCallOuts(ctx, step)
	g.CreateSeconds = time.Since(start).Seconds()
	g.ObjectsPerSec = float64(created) / math.Max(g.CreateSeconds, 1e-3)

	settleFor := 3 * time.Minute
	if s.plan.Name == "full" {
		settleFor = 15 * time.Minute
	}
	err := s.waitSettled(ctx, settleFor)
	if err == nil && step.HasCallOuts() {
		err = s.waitCallOuts(ctx, settleFor)
	}
	if err != nil {
		// The agent's figures are still worth having; the report says so.
		t.Logf("the cluster did not settle within %s: %v", settleFor, err)
		g.SettledSeconds = -1
	} else {
		g.SettledSeconds = time.Since(start).Seconds()
	}
	return g
}

// growPods brings the bulk pods and their Services to step's and returns
// how many objects it created.
func (s *scaleRig) growPods(ctx context.Context, step ScaleStep) int {
	t := s.t
	services, created := step.Pods/PodsPerService, 0
	err := parallel(ctx, s.services, services, func(ctx context.Context, i int) error {
		name := fmt.Sprintf("g%05d", i)
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: podsNamespace},
			Spec: corev1.ServiceSpec{
				ClusterIP: corev1.ClusterIPNone, // kwokctl's Service range is a /24
				Selector:  map[string]string{"app": name},
				Ports:     []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
			},
		}
		_, err := s.client.CoreV1().Services(podsNamespace).Create(ctx, svc, metav1.CreateOptions{})
		return ignoreExists(err, "creating Service "+name)
	})
	if err != nil {
		t.Fatal(err)
	}
	created += max(0, services-s.services)
	s.services = max(s.services, services)

	err = parallel(ctx, s.pods, step.Pods, func(ctx context.Context, i int) error {
		name := fmt.Sprintf("p%06d", i)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: podsNamespace,
				Labels: map[string]string{"app": fmt.Sprintf("g%05d", i/PodsPerService)}},
			Spec: corev1.PodSpec{
				NodeName:    nodeName(i % step.Nodes), // bound: no scheduler in the way
				Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				Containers: []corev1.Container{{Name: "app", Image: "hookscope.local/app:dev",
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
			},
		}
		_, err := s.client.CoreV1().Pods(podsNamespace).Create(ctx, pod, metav1.CreateOptions{})
		return ignoreExists(err, "creating pod "+name)
	})
	if err != nil {
		t.Fatal(err)
	}
	created += max(0, step.Pods-s.pods)
	s.pods = max(s.pods, step.Pods)
	return created
}

// setInventoryWebhooks makes the count of inventory-only webhooks n: each a
// ValidatingWebhookConfiguration whose objectSelector no object carries,
// its Service and an EndpointSlice with one ready endpoint on a node that
// runs neither measured agent. It returns how many objects it created.
func (s *scaleRig) setInventoryWebhooks(ctx context.Context, n, nodes int) int {
	t := s.t
	name := func(i int) string { return fmt.Sprintf("inv-%03d", i) }
	if n < s.invWebhooks {
		err := parallel(ctx, n, s.invWebhooks, func(ctx context.Context, i int) error {
			errs := []error{
				s.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, "scale-"+name(i), metav1.DeleteOptions{}),
				s.client.CoreV1().Services(invNamespace).Delete(ctx, name(i), metav1.DeleteOptions{}),
				s.client.DiscoveryV1().EndpointSlices(invNamespace).Delete(ctx, name(i), metav1.DeleteOptions{}),
			}
			for _, err := range errs {
				if err != nil && !apierrors.IsNotFound(err) {
					return fmt.Errorf("removing webhook %s: %w", name(i), err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		s.invWebhooks = n
		return 0
	}
	err := parallel(ctx, s.invWebhooks, n, func(ctx context.Context, i int) error {
		// Never dialled: no write matches the webhook.
		if err := s.createBackend(ctx, name(i), i, nodes); err != nil {
			return err
		}
		cfg := &admissionv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "scale-" + name(i)},
			Webhooks: []admissionv1.ValidatingWebhook{{
				Name: "v" + name(i) + ".scale.hookscope.dev",
				ClientConfig: admissionv1.WebhookClientConfig{
					Service: &admissionv1.ServiceReference{Namespace: invNamespace, Name: name(i), Port: ptr.To[int32](443), Path: ptr.To("/validate")},
				},
				Rules: []admissionv1.RuleWithOperations{{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}},
				ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"hookscope.dev/scale-never": "true"}},
				FailurePolicy:           ptr.To(admissionv1.Ignore),
				SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
				AdmissionReviewVersions: []string{"v1"},
				TimeoutSeconds:          ptr.To[int32](5),
			}},
		}
		_, err := s.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{})
		return ignoreExists(err, "creating webhook "+name(i))
	})
	if err != nil {
		t.Fatal(err)
	}
	created := 3 * max(0, n-s.invWebhooks)
	s.invWebhooks = n
	return created
}

// backendPort is the port of the never-called backends' endpoints.
const backendPort = 8443

// backendAddr is the endpoint address of backend slot: inside the guarded
// 10.0.0.0/16 (podnet.GuardPrefix), above the pods' and the real
// webhooks' addresses.
func backendAddr(slot int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 0, byte(240 + slot/250), byte(1 + slot%250)})
}

// createBackend creates Service name in the inventory namespace and its
// EndpointSlice: one ready endpoint at backendAddr(slot) on a node that
// runs neither measured agent, so neither traces it.
func (s *scaleRig) createBackend(ctx context.Context, name string, slot, nodes int) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: invNamespace},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(backendPort)}}},
	}
	if _, err := s.client.CoreV1().Services(invNamespace).Create(ctx, svc, metav1.CreateOptions{}); ignoreExists(err, "") != nil {
		return fmt.Errorf("creating Service %s: %w", name, err)
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: invNamespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "hookscope-bench"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{backendAddr(slot).String()}, NodeName: ptr.To(nodeName(2 + slot%(nodes-2))),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To[int32](backendPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if _, err := s.client.DiscoveryV1().EndpointSlices(invNamespace).Create(ctx, es, metav1.CreateOptions{}); ignoreExists(err, "") != nil {
		return fmt.Errorf("creating EndpointSlice %s: %w", name, err)
	}
	return nil
}

// waitSettled waits until every node is Ready, kwok runs every bulk pod and
// every bulk Service has its EndpointSlice.
func (s *scaleRig) waitSettled(ctx context.Context, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 2*time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		ready, err := s.readyNodes(ctx)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		running, err := s.runningPods(ctx)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		slices, err := s.client.DiscoveryV1().EndpointSlices(podsNamespace).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("%d/%d nodes Ready, %d/%d pods Running, %d/%d Services with a slice", ready, s.nodes, running, s.pods, len(slices.Items), s.services)
		return ready >= s.nodes && running >= s.pods && len(slices.Items) >= s.services, nil
	})
	if err != nil {
		return fmt.Errorf("%w (%s)", err, last)
	}
	return nil
}

func (s *scaleRig) waitNodesReady(ctx context.Context, n int, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ready, err := s.readyNodes(ctx)
		return err == nil && ready >= n, nil
	})
}

func (s *scaleRig) readyNodes(ctx context.Context) (int, error) {
	nodes, err := s.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, node := range nodes.Items {
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n, nil
}

func (s *scaleRig) runningPods(ctx context.Context) (int, error) {
	n := 0
	opts := metav1.ListOptions{Limit: 5000}
	for {
		pods, err := s.client.CoreV1().Pods(podsNamespace).List(ctx, opts)
		if err != nil {
			return 0, err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				n++
			}
		}
		if pods.Continue == "" {
			return n, nil
		}
		opts.Continue = pods.Continue
	}
}

// agentRun is one agent process being measured.
type agentRun struct {
	proc  *chaos.AgentProcess
	pid   int
	api   string
	node  string
	start time.Time
	ready time.Time
	// startupCPU is the CPU it had used when its inventory was complete.
	startupCPU time.Duration
	// watchesBefore is the API server's WATCH count just before it started.
	watchesBefore float64
	// starts are this start and the earlier ones of its node at its step.
	starts []startup
}

// startup is how long one start of an agent took, and its CPU.
type startup struct{ seconds, cpuSeconds float64 }

func (a *agentRun) startup() startup {
	return startup{seconds: a.ready.Sub(a.start).Seconds(), cpuSeconds: a.startupCPU.Seconds()}
}

// startups starts node's agent StartupRuns-1 times, each stopped once its
// inventory is complete (the Lease holder releases the Lease as it
// exits), and returns how long each took.
func (s *scaleRig) startups(ctx context.Context, node string, step ScaleStep) []startup {
	var out []startup
	for range s.plan.StartupRuns - 1 {
		a := s.startAgent(ctx, node, step)
		out = append(out, a.startup())
		a.stop()
	}
	return out
}

// startupFigures is f of each of a's starts.
func (a *agentRun) startupFigures(f func(startup) float64) []float64 {
	out := make([]float64, len(a.starts))
	for i, r := range a.starts {
		out[i] = f(r)
	}
	return out
}

func (a *agentRun) stop() {
	if a != nil && a.proc != nil {
		_ = a.proc.Stop()
		a.proc = nil
	}
}

// startAgent runs `hookscope agent` for node and returns once its
// inventory is complete: /readyz ok (chaos.StartAgent waits for it) and
// every call-out of step in /webhooks (the agent's readiness waits for the
// APIServices and CRDs at most a second after the webhook configurations).
func (s *scaleRig) startAgent(ctx context.Context, node string, step ScaleStep) *agentRun {
	t := s.t
	s.agents++
	dir := filepath.Join(s.work, fmt.Sprintf("agent-%02d-%s", s.agents, node))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	watches, err := s.apiserverWatches(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := &agentRun{node: node, watchesBefore: watches, start: time.Now()}
	a.proc, err = chaos.StartAgent(ctx, chaos.AgentOptions{
		Binary: s.bin, Kubeconfig: s.kubeconfig, NodeName: node, Dir: dir,
		// Info, not the game day's debug: a node's agent logs at info.
		// --pprof serves the heap profile liveHeap reads (and the CPU
		// profiles of HOOKSCOPE_BENCH_PPROF) on the loopback API address.
		ExtraArgs: []string{"--log-level", "info", "--lease-namespace", "default", "--pprof"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if a.pid, a.api, err = findAgent(node, s.bin); err != nil {
		a.stop()
		t.Fatal(err)
	}
	var seen map[string]int
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		ws, err := a.webhooks(ctx)
		if err != nil {
			return false, nil
		}
		seen = callOutsByKind(ws)
		return seen["Validating"]+seen["Mutating"] >= step.Webhooks && seen["APIService"] >= step.APIServices &&
			seen["Conversion"] >= step.Conversions, nil
	})
	if err != nil {
		a.stop()
		t.Fatalf("agent of %s lists %v; want %d webhooks, %d APIServices, %d conversion webhooks: %v",
			node, seen, step.Webhooks, step.APIServices, step.Conversions, err)
	}
	a.ready = time.Now()
	if a.startupCPU, err = ReadCPUTime(a.pid); err != nil {
		a.stop()
		t.Fatal(err)
	}
	return a
}

// findAgent finds the agent this process started for node, by its parent
// and command line, and its API address from --listen.
func findAgent(node, bin string) (pid int, api string, err error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, "", err
	}
	for _, d := range dirs {
		raw, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) < 2 || args[0] != bin || args[1] != "agent" {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		var n, listen string
		for j := 0; j+1 < len(args); j++ {
			switch args[j] {
			case "--node-name":
				n = args[j+1]
			case "--listen":
				listen = args[j+1]
			}
		}
		if n == node && listen != "" {
			pid, _ = strconv.Atoi(filepath.Base(d))
			return pid, "http://" + listen, nil
		}
	}
	return 0, "", fmt.Errorf("no agent process for node %s among this test's children", node)
}

// agentWebhook is what the bench reads of GET /webhooks.
type agentWebhook struct {
	Ref struct {
		Name string `json:"name"`
		Kind string `json:"kind"` // Validating, Mutating, APIService, Conversion
	} `json:"ref"`
	Traced []string `json:"traced"`
	Local  []string `json:"local"`
}

// liveHeap makes the agent collect its garbage and returns the heap it
// still holds (HeapAlloc of /debug/pprof/heap?debug=1&gc=1): its informers'
// objects and its state, without the garbage that the RSS carries until a
// GC cycle and that moves it by several MiB from one start to the next.
// Read after the RSS window: the forced GC is not in the RSS figures.
func (a *agentRun) liveHeap(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.api+"/debug/pprof/heap?debug=1&gc=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading the agent's heap: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("reading the agent's heap: %s %v", resp.Status, err)
	}
	return ParseHeapAlloc(body)
}

// callOutsByKind counts the call-outs an agent lists by their kind.
func callOutsByKind(ws []agentWebhook) map[string]int {
	out := map[string]int{}
	for _, w := range ws {
		out[w.Ref.Kind]++
	}
	return out
}

func (a *agentRun) webhooks(ctx context.Context) ([]agentWebhook, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.api+"/webhooks", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ws []agentWebhook
	if err := json.NewDecoder(resp.Body).Decode(&ws); err != nil {
		return nil, fmt.Errorf("decoding /webhooks: %w", err)
	}
	return ws, nil
}

// apiserverWatches is the API server's count of open WATCH requests.
func (s *scaleRig) apiserverWatches(ctx context.Context) (float64, error) {
	body, err := s.client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	return MetricSum(string(body), "apiserver_longrunning_requests", `verb="WATCH"`), nil
}

// waitLeader waits until node's agent holds the Lease.
func (s *scaleRig) waitLeader(ctx context.Context, node string) error {
	var holder string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := s.client.CoordinationV1().Leases("default").Get(ctx, agent.LeaseName, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return false, nil
		}
		holder = *l.Spec.HolderIdentity
		return holder == node, nil
	})
	if err != nil {
		return fmt.Errorf("the agent of %s does not hold the Lease (holder %q): %w", node, holder, err)
	}
	return nil
}

// measureAgents starts the agent that holds the Lease (on leaderNode) and
// then the measured node's agent, a follower, lets both settle and measures
// them over one window. Both keep running until the caller stops them.
// Each is started StartupRuns times in all (the others stopped once
// complete), for the median of its startup.
func (s *scaleRig) measureAgents(ctx context.Context, step ScaleStep) (rows []ScaleSize, leader, follower *agentRun) {
	t := s.t
	leaderStarts := s.startups(ctx, leaderNode, step)
	leader = s.startAgent(ctx, leaderNode, step)
	t.Cleanup(leader.stop)
	leader.starts = append(leaderStarts, leader.startup())
	if err := s.waitLeader(ctx, leaderNode); err != nil {
		t.Fatal(err)
	}
	leaderWatches := s.settledWatches(ctx, leader)
	followerStarts := s.startups(ctx, agentNode, step)
	follower = s.startAgent(ctx, agentNode, step)
	t.Cleanup(follower.stop)
	follower.starts = append(followerStarts, follower.startup())
	followerWatches := s.settledWatches(ctx, follower)

	counts := s.objectCounts(ctx)
	figures := observe(t, s.plan.Window, leader, follower)
	for i, a := range []*agentRun{leader, follower} {
		row := s.agentRow(ctx, step, a, figures[i], counts)
		if a == leader {
			row.Role, row.Watches = "leader", int(math.Round(leaderWatches))
			row.ListedObjects["node"], row.ListedObjects["event"] = counts.nodes, counts.warnings
			row.ObjectsCached += counts.nodes + counts.warnings
		} else {
			row.Role, row.Watches = "follower", int(math.Round(followerWatches))
		}
		mem := figures[i].mem
		t.Logf("%d nodes, %d pods, %d webhooks, %s call-outs, %s: RSS %s (anon %s, file %s, shared %s; peak %s; live heap %s), CPU %.4f cores, startup %.2f s, %d watches, %d objects (agent's count by kind %v, listed %v; /webhooks by kind %v), %d traced backends",
			row.Nodes, row.Pods, row.Webhooks, callOutsCell(row.CRDs, row.ConversionWebhooks, row.APIServices), row.Role,
			mib(row.AgentRSSBytes), mib(mem.Anon), mib(mem.File), mib(mem.Shmem), mib(row.AgentPeakRSSBytes), mib(row.AgentLiveHeapBytes), row.AgentCPUCores,
			row.StartupSeconds, row.Watches, row.ObjectsCached, row.InventoryObjects, row.ListedObjects, row.CallOuts, row.LocalBackends)
		rows = append(rows, row)
	}
	return rows, leader, follower
}

// agentRow is what one window measured of agent a at step, with the
// inventory's own count of what it caches. The CRDs and APIServices it
// caches are counted by listing them while it does not count them itself
// (ListedObjects).
func (s *scaleRig) agentRow(ctx context.Context, step ScaleStep, a *agentRun, fig windowFigures, counts objectCounts) ScaleSize {
	ws, err := a.webhooks(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	local := 0
	for _, w := range ws {
		local += len(w.Traced)
	}
	mem := fig.mem
	runs := a.startupFigures(func(r startup) float64 { return r.seconds })
	row := ScaleSize{
		Nodes: step.Nodes, Pods: step.Pods, Webhooks: step.Webhooks,
		CRDs: step.CRDs, ConversionWebhooks: step.Conversions, APIServices: step.APIServices,
		Services: counts.services, EndpointSlices: counts.slices,
		AgentRSSBytes: mem.RSS, AgentPeakRSSBytes: mem.PeakRSS,
		AgentRSSAnonBytes: mem.Anon, AgentRSSFileBytes: mem.File, AgentRSSShmemBytes: mem.Shmem,
		AgentCPUCores:      fig.cpuCores,
		InventoryUpdates:   fig.inventoryUpdates,
		StartupSeconds:     median(runs),
		StartupCPUSeconds:  median(a.startupFigures(func(r startup) float64 { return r.cpuSeconds })),
		StartupRunsSeconds: runs,
		LocalBackends:      local,
		InventoryObjects:   map[string]int{},
		ListedObjects:      map[string]int{},
		CallOuts:           callOutsByKind(ws),
	}
	if row.AgentLiveHeapBytes, err = a.liveHeap(ctx); err != nil {
		s.t.Fatal(err)
	}
	for kind, n := range MetricByLabel(s.scrape(ctx, a), "hookscope_inventory_objects", "kind") {
		row.InventoryObjects[kind] = int(n)
		row.ObjectsCached += int(n)
	}
	for kind, n := range map[string]int{kindCRD: counts.crds, kindAPIService: counts.apiServices} {
		if _, ok := row.InventoryObjects[kind]; !ok {
			row.ListedObjects[kind] = n
			row.ObjectsCached += n
		}
	}
	return row
}

// The kinds hookscope_inventory_objects would name the CRDs and
// APIServices by, as it names "webhookconfiguration", "service" and
// "endpointslice".
const (
	kindCRD        = "customresourcedefinition"
	kindAPIService = "apiservice"
)

// settledWatches waits plan.Settle and returns how many WATCH requests the
// API server gained since a started.
func (s *scaleRig) settledWatches(ctx context.Context, a *agentRun) float64 {
	time.Sleep(s.plan.Settle)
	w, err := s.apiserverWatches(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	return w - a.watchesBefore
}

// windowFigures is what one measuring window saw of an agent.
type windowFigures struct {
	cpuCores float64
	// mem is the median of the window's samples: the Go heap breathes
	// with each GC, and one read would catch it anywhere in that cycle.
	mem ProcStatus
	// inventoryUpdates is how many times the agent re-resolved its
	// inventory in the window (its "inventory" log lines).
	inventoryUpdates int
}

// observe measures each agent's CPU over window and samples its memory
// every 250 ms.
func observe(t *testing.T, window time.Duration, agents ...*agentRun) []windowFigures {
	before := make([]time.Duration, len(agents))
	logBefore := make([]int, len(agents))
	samples := make([][]ProcStatus, len(agents))
	for i, a := range agents {
		d, err := ReadCPUTime(a.pid)
		if err != nil {
			t.Fatal(err)
		}
		before[i], logBefore[i] = d, a.inventoryLines(t)
	}
	start := time.Now()
	for time.Since(start) < window {
		for i, a := range agents {
			m, err := ReadProcStatus(a.pid)
			if err != nil {
				t.Fatal(err)
			}
			samples[i] = append(samples[i], m)
		}
		time.Sleep(250 * time.Millisecond)
	}
	elapsed := time.Since(start)
	out := make([]windowFigures, len(agents))
	for i, a := range agents {
		d, err := ReadCPUTime(a.pid)
		if err != nil {
			t.Fatal(err)
		}
		ms := samples[i]
		sort.Slice(ms, func(x, y int) bool { return ms[x].RSS < ms[y].RSS })
		last, err := ReadProcStatus(a.pid)
		if err != nil {
			t.Fatal(err)
		}
		mem := ms[len(ms)/2]
		mem.PeakRSS = last.PeakRSS
		out[i] = windowFigures{cpuCores: (d - before[i]).Seconds() / elapsed.Seconds(), mem: mem,
			inventoryUpdates: a.inventoryLines(t) - logBefore[i]}
	}
	return out
}

// inventoryLines counts the agent's "inventory" log lines so far.
func (a *agentRun) inventoryLines(t *testing.T) int {
	b, err := os.ReadFile(a.proc.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte(" msg=inventory "))
}

type objectCounts struct {
	services, slices, nodes, warnings int
	// Every agent caches every CRD and APIService, built-in ones too.
	crds, apiServices int
}

// objectCounts counts the cluster's Services and EndpointSlices, the
// Nodes and Warning Events the Lease holder caches, and the CRDs and
// APIServices.
func (s *scaleRig) objectCounts(ctx context.Context) objectCounts {
	t := s.t
	var c objectCounts
	all := metav1.ListOptions{ResourceVersion: "0"}
	svc, err3 := s.client.CoreV1().Services("").List(ctx, all)
	eps, err4 := s.client.DiscoveryV1().EndpointSlices("").List(ctx, all)
	nodes, err5 := s.client.CoreV1().Nodes().List(ctx, all)
	ev, err6 := s.client.CoreV1().Events("").List(ctx, metav1.ListOptions{ResourceVersion: "0", FieldSelector: "type=Warning"})
	if err := errors.Join(err3, err4, err5, err6); err != nil {
		t.Fatalf("counting the cluster's objects: %v", err)
	}
	c.services, c.slices, c.nodes, c.warnings = len(svc.Items), len(eps.Items), len(nodes.Items), len(ev.Items)
	crds, err7 := s.countItems(ctx, crdsPath)
	apis, err8 := s.countItems(ctx, apiServicesPath)
	if err := errors.Join(err7, err8); err != nil {
		t.Fatalf("counting the cluster's call-outs: %v", err)
	}
	c.crds, c.apiServices = crds, apis
	return c
}

// progStats reads bpf_stats of the programs a process holds.
type progStats struct {
	progs map[string]*ebpf.Program // by "name#id"
}

// agentPrograms opens the BPF programs the agent holds file descriptors to
// (/proc/PID/fdinfo prog_id), to read their bpf_stats.
func agentPrograms(pid int) (*progStats, error) {
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", pid))
	if err != nil {
		return nil, err
	}
	ps := &progStats{progs: map[string]*ebpf.Program{}}
	seen := map[uint64]bool{}
	for _, fd := range fds {
		raw, err := os.ReadFile(fd)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n") {
			v, ok := strings.CutPrefix(line, "prog_id:")
			if !ok {
				continue
			}
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil || seen[id] {
				continue
			}
			seen[id] = true
			p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
			if err != nil {
				ps.close()
				return nil, fmt.Errorf("opening the agent's BPF program %d: %w", id, err)
			}
			name := strconv.FormatUint(id, 10)
			if info, err := p.Info(); err == nil && info.Name != "" {
				name = info.Name
			}
			ps.progs[fmt.Sprintf("%s#%d", name, id)] = p
		}
	}
	if len(ps.progs) == 0 {
		return nil, fmt.Errorf("the agent (pid %d) holds no BPF programs", pid)
	}
	return ps, nil
}

func (ps *progStats) snapshot() (map[string]ebpf.ProgramStats, error) {
	out := map[string]ebpf.ProgramStats{}
	for name, p := range ps.progs {
		s, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("reading bpf_stats of %s: %w", name, err)
		}
		out[name] = *s
	}
	return out, nil
}

func (ps *progStats) close() {
	for _, p := range ps.progs {
		p.Close()
	}
}

// loadResult is what a paced run of calls achieved.
type loadResult struct {
	ok, failed, behind int64
	elapsed            time.Duration
}

func (r loadResult) rate() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// admissionReview is the body of every call: what the API server sends
// for a pod create.
var admissionReview = []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"00000000-0000-0000-0000-000000000001",` +
	`"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE",` +
	`"namespace":"bench","name":"bench","userInfo":{"username":"bench"},"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bench","namespace":"bench"}}}}`)

// runLoad calls w's backend at rate calls/s for d from this host: mode
// "new_connection" opens a TCP connection and does a full TLS handshake per
// call, "http2" multiplexes the calls over kept-alive HTTP/2 connections.
// Calls are paced by a token bucket filled every 5 ms; calls the workers
// could not start in time are counted as behind, never queued unbounded.
func runLoad(ctx context.Context, w *chaos.Webhook, mode string, rate int, d time.Duration) loadResult {
	cfg := &tls.Config{ServerName: w.ServerName(), RootCAs: w.CA.Pool(), NextProtos: []string{"http/1.1"}}
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}
	if mode == "http2" {
		cfg.NextProtos = []string{"h2"}
		tr = &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64}
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	url := "https://" + netip.AddrPortFrom(w.PodIP, 8443).String() + "/validate"

	var res loadResult
	var ok, failed, behind atomic.Int64
	tokens := make(chan struct{}, max(rate/10, 1))
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	workers := 32
	if mode == "http2" {
		workers = 64
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tokens {
				req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(admissionReview))
				if err != nil {
					failed.Add(1)
					continue
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	var issued int64
pace:
	for {
		select {
		case <-ctx.Done():
			break pace
		case <-tick.C:
			due := int64(time.Since(start).Seconds() * float64(rate))
			for ; issued < due; issued++ {
				select {
				case tokens <- struct{}{}:
				default:
					behind.Add(1)
				}
			}
		}
	}
	tick.Stop()
	close(tokens)
	wg.Wait()
	res.elapsed = time.Since(start)
	res.ok, res.failed, res.behind = ok.Load(), failed.Load(), behind.Load()
	return res
}

// agentCounters are the agent's own counts that the call rate runs diff.
type agentCounters struct {
	kernelDropped, agentDropped, calls float64
}

// scrape returns the agent's /metrics.
func (s *scaleRig) scrape(ctx context.Context, a *agentRun) string {
	t := s.t
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.api+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scraping the agent: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("scraping the agent: %v", err)
	}
	return string(body)
}

func (s *scaleRig) agentCounters(ctx context.Context, a *agentRun) agentCounters {
	t := s.t
	text := s.scrape(ctx, a)
	logText, err := os.ReadFile(a.proc.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	return agentCounters{
		kernelDropped: MetricSum(text, "hookscope_bpf_events_dropped_total"),
		// The agent logs each event its own channel had no room for.
		agentDropped: float64(bytes.Count(logText, []byte("agent is behind the kernel"))),
		calls:        MetricSum(text, "hookscope_webhook_calls_total", fmt.Sprintf("webhook=%q", s.healthy.WebhookName)),
	}
}

// callRates runs each planned rate in both modes against the healthy
// webhook's backend and measures the agent over each run.
func (s *scaleRig) callRates(ctx context.Context, a *agentRun) []CallRate {
	t := s.t
	for _, w := range []*chaos.Webhook{s.healthy, s.broken} {
		if err := a.proc.WaitForTraced(ctx, w.WebhookName, netip.AddrPortFrom(w.PodIP, 8443).String(), 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	progs, err := agentPrograms(a.pid)
	if err != nil {
		t.Fatal(err)
	}
	defer progs.close()
	// The agent's CPU with no calls, at this cluster size: what each run
	// adds to it is the calls' cost.
	profiled := s.profileAgent(a, "agent-cpu-idle.pprof", s.plan.IdleWindow)
	idle := observe(t, s.plan.IdleWindow, a)[0]
	profiled()
	t.Logf("agent idle before the call rate runs: %.4f cores, %d inventory updates in %s", idle.cpuCores, idle.inventoryUpdates, s.plan.IdleWindow)
	var out []CallRate
	for _, rate := range s.plan.Rates {
		for _, mode := range []string{"http2", "new_connection"} {
			c0 := s.agentCounters(ctx, a)
			b0, err := progs.snapshot()
			if err != nil {
				t.Fatal(err)
			}
			cpu0, err := ReadCPUTime(a.pid)
			if err != nil {
				t.Fatal(err)
			}
			profiled := s.profileAgent(a, fmt.Sprintf("agent-cpu-%s-%d.pprof", mode, rate), s.plan.RateWindow)
			res := runLoad(ctx, s.healthy, mode, rate, s.plan.RateWindow)
			profiled()
			cpu1, err := ReadCPUTime(a.pid)
			if err != nil {
				t.Fatal(err)
			}
			b1, err := progs.snapshot()
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond) // the last calls' events reach the agent
			c1 := s.agentCounters(ctx, a)
			cr := CallRate{
				CallsPerSecond: rate, Mode: mode, Seconds: res.elapsed.Seconds(),
				AchievedCallsPerSecond: res.rate(), FailedCalls: res.failed,
				AgentCPUCores:     (cpu1 - cpu0).Seconds() / res.elapsed.Seconds(),
				AgentIdleCPUCores: idle.cpuCores, IdleInventoryUpdates: idle.inventoryUpdates,
				KernelDropped: int64(c1.kernelDropped - c0.kernelDropped),
				AgentDropped:  int64(c1.agentDropped - c0.agentDropped),
				CallsSeen:     int64(c1.calls - c0.calls),
			}
			cr.DroppedEvents = cr.KernelDropped + cr.AgentDropped
			var runtimeNs float64
			for name, after := range b1 {
				runs := int64(after.RunCount - b0[name].RunCount)
				ns := float64((after.Runtime - b0[name].Runtime).Nanoseconds())
				if runs <= 0 {
					continue
				}
				cr.BPFEvents += runs
				runtimeNs += ns
				cr.Programs = append(cr.Programs, ProgramCost{Program: name, Path: mode, Events: runs, NsPerEvent: ns / float64(runs)})
			}
			if cr.BPFEvents > 0 {
				cr.BPFNsPerEvent = runtimeNs / float64(cr.BPFEvents)
			}
			cr.BPFCPUCores = runtimeNs / 1e9 / res.elapsed.Seconds()
			if calls := res.rate() * res.elapsed.Seconds(); calls > 0 {
				cr.KernelNsPerCall = runtimeNs / calls
			}
			t.Logf("%s at %d calls/s: achieved %.0f/s (%d failed, %d behind), agent CPU %.4f cores, BPF %.4f cores (%.1f ns/event over %d), dropped %d+%d, calls seen %d",
				mode, rate, cr.AchievedCallsPerSecond, res.failed, res.behind, cr.AgentCPUCores, cr.BPFCPUCores, cr.BPFNsPerEvent, cr.BPFEvents,
				cr.KernelDropped, cr.AgentDropped, cr.CallsSeen)
			out = append(out, cr)
		}
	}
	return out
}

// profileAgent starts a CPU profile of the agent for a window (a call
// rate run, or the idle one), when HOOKSCOPE_BENCH_PPROF asks for it, and
// returns a function that waits for it and writes it there as name (go
// tool pprof reads it).
func (s *scaleRig) profileAgent(a *agentRun, name string, window time.Duration) (wait func()) {
	dir := os.Getenv("HOOKSCOPE_BENCH_PPROF")
	if dir == "" {
		return func() {}
	}
	seconds := max(1, int(window.Seconds())-1)
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", a.api, seconds))
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, b)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name), b, 0o644)
		}
		done <- err
	}()
	return func() {
		if err := <-done; err != nil {
			s.t.Errorf("profiling the agent: %v", err)
		}
	}
}

// detectionLoadMode is the mode of the load that runs while failures are
// timed: a handshake per call is the most kernel events per call.
const detectionLoadMode = "new_connection"

// detection times the broken webhook's refused connections to the agent's
// finding, idle and then while the healthy webhook carries load.
func (s *scaleRig) detection(ctx context.Context, a *agentRun) *DetectionUnderLoad {
	t := s.t
	d := &DetectionUnderLoad{
		Class:   string(findings.ConnectionRefused),
		Failure: fmt.Sprintf("webhook server stopped (its pod stays Ready; connections refused); fail-closed writes through the API server, the first at once and then every %s", detectionWriteEvery),
		Load:    fmt.Sprintf("%s calls at %d/s to another webhook's backend on the same node", detectionLoadMode, s.plan.DetectionLoad),
	}
	d.IdleSamples, d.IdleStaleFirstCalls = s.timeDetections(ctx, a, s.plan.DetectionRuns)

	lctx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan loadResult, 1)
	go func() { loadDone <- runLoad(lctx, s.healthy, detectionLoadMode, s.plan.DetectionLoad, time.Hour) }()
	time.Sleep(time.Second) // the load is running before the first failure
	d.Samples, d.StaleFirstCalls = s.timeDetections(ctx, a, s.plan.DetectionRuns)
	stopLoad()
	res := <-loadDone
	d.LoadAchieved = res.rate()

	d.P50Seconds, d.P95Seconds = Percentile(d.Samples, 50), Percentile(d.Samples, 95)
	d.IdleP50Seconds, d.IdleP95Seconds = Percentile(d.IdleSamples, 50), Percentile(d.IdleSamples, 95)
	t.Logf("detection p50/p95: idle %.3f/%.3f s, under load (%.0f calls/s) %.3f/%.3f s",
		d.IdleP50Seconds, d.IdleP95Seconds, d.LoadAchieved, d.P50Seconds, d.P95Seconds)
	return d
}

// detectionWriteEvery is how often writes through the broken webhook go
// on until the agent finds it, as a cluster's writes would: the first
// failed call alone may be on a kept-alive connection the server just
// closed, which sends no SYN for the kernel to see refused.
const detectionWriteEvery = 250 * time.Millisecond

// timeDetections breaks the broken webhook n times: stop its server, make
// the write that fails and keep writing, poll /findings for the finding;
// then serve again, write until it works and wait for the finding to
// resolve. It returns the times and how many first failed calls were on a
// stale connection (no refused SYN).
func (s *scaleRig) timeDetections(ctx context.Context, a *agentRun, n int) (times []float64, stale int) {
	t := s.t
	w := s.broken
	for i := range n {
		if err := w.StopServer(); err != nil {
			t.Fatal(err)
		}
		start, werr := w.Write(ctx)
		if werr == nil {
			t.Fatalf("run %d: a write through the stopped webhook %s succeeded", i, w.WebhookName)
		}
		if !strings.Contains(werr.Error(), "connection refused") {
			stale++
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(detectionWriteEvery)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					_, _ = w.Write(ctx)
				}
			}
		}()
		f, err := a.proc.WaitForFinding(ctx, w.WebhookName, string(findings.ConnectionRefused), 30*time.Second)
		seen := time.Now()
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		// WaitForFinding polls every 10 ms; the agent's FirstSeen is the
		// moment it opened the finding, so take it when it is earlier.
		if !f.FirstSeen.IsZero() && f.FirstSeen.After(start) && f.FirstSeen.Before(seen) {
			seen = f.FirstSeen
		}
		times = append(times, seen.Sub(start).Seconds())
		if d := seen.Sub(start); d > 500*time.Millisecond {
			t.Logf("run %d: found after %s; the first failed call: %v", i, d.Round(time.Millisecond), werr)
		}

		if err := w.StartServer(); err != nil {
			t.Fatal(err)
		}
		err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := w.Write(ctx)
			return err == nil, nil
		})
		if err != nil {
			t.Fatalf("run %d: writes through %s still fail after its server is back", i, w.WebhookName)
		}
		if _, err := a.proc.WaitForResolved(ctx, f.ID, 30*time.Second); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	return times, stale
}

// fits are the cost curves: the agent's RSS, settled CPU and startup by
// nodes, pods and webhooks for each role, and its CPU and its programs'
// CPU by call rate for each mode.
//
// The call-out step is left out of every fit, not given a dimension of its
// own: it repeats the size before it, so with nodes, pods and webhooks
// alone the fit would average the two and bend the pod slope, and with a
// call-out dimension its one step would only restate the difference
// (exactly determined). goalNotes states that difference instead.
func fits(t *testing.T, rows []ScaleSize, rates []CallRate) []CostFit {
	var out []CostFit
	for _, role := range []string{"leader", "follower"} {
		var xs [][]float64
		ys := map[string][]float64{}
		for _, r := range rows {
			if r.Role != role || r.HasCallOuts() {
				continue
			}
			xs = append(xs, []float64{float64(r.Nodes), float64(r.Pods), float64(r.Webhooks)})
			ys["agent_rss_bytes"] = append(ys["agent_rss_bytes"], float64(r.AgentRSSBytes))
			ys["agent_rss_anon_bytes"] = append(ys["agent_rss_anon_bytes"], float64(r.AgentRSSAnonBytes))
			ys["agent_live_heap_bytes"] = append(ys["agent_live_heap_bytes"], float64(r.AgentLiveHeapBytes))
			ys["agent_cpu_cores"] = append(ys["agent_cpu_cores"], r.AgentCPUCores)
			ys["startup_seconds"] = append(ys["startup_seconds"], r.StartupSeconds)
		}
		for _, cost := range []string{"agent_rss_bytes", "agent_rss_anon_bytes", "agent_live_heap_bytes", "agent_cpu_cores", "startup_seconds"} {
			b0, slopes, r2, err := FitLinear([]string{"node", "pod", "webhook"}, xs, ys[cost])
			if err != nil {
				t.Logf("no %s fit for the %s: %v", cost, role, err)
				continue
			}
			f := CostFit{Cost: cost, Role: role, Intercept: b0, Slopes: slopes, R2: r2, Points: len(xs)}
			if len(xs) <= len(slopes)+1 {
				f.Note = "exactly determined (as many sizes as terms): the run-to-run noise is inside the slopes"
			}
			out = append(out, f)
		}
		// What the informers hold, whatever its kind: one term, so the
		// sizes leave degrees of freedom to tell growth from noise.
		var objs [][]float64
		for _, r := range rows {
			if r.Role == role && !r.HasCallOuts() {
				objs = append(objs, []float64{float64(r.ObjectsCached)})
			}
		}
		for _, cost := range []string{"agent_rss_anon_bytes", "agent_live_heap_bytes", "startup_seconds"} {
			b0, slopes, r2, err := FitLinear([]string{"cached object"}, objs, ys[cost])
			if err != nil {
				t.Logf("no %s fit by cached objects for the %s: %v", cost, role, err)
				continue
			}
			out = append(out, CostFit{Cost: cost, Role: role, Intercept: b0, Slopes: slopes, R2: r2, Points: len(objs)})
		}
	}
	for _, mode := range []string{"http2", "new_connection"} {
		var xs [][]float64
		ys := map[string][]float64{}
		for _, r := range rates {
			if r.Mode != mode {
				continue
			}
			xs = append(xs, []float64{r.AchievedCallsPerSecond})
			ys["agent_cpu_cores"] = append(ys["agent_cpu_cores"], r.AgentCPUCores)
			ys["bpf_cpu_cores"] = append(ys["bpf_cpu_cores"], r.BPFCPUCores)
		}
		for _, cost := range []string{"agent_cpu_cores", "bpf_cpu_cores"} {
			b0, slopes, r2, err := FitLinear([]string{"call/s"}, xs, ys[cost])
			if err != nil {
				t.Logf("no %s fit for %s: %v", cost, mode, err)
				continue
			}
			out = append(out, CostFit{Cost: cost, Mode: mode, Intercept: b0, Slopes: slopes, R2: r2, Points: len(xs)})
		}
	}
	return out
}

// writeCharts draws charts into dir and returns the files' names.
func writeCharts(t *testing.T, dir string, rows []ScaleSize, rates []CallRate) []string {
	svgs := charts(rows, rates)
	var names []string
	for _, name := range []string{"scale-rss.svg", "call-rate-cpu.svg"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(svgs[name]), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return names
}

// goalNotes names every goal with its measured figure, met or missed,
// and for a miss the term that drives it.
func goalNotes(plan ScalePlan, rows []ScaleSize, rates []CallRate, d *DetectionUnderLoad, fs []CostFit, binarySize int64) []string {
	notes := rssNotes(rows, fs, binarySize)
	notes = append(notes, startupNotes(rows)...)
	notes = append(notes, callOutNotes(rows, fs)...)
	notes = append(notes, rateNotes(plan, rates)...)
	if d != nil {
		notes = append(notes, detectionNote(d))
	}
	return notes
}

// findFit is the fit of cost for role that has a slope by by, or nil.
func findFit(fs []CostFit, cost, role, by string) *CostFit {
	for i := range fs {
		if _, ok := fs[i].Slopes[by]; ok && fs[i].Cost == cost && fs[i].Role == role {
			return &fs[i]
		}
	}
	return nil
}

// sizeText names a row's cluster size, with its other call-outs if any.
func sizeText(r ScaleSize) string {
	t := fmt.Sprintf("%d nodes/%d pods/%d webhooks", r.Nodes, r.Pods, r.Webhooks)
	if r.HasCallOuts() {
		t += fmt.Sprintf("/%d CRDs (%d with a conversion webhook)/%d APIServices", r.CRDs, r.ConversionWebhooks, r.APIServices)
	}
	return t
}

// rssNotes: each role's largest RSS against the goal.
func rssNotes(rows []ScaleSize, fs []CostFit, binarySize int64) []string {
	var notes []string
	for _, role := range []string{"follower", "leader"} {
		var worst *ScaleSize
		for i := range rows {
			if rows[i].Role == role && (worst == nil || rows[i].AgentRSSBytes > worst.AgentRSSBytes) {
				worst = &rows[i]
			}
		}
		if worst == nil {
			continue
		}
		n := fmt.Sprintf("RSS < 48 MiB (%s): %s, largest %s at %s (%.2f of the goal; %s anonymous, %s file-backed)",
			role, verdict(worst.AgentRSSBytes < GoalAgentRSSBytes), mib(worst.AgentRSSBytes), sizeText(*worst),
			float64(worst.AgentRSSBytes)/GoalAgentRSSBytes, mib(worst.AgentRSSAnonBytes), mib(worst.AgentRSSFileBytes))
		f := findFit(fs, "agent_rss_anon_bytes", role, "cached object")
		if f != nil {
			n += fmt.Sprintf("; anonymous memory fits %s + %s per cached object (R² %.2f over %d sizes)",
				fitUnit(f.Cost, f.Intercept), fitUnit(f.Cost, f.Slopes["cached object"]), f.R2, f.Points)
		}
		if worst.AgentRSSBytes >= GoalAgentRSSBytes {
			n += "; reason: " + rssReason(role, *worst, binarySize)
			if f != nil && f.R2 > 0.8 && f.Slopes["cached object"] > 1024 {
				n += fmt.Sprintf("; and the anonymous part is not flat: %s per cached object (%d objects here)", fitUnit(f.Cost, f.Slopes["cached object"]), worst.ObjectsCached)
			}
		}
		notes = append(notes, n)
	}
	return notes
}

// startupNotes: startup against the goal at the largest size (with and
// without the other call-outs).
func startupNotes(rows []ScaleSize) []string {
	maxNodes, maxPods := 0, 0
	for _, r := range rows {
		maxNodes, maxPods = max(maxNodes, r.Nodes), max(maxPods, r.Pods)
	}
	var notes []string
	for _, r := range rows {
		if r.Nodes != maxNodes || r.Pods != maxPods {
			continue
		}
		n := fmt.Sprintf("startup < 1 s at the largest size (%s, %s): %s, %.2f s (%.2f of the goal, %.2f s of CPU)",
			r.Role, sizeText(r), verdict(r.StartupSeconds < GoalStartupSeconds), r.StartupSeconds, r.StartupSeconds/GoalStartupSeconds, r.StartupCPUSeconds)
		if r.StartupSeconds >= GoalStartupSeconds {
			n += fmt.Sprintf("; reason: the initial lists of %d Services and %d EndpointSlices (and, for the leader, every Node) before /readyz", r.Services, r.EndpointSlices)
			if r.HasCallOuts() {
				n += fmt.Sprintf(", then the lists of %d CRDs (with their schemas) and the APIServices before /webhooks lists them", r.CRDs)
			}
		}
		notes = append(notes, n)
	}
	return notes
}

// callOutNotes: for each role, the call-out step's RSS and startup against
// the goals, and what it adds to the step before (the same size without
// the call-outs, the role's previous row), next to what the live heap's
// fit by cached object (made without the call-out step) predicts for the
// objects it adds, and what the agent counts of its cache.
func callOutNotes(rows []ScaleSize, fs []CostFit) []string {
	var notes []string
	for _, role := range []string{"leader", "follower"} {
		var before *ScaleSize
		for i := range rows {
			r := rows[i]
			if r.Role != role {
				continue
			}
			if !r.HasCallOuts() {
				before = &rows[i]
				continue
			}
			n := fmt.Sprintf("call-outs, %s at %s: RSS %s (anonymous %s, live heap %s), %s (%.2f of 48 MiB); startup %.2f s, %s (%.2f of 1 s); CPU %.4f cores; %d watches; %d objects cached",
				role, sizeText(r), mib(r.AgentRSSBytes), mib(r.AgentRSSAnonBytes), mib(r.AgentLiveHeapBytes), verdict(r.AgentRSSBytes < GoalAgentRSSBytes),
				float64(r.AgentRSSBytes)/GoalAgentRSSBytes, r.StartupSeconds, verdict(r.StartupSeconds < GoalStartupSeconds),
				r.StartupSeconds/GoalStartupSeconds, r.AgentCPUCores, r.Watches, r.ObjectsCached)
			if before != nil {
				b := *before
				n += fmt.Sprintf("; over the step before (%s): live heap %+.2f MiB, RSS %+.1f MiB, anonymous %+.1f MiB, peak %+.1f MiB, startup %+.2f s, CPU %+.4f cores, watches %+d, objects cached %+d "+
					"(the RSS moves by a few MiB from one start to the next with the Go heap's GC cycle; the live heap, read after a forced GC, does not)",
					sizeText(b), mibDiff(r.AgentLiveHeapBytes, b.AgentLiveHeapBytes), mibDiff(r.AgentRSSBytes, b.AgentRSSBytes), mibDiff(r.AgentRSSAnonBytes, b.AgentRSSAnonBytes),
					mibDiff(r.AgentPeakRSSBytes, b.AgentPeakRSSBytes), r.StartupSeconds-b.StartupSeconds, r.AgentCPUCores-b.AgentCPUCores,
					r.Watches-b.Watches, r.ObjectsCached-b.ObjectsCached)
				if f := findFit(fs, "agent_live_heap_bytes", role, "cached object"); f != nil {
					n += fmt.Sprintf("; at the fit's %s per cached object of the other steps, %+d objects would be %+.2f MiB of live heap",
						fitUnit(f.Cost, f.Slopes["cached object"]), r.ObjectsCached-b.ObjectsCached, f.Slopes["cached object"]*float64(r.ObjectsCached-b.ObjectsCached)/(1<<20))
				}
			}
			n += "; " + inventoryText(r)
			notes = append(notes, n)
		}
	}
	return notes
}

// inventoryText says what the agent counts of its own cache by kind, and
// what the objects cached took from listing the cluster instead.
func inventoryText(r ScaleSize) string {
	kinds := func(m map[string]int) string {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
		return strings.Join(parts, ", ")
	}
	t := "the agent's own count (hookscope_inventory_objects): " + kinds(r.InventoryObjects)
	if len(r.InventoryObjects) == 0 {
		t = "the agent exports no hookscope_inventory_objects"
	}
	if len(r.ListedObjects) > 0 {
		t += "; cached but not counted by the agent, so taken from listing the cluster: " + kinds(r.ListedObjects)
	}
	return t + fmt.Sprintf("; /webhooks lists %d APIService and %d Conversion call-outs", r.CallOuts["APIService"], r.CallOuts["Conversion"])
}

func mibDiff(a, b int64) float64 { return float64(a-b) / (1 << 20) }

// rateNotes: CPU at 1,000 calls/s and dropped events at 5,000 calls/s.
func rateNotes(plan ScalePlan, rates []CallRate) []string {
	var notes []string
	sawFiveK := false
	for _, c := range rates {
		switch c.CallsPerSecond {
		case goalCPURate:
			gc, gk := goalCPU(c.Mode), goalKernelNs(c.Mode)
			n := fmt.Sprintf("CPU <= %.1f%% of a core at 1,000 calls/s (%s): %s, %.2f%% (%.2f of the goal; achieved %.0f calls/s; the programs' own %.2f%% is charged to the senders)",
				100*gc, c.Mode, verdict(c.AgentCPUCores <= gc), 100*c.AgentCPUCores, c.AgentCPUCores/gc,
				c.AchievedCallsPerSecond, 100*c.BPFCPUCores)
			if c.AgentCPUCores > gc {
				n += "; reason: " + cpuReason(c)
			}
			notes = append(notes, n,
				fmt.Sprintf("kernel time per call <= %.0f ns (%s): %s, %.0f ns (%.2f of the goal), every program summed over the run's calls",
					gk, c.Mode, verdict(c.KernelNsPerCall <= gk), c.KernelNsPerCall, c.KernelNsPerCall/gk))
			if made := c.AchievedCallsPerSecond * c.Seconds; c.Mode == "new_connection" && made > 0 {
				// One connection per call: the agent should see each one.
				notes = append(notes, fmt.Sprintf("every new connection seen as a call (%s): %s, %d of %.0f (%.3f)",
					c.Mode, verdict(float64(c.CallsSeen) >= 0.99*made), c.CallsSeen, made, float64(c.CallsSeen)/made))
			}
			if c.Mode == "http2" {
				notes = append(notes, fmt.Sprintf("idle agent CPU <= %.1f%% of a core (a follower, before the call rate runs): %s, %.3f%% (%.2f of the goal)",
					100*GoalIdleCPUCores, verdict(c.AgentIdleCPUCores <= GoalIdleCPUCores), 100*c.AgentIdleCPUCores, c.AgentIdleCPUCores/GoalIdleCPUCores))
			}
		case goalNoDropsRate:
			sawFiveK = true
			n := fmt.Sprintf("no dropped events at 5,000 calls/s (%s): %s, %d dropped (%d kernel, %d agent) at %.0f calls/s achieved",
				c.Mode, verdict(c.DroppedEvents <= GoalDroppedEventsAt5k), c.DroppedEvents, c.KernelDropped, c.AgentDropped, c.AchievedCallsPerSecond)
			if c.AchievedCallsPerSecond < 0.9*goalNoDropsRate {
				n += fmt.Sprintf("; the load generator on this 2-core machine reached only %.0f calls/s in this mode, so 5,000/s is not shown", c.AchievedCallsPerSecond)
			}
			notes = append(notes, n)
		}
	}
	if !sawFiveK {
		notes = append(notes, fmt.Sprintf("no dropped events at 5,000 calls/s: not measured at SCALE=%s (SCALE=full runs it)", plan.Name))
	}
	return notes
}

// detectionNote: detection p95 under load against the goal.
func detectionNote(d *DetectionUnderLoad) string {
	n := fmt.Sprintf("detection p95 < 1 s under load: %s, %.3f s (%.2f of the goal; idle %.3f s in the same run)",
		verdict(d.P95Seconds < GoalDetectionP95), d.P95Seconds, d.P95Seconds/GoalDetectionP95, d.IdleP95Seconds)
	if d.P95Seconds >= GoalDetectionP95 {
		if d.StaleFirstCalls > 0 {
			n += fmt.Sprintf("; %d of %d first failed calls went over a kept-alive connection the stopped server had closed (no SYN, nothing refused "+
				"for the kernel to see), so those failures are found by the next refused call or periodic probe", d.StaleFirstCalls, len(d.Samples))
		} else {
			n += "; reason: the agent is behind the load's kernel events (see the call rate rows' agent CPU)"
		}
	}
	return n
}

// rssReason says what the RSS over the goal is made of.
func rssReason(role string, r ScaleSize, binary int64) string {
	if r.AgentRSSFileBytes > r.AgentRSSAnonBytes {
		return fmt.Sprintf("%s of it is file-backed: the pages in use of the %s agent binary (client-go, OpenTelemetry, cilium/ebpf), page cache "+
			"that the kernel can reclaim and that does not grow with the cluster; the %s's anonymous memory (Go heap and stacks, the informers' objects) is %s",
			mib(r.AgentRSSFileBytes), mib(binary), role, mib(r.AgentRSSAnonBytes))
	}
	return fmt.Sprintf("anonymous memory (Go heap and stacks, the informers' objects) is %s of it", mib(r.AgentRSSAnonBytes))
}

func cpuReason(c CallRate) string {
	if c.AgentIdleCPUCores >= goalCPU(c.Mode)/2 {
		return fmt.Sprintf("the agent already uses %.2f%% of a core with no calls at this cluster size: it re-resolved its inventory %d times "+
			"in the idle window (each a change to a webhook configuration, or to a Service or EndpointSlice a webhook calls); the calls add %.2f%%",
			100*c.AgentIdleCPUCores, c.IdleInventoryUpdates, 100*(c.AgentCPUCores-c.AgentIdleCPUCores))
	}
	if c.Mode == "new_connection" {
		return fmt.Sprintf("each new connection is several kernel events the agent decodes and folds into a call (%d BPF events over the run)", c.BPFEvents)
	}
	return "the agent's own work while calls flow (events, probes, metrics)"
}

func TestFitLinear(t *testing.T) {
	tests := []struct {
		name      string
		xs        [][]float64
		y         []float64
		intercept float64
		slopes    map[string]float64
	}{
		{
			name: "each dimension moves once",
			xs:   [][]float64{{10, 300, 50}, {10, 300, 200}, {100, 300, 50}, {100, 3000, 50}},
			y: []float64{20e6 + 10*1000 + 300*100 + 50*5000, 20e6 + 10*1000 + 300*100 + 200*5000,
				20e6 + 100*1000 + 300*100 + 50*5000, 20e6 + 100*1000 + 3000*100 + 50*5000},
			intercept: 20e6, slopes: map[string]float64{"node": 1000, "pod": 100, "webhook": 5000},
		},
		{
			name: "a constant column has no slope",
			xs:   [][]float64{{1, 7, 50}, {2, 7, 50}, {3, 7, 50}},
			y:    []float64{3, 5, 7}, intercept: 1, slopes: map[string]float64{"node": 2},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b0, slopes, r2, err := FitLinear([]string{"node", "pod", "webhook"}, tc.xs, tc.y)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(b0-tc.intercept) > 1e-6*math.Max(1, math.Abs(tc.intercept)) || len(slopes) != len(tc.slopes) || r2 < 0.999999 {
				t.Fatalf("intercept %g slopes %v r2 %g; want %g %v 1", b0, slopes, r2, tc.intercept, tc.slopes)
			}
			for k, v := range tc.slopes {
				if math.Abs(slopes[k]-v) > 1e-6*math.Abs(v) {
					t.Errorf("slope %s = %g, want %g", k, slopes[k], v)
				}
			}
		})
	}
	if _, _, _, err := FitLinear([]string{"node", "pod"}, [][]float64{{1, 10}, {2, 20}, {3, 30}}, []float64{1, 2, 3}); err == nil {
		t.Error("collinear nodes and pods fitted; want an error")
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{0.5, 0.1, 0.3, 0.2, 0.4, 0.9, 0.8, 0.7, 0.6, 1.0}
	for _, tc := range []struct{ p, want float64 }{{50, 0.5}, {95, 1.0}, {90, 0.9}, {0, 0.1}, {100, 1.0}} {
		if got := Percentile(xs, tc.p); got != tc.want {
			t.Errorf("p%.0f = %g, want %g", tc.p, got, tc.want)
		}
	}
	if !math.IsNaN(Percentile(nil, 95)) {
		t.Error("p95 of nothing is a number")
	}
}

func TestMetricSum(t *testing.T) {
	text := `# HELP apiserver_longrunning_requests x
apiserver_longrunning_requests{component="apiserver",group="",resource="pods",scope="cluster",subresource="",verb="WATCH"} 3
apiserver_longrunning_requests{component="apiserver",group="",resource="pods",scope="namespace",subresource="log",verb="CONNECT"} 1
apiserver_longrunning_requests{component="apiserver",group="discovery.k8s.io",resource="endpointslices",scope="cluster",subresource="",verb="WATCH"} 4
apiserver_longrunning_requests_other{verb="WATCH"} 100
hookscope_bpf_events_dropped_total 7
hookscope_webhook_calls_total{configuration="a",outcome="ok",webhook="vpod.a"} 5
hookscope_webhook_calls_total{configuration="b",outcome="ok",webhook="vpod.b"} 6
`
	for _, tc := range []struct {
		name  string
		match []string
		want  float64
	}{
		{"apiserver_longrunning_requests", []string{`verb="WATCH"`}, 7},
		{"hookscope_bpf_events_dropped_total", nil, 7},
		{"hookscope_webhook_calls_total", []string{`webhook="vpod.a"`}, 5},
		{"hookscope_webhook_calls_total", nil, 11},
	} {
		if got := MetricSum(text, tc.name, tc.match...); got != tc.want {
			t.Errorf("%s %v = %g, want %g", tc.name, tc.match, got, tc.want)
		}
	}
}

func TestParseHeapAlloc(t *testing.T) {
	profile := "heap profile: 1: 2 [3: 4] @ heap/1048576\n# runtime.MemStats\n# Alloc = 999\n# TotalAlloc = 5000\n# HeapAlloc = 7340032\n# HeapSys = 1\n"
	if n, err := ParseHeapAlloc([]byte(profile)); err != nil || n != 7<<20 {
		t.Errorf("HeapAlloc = %d, %v; want %d", n, err, 7<<20)
	}
	if _, err := ParseHeapAlloc([]byte("heap profile: 1: 2\n")); err == nil {
		t.Error("a profile without MemStats parsed")
	}
}

func TestProcReaders(t *testing.T) {
	st, err := parseProcStatus([]byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"))
	if err != nil || st.RSS != 1<<20 || st.PeakRSS != 2<<20 {
		t.Fatalf("got %+v, %v", st, err)
	}
	if _, err := parseProcStatus([]byte("VmRSS: 12 MB\n")); err == nil {
		t.Error("a VmRSS not in kB parsed")
	}
	ticks, err := statCPUTicks([]byte("42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14"))
	if err != nil || ticks != 11+12 {
		t.Fatalf("utime+stime = %d, %v; want 23", ticks, err)
	}
	// Against the kernel's own account (getrusage), not the wall clock: on
	// a loaded machine 50 ms of spinning may get a few ms of CPU.
	rusage := func() time.Duration {
		var r unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_SELF, &r); err != nil {
			t.Fatal(err)
		}
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	r0 := rusage()
	before, err := ReadCPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(50 * time.Millisecond); time.Now().Before(deadline); {
	}
	after, err := ReadCPUTime(os.Getpid())
	used := rusage() - r0
	if got := after - before; err != nil || got <= 0 || got > used+15*time.Millisecond || got < used-15*time.Millisecond {
		t.Fatalf("spinning used %s of CPU by /proc, %s by getrusage (%v)", got, used, err)
	}
	if mem, err := ReadProcStatus(os.Getpid()); err != nil || mem.RSS <= 0 || mem.PeakRSS < mem.RSS {
		t.Fatalf("own memory %+v, %v", mem, err)
	}
}

// TestUpdateMerges checks that the tests of `make bench` add their sections
// to one report, in either order.
func TestUpdateMerges(t *testing.T) {
	dir := t.TempDir()
	if err := Update(dir, func(r *Report) {
		r.Scale = []ScaleSize{{Nodes: 10, Pods: 300, Webhooks: 50, Role: "follower", AgentRSSBytes: 30 << 20}}
	}); err != nil {
		t.Fatal(err)
	}
	if err := Update(dir, func(r *Report) { r.ThroughputRatio = 0.99 }); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	scale, _ := got["scale"].([]any)
	if got["throughput_ratio"] != 0.99 || len(scale) != 1 {
		t.Fatalf("merged report lost a section: %s", b)
	}
	row := scale[0].(map[string]any)
	for _, k := range []string{"nodes", "pods", "webhooks", "agent_rss_bytes", "agent_cpu_cores", "startup_seconds"} {
		if _, ok := row[k]; !ok {
			t.Errorf("scale row lacks %q: %v", k, row)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil || !strings.Contains(string(md), "## Cluster scale") {
		t.Fatalf("report.md lacks the scale section (%v):\n%s", err, md)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Update(dir, func(*Report) {}); err == nil {
		t.Error("a broken report.json was replaced; want an error")
	}
}

func TestSVGChart(t *testing.T) {
	svg := SVGChart("t <x>", "x", "y", []Series{{Name: "a", Points: [][2]float64{{2, 3}, {1, 1}}}}, 64, "goal")
	for _, want := range []string{"<svg", "</svg>", "t &lt;x&gt;", "polyline", "goal"} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %q", want)
		}
	}
	// Ticks of a large axis read as numbers, and a long axis label stays
	// on the canvas.
	long := strings.Repeat("cluster objects ", 6)
	svg = SVGChart("t", long, "y", []Series{{Name: "a", Points: [][2]float64{{36000, 50}}}}, 48, "goal 48 MiB")
	if !strings.Contains(svg, ">25,000<") || strings.Contains(svg, "e+") {
		t.Errorf("x ticks of 0-50,000 not written as whole numbers:\n%s", svg)
	}
	m := regexp.MustCompile(`<text x="([0-9.]+)" y="[0-9.]+" text-anchor="middle">` + long + `<`).FindStringSubmatch(svg)
	if m == nil {
		t.Fatalf("no x label in:\n%s", svg)
	}
	if x, _ := strconv.ParseFloat(m[1], 64); x-textWidth(long)/2 < 0 {
		t.Errorf("the x label, centred at %s, starts left of the canvas", m[1])
	}
}

func TestAxisNumbers(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 2.5: "2.5", 3.75: "3.75", 125: "125", 1250: "1,250", 12500: "12,500", 1e6: "1,000,000", -5000: "-5,000", 0.0125: "0.0125"} {
		if got := num(v); got != want {
			t.Errorf("num(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestMetricByLabel(t *testing.T) {
	text := `# HELP hookscope_inventory_objects x
hookscope_inventory_objects{kind="endpointslice",otel_scope_name="hookscope"} 50
hookscope_inventory_objects{otel_scope_name="hookscope",kind="service"} 48
hookscope_inventory_objects{kind="service",otel_scope_name="other"} 2
hookscope_inventory_objects_total{kind="service"} 100
hookscope_inventory_objects 7
hookscope_inventory_watches 4
`
	got := MetricByLabel(text, "hookscope_inventory_objects", "kind")
	want := map[string]float64{"endpointslice": 50, "service": 50}
	if len(got) != len(want) || got["endpointslice"] != 50 || got["service"] != 50 {
		t.Errorf("by kind %v, want %v", got, want)
	}
}

// TestScalePlans checks that each plan ends with the call-out step: the
// step before it plus the call-outs, and nothing else changed.
func TestScalePlans(t *testing.T) {
	for _, name := range []string{"small", "full"} {
		p, err := ScalePlanFor(name)
		if err != nil {
			t.Fatal(err)
		}
		n := len(p.Steps)
		last, before := p.Steps[n-1], p.Steps[n-2]
		want := before
		want.CRDs, want.Conversions, want.APIServices = 200, 20, 30
		if last != want || before.HasCallOuts() {
			t.Errorf("%s: last steps %+v then %+v; want the second to add 200 CRDs, 20 conversions, 30 APIServices", name, before, last)
		}
		for _, s := range p.Steps[:n-1] {
			if s.HasCallOuts() {
				t.Errorf("%s: step %+v before the last has call-outs", name, s)
			}
		}
		if p.LoadStep() != n-2 {
			t.Errorf("%s: load step %d, want %d (the largest without call-outs)", name, p.LoadStep(), n-2)
		}
		if p.StartupRuns < 3 || p.StartupRuns%2 == 0 {
			t.Errorf("%s: %d starts per agent; want an odd number of at least 3, for a median that is one of them", name, p.StartupRuns)
		}
	}
}

// callOutRows are a leader's and a follower's rows at two sizes, then at
// the last size again with the call-outs: their RSS far off the line.
func callOutRows() []ScaleSize {
	var rows []ScaleSize
	for _, role := range []string{"leader", "follower"} {
		for _, z := range []ScaleSize{{Nodes: 10, Pods: 300, Webhooks: 50}, {Nodes: 10, Pods: 300, Webhooks: 200},
			{Nodes: 100, Pods: 300, Webhooks: 50}, {Nodes: 100, Pods: 3000, Webhooks: 50},
			{Nodes: 100, Pods: 3000, Webhooks: 50, CRDs: 200, ConversionWebhooks: 20, APIServices: 30}} {
			z.Role = role
			z.AgentRSSAnonBytes = 10<<20 + int64(z.Nodes)*1000 + int64(z.Pods)*100 + int64(z.Webhooks)*5000
			z.AgentRSSBytes = z.AgentRSSAnonBytes + 40<<20
			z.StartupSeconds, z.Watches, z.ObjectsCached = 0.5, 8, 3*z.Webhooks
			z.AgentLiveHeapBytes = 6 << 20
			z.InventoryObjects = map[string]int{"service": z.Webhooks}
			z.ListedObjects = map[string]int{kindAPIService: 20, kindCRD: 0}
			if z.HasCallOuts() {
				z.AgentRSSAnonBytes += 3 << 20
				z.AgentRSSBytes += 3 << 20
				z.AgentLiveHeapBytes += 1 << 19
				z.StartupSeconds, z.Watches, z.ObjectsCached = 0.9, 10, z.ObjectsCached+250
				z.CallOuts = map[string]int{"APIService": 30, "Conversion": 20}
				z.ListedObjects = map[string]int{kindAPIService: 270, kindCRD: 200}
			}
			rows = append(rows, z)
		}
	}
	return rows
}

func TestFitsLeaveOutTheCallOutStep(t *testing.T) {
	for _, f := range fits(t, callOutRows(), nil) {
		if f.Cost != "agent_rss_anon_bytes" || f.Slopes["pod"] == 0 {
			continue
		}
		if f.Points != 4 || math.Abs(f.Slopes["pod"]-100) > 1e-6 || math.Abs(f.Intercept-10<<20) > 1 {
			t.Errorf("%s fit over %d points: intercept %g, pod slope %g; want 4 points, %d and 100", f.Role, f.Points, f.Intercept, f.Slopes["pod"], 10<<20)
		}
	}
}

func TestCallOutNotes(t *testing.T) {
	rows := callOutRows()
	notes := callOutNotes(rows, fits(t, rows, nil))
	if len(notes) != 2 {
		t.Fatalf("%d notes, want one per role: %q", len(notes), notes)
	}
	for i, role := range []string{"leader", "follower"} {
		n := notes[i]
		for _, want := range []string{"call-outs, " + role, "200 CRDs (20 with a conversion webhook)/30 APIServices", "RSS 53.", "met",
			"startup 0.90 s", "live heap +0.50 MiB", "RSS +3.0 MiB", "+250 objects would be", "anonymous +3.0 MiB", "startup +0.40 s", "watches +2", "objects cached +250",
			"service 50", "not counted by the agent, so taken from listing the cluster: apiservice 270, customresourcedefinition 200",
			"30 APIService and 20 Conversion"} {
			if !strings.Contains(n, want) {
				t.Errorf("%s note lacks %q: %s", role, want, n)
			}
		}
	}
}

func TestScaleMarkdownShowsCallOuts(t *testing.T) {
	r := &Report{Scale: callOutRows(), ScaleRun: &ScaleRun{Scale: "small", Growth: []ScaleGrowth{
		{Nodes: 100, Pods: 3000, Webhooks: 50}, {Nodes: 100, Pods: 3000, Webhooks: 50, CRDs: 200, ConversionWebhooks: 20, APIServices: 30}}}}
	md := r.Markdown()
	if n := strings.Count(md, "| 200 / 20 / 30 |"); n != 3 {
		t.Errorf("the call-outs column shows 200 / 20 / 30 %d times, want 3 (two agents, one growth step):\n%s", n, md)
	}
	if !strings.Contains(md, "| 100 | 3000 | 0 | 50 | - | leader |") {
		t.Errorf("a row without call-outs lacks its dash:\n%s", md)
	}
}
