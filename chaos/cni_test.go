//go:build linux

package chaos

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
)

// TestKwokStages checks the Stage configuration every Local cluster gets:
// it parses, it still has kwok's default Stages (kwokctl drops them all once
// it is given any), and kwok's node Stages leave the aws-node nodes to
// node-cni.yaml.
func TestKwokStages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stages.yaml")
	if err := writeKwokStages(path); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	stages := map[string]*unstructured.Unstructured{}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding %s: %v", path, err)
		}
		if obj.Object == nil {
			continue
		}
		if obj.GetAPIVersion() != "kwok.x-k8s.io/v1alpha1" || obj.GetKind() != "Stage" {
			t.Errorf("%s: got %s %s, want only kwok.x-k8s.io/v1alpha1 Stage", path, obj.GetAPIVersion(), obj.GetKind())
		}
		if _, dup := stages[obj.GetName()]; dup {
			t.Errorf("Stage %s defined twice", obj.GetName())
		}
		stages[obj.GetName()] = &obj
	}

	cniKey := `.metadata.labels["` + CNILabel + `"]`
	readyKey := `.metadata.labels["` + CNIReadyLabel + `"]`
	tests := []struct {
		stage string
		want  map[string]string // selector key -> "Operator value"
	}{
		{"node-initialize", map[string]string{cniKey: "NotIn " + CNIName}},
		{"node-heartbeat-with-lease", map[string]string{cniKey: "NotIn " + CNIName}},
		{"node-cni-network-not-ready", map[string]string{cniKey: "In " + CNIName, readyKey: "NotIn true"}},
		{"node-cni-network-not-ready-heartbeat", map[string]string{cniKey: "In " + CNIName, readyKey: "NotIn true"}},
		{"node-cni-network-ready", map[string]string{cniKey: "In " + CNIName, readyKey: "In true"}},
		{"node-cni-network-ready-heartbeat", map[string]string{cniKey: "In " + CNIName, readyKey: "In true"}},
		{"pod-ready", nil},
		{"pod-complete", nil},
		{"pod-delete", nil},
	}
	for _, tt := range tests {
		t.Run(tt.stage, func(t *testing.T) {
			s, ok := stages[tt.stage]
			if !ok {
				t.Fatalf("no Stage %s", tt.stage)
			}
			exprs, _, _ := unstructured.NestedSlice(s.Object, "spec", "selector", "matchExpressions")
			got := map[string]string{}
			for _, e := range exprs {
				m, _ := e.(map[string]any)
				key, _ := m["key"].(string)
				op, _ := m["operator"].(string)
				vals, _ := m["values"].([]any)
				var vs []string
				for _, v := range vals {
					s, _ := v.(string)
					vs = append(vs, s)
				}
				got[key] = strings.TrimSpace(op + " " + strings.Join(vs, ","))
			}
			for key, want := range tt.want {
				if got[key] != want {
					t.Errorf("selector %s: got %q, want %q", key, got[key], want)
				}
			}
		})
	}
	if len(stages) != len(tests) {
		var names []string
		for n := range stages {
			names = append(names, n)
		}
		slices.Sort(names)
		t.Errorf("got Stages %v, want the %d above", names, len(tests))
	}
}

// TestCNIBlockedByWebhook is the article's worst failure on a real control plane: a pod
// webhook that fails closed for kube-system stops the aws-node DaemonSet from
// creating its pod on a new node, so the node never becomes Ready; deleting
// the webhook configuration lets the DaemonSet controller's retry through.
func TestCNIBlockedByWebhook(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: Create installs an `ip route` guard")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	workDir := t.TempDir()
	local := NewLocal("hookscope-cni", workDir)
	lab := &Lab{Provider: local, Dir: workDir}
	t.Cleanup(func() {
		if t.Failed() {
			dir, err := os.MkdirTemp("", "hookscope-cni-logs-")
			if err == nil {
				err = local.CollectLogs(dir)
			}
			t.Logf("cluster logs in %s (err: %v)", dir, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Stops the stand-in CNI, then deletes the cluster.
		if err := lab.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})

	start := time.Now()
	if err := local.Create(ctx); err != nil {
		t.Fatalf("Create: %v", err)
	}
	client, err := local.Client()
	if err != nil {
		t.Fatal(err)
	}
	lab.Client = client
	t.Logf("cluster ready in %v", time.Since(start).Round(time.Millisecond))
	if err := lab.DeployCNI(ctx); err != nil {
		t.Fatalf("DeployCNI: %v", err)
	}

	// 1. Without a webhook: NotReady, then Ready once aws-node runs.
	const node1 = "node-cni-1"
	tl := watchJoin(ctx, t, client, node1)
	joined := time.Now()
	if err := lab.JoinNode(ctx, node1); err != nil {
		t.Fatalf("JoinNode: %v", err)
	}
	notReadyAt, err := lab.WaitNodeReady(ctx, node1, false, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	readyAt, err := lab.WaitNodeReady(ctx, node1, true, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	runningAt := tl.podRunningAt(ctx, 5*time.Second)
	if runningAt.IsZero() {
		t.Fatalf("%s Ready but no Running aws-node pod on it was seen", node1)
	}
	first, ok := tl.firstWithConditions()
	if !ok {
		t.Fatalf("no update of %s with conditions seen", node1)
	}
	if first.ready != corev1.ConditionFalse || first.readyReason != "KubeletNotReady" ||
		!strings.Contains(first.readyMessage, "cni plugin not initialized") || first.networkUnavailable != corev1.ConditionTrue {
		t.Errorf("%s first reported %+v, want Ready=False (KubeletNotReady, cni plugin not initialized) and NetworkUnavailable=True", node1, first)
	}
	if r, ok := tl.firstReady(ctx, 5*time.Second); !ok || r.at.Before(runningAt) {
		t.Errorf("%s Ready at %v, before its aws-node pod was seen Running at %v", node1, r.at, runningAt)
	}
	n, err := client.CoreV1().Nodes().Get(ctx, node1, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := NodeCondition(n, corev1.NodeNetworkUnavailable); c == nil || c.Status != corev1.ConditionFalse {
		t.Errorf("%s Ready with NetworkUnavailable %+v, want False", node1, c)
	}
	if n.Labels[CNIReadyLabel] != "true" {
		t.Errorf("%s Ready without %s=true (labels %v)", node1, CNIReadyLabel, n.Labels)
	}
	t.Logf("%s: NotReady (NetworkUnavailable=True) seen %v after join; aws-node Running %v after that; Ready %v after aws-node Running (NotReady->Ready %v)",
		node1, notReadyAt.Sub(joined).Round(time.Millisecond), runningAt.Sub(notReadyAt).Round(time.Millisecond),
		readyAt.Sub(runningAt).Round(time.Millisecond), readyAt.Sub(notReadyAt).Round(time.Millisecond))

	// 2. The injection: a pod webhook failing closed for kube-system whose
	// Service does not exist.
	const (
		svcNamespace = "policy-system"
		svcName      = "pod-policy-webhook"
		hookName     = "mpod.policy.hookscope.dev"
	)
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-policy"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: hookName,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service: &admissionregistrationv1.ServiceReference{
					Namespace: svcNamespace,
					Name:      svcName,
					Path:      ptrTo("/mutate"),
				},
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{""},
					APIVersions: []string{"v1"},
					Resources:   []string{"pods"},
				},
			}},
			FailurePolicy:           ptrTo(admissionregistrationv1.Fail),
			SideEffects:             ptrTo(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{
				"kubernetes.io/metadata.name": CNINamespace,
			}},
		}},
	}
	if _, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating MutatingWebhookConfiguration: %v", err)
	}
	activeIn, err := waitWebhookActive(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("webhook active %v after its configuration was created", activeIn.Round(time.Millisecond))

	const node2 = "node-cni-2"
	joined = time.Now()
	if err := lab.JoinNode(ctx, node2); err != nil {
		t.Fatalf("JoinNode: %v", err)
	}
	if _, err := lab.WaitNodeReady(ctx, node2, false, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	wantMsg := []string{"failed calling webhook", `service "` + svcName + `" not found`}
	var event *corev1.Event
	err = wait.PollUntilContextTimeout(ctx, pollInterval, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		events, err := client.CoreV1().Events(CNINamespace).List(ctx, metav1.ListOptions{
			FieldSelector: fields.Set{
				"involvedObject.kind": "DaemonSet",
				"involvedObject.name": CNIName,
				"reason":              "FailedCreate",
				"type":                corev1.EventTypeWarning,
			}.String(),
		})
		if err != nil {
			return false, nil
		}
		for i := range events.Items {
			if containsAll(events.Items[i].Message, wantMsg) {
				event = &events.Items[i]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no Warning FailedCreate event on DaemonSet %s/%s containing %q: %v", CNINamespace, CNIName, wantMsg, err)
	}
	eventIn := time.Since(joined)
	t.Logf("FailedCreate event %v after %s joined (count %d): %s", eventIn.Round(time.Millisecond), node2, event.Count, event.Message)

	if at, err := lab.WaitNodeReady(ctx, node2, true, 5*time.Second); err == nil {
		t.Fatalf("%s Ready at %v despite the webhook", node2, at)
	} else if ctx.Err() != nil {
		t.Fatal(ctx.Err())
	}
	n, err = client.CoreV1().Nodes().Get(ctx, node2, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ready, netUnavailable := NodeCondition(n, corev1.NodeReady), NodeCondition(n, corev1.NodeNetworkUnavailable)
	if ready == nil || ready.Status != corev1.ConditionFalse || netUnavailable == nil || netUnavailable.Status != corev1.ConditionTrue {
		t.Errorf("%s after %v: Ready %+v, NetworkUnavailable %+v; want False and True", node2, time.Since(joined).Round(time.Millisecond), ready, netUnavailable)
	}
	if pods := cniPodsOn(ctx, t, client, node2); len(pods) != 0 {
		t.Errorf("aws-node pods on %s despite the webhook: %v", node2, pods)
	}
	t.Logf("%s still NotReady %v after joining: %s: %s", node2, time.Since(joined).Round(time.Millisecond), ready.Reason, ready.Message)

	// 3. The remediation: delete the webhook configuration; the DaemonSet
	// controller's retry (with backoff) creates the pod.
	if err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, mwc.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting MutatingWebhookConfiguration: %v", err)
	}
	removed := time.Now()
	readyAt, err = lab.WaitNodeReady(ctx, node2, true, 60*time.Second)
	if err != nil {
		t.Fatalf("after removing the webhook: %v", err)
	}
	t.Logf("%s Ready %v after the webhook configuration was deleted (%v after joining)",
		node2, readyAt.Sub(removed).Round(time.Millisecond), readyAt.Sub(joined).Round(time.Millisecond))
	if pods := cniPodsOn(ctx, t, client, node2); len(pods) != 1 {
		t.Errorf("aws-node pods on %s after recovery: %v, want one", node2, pods)
	}
}

// waitWebhookActive waits until the API server calls the webhook for a pod
// create in kube-system (the API server learns of new configurations through
// an informer). It asks with dry-run creates, which a webhook with
// sideEffects None is called for, so nothing is created.
func waitWebhookActive(ctx context.Context, client kubernetes.Interface) (time.Duration, error) {
	start := time.Now()
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "webhook-probe-", Namespace: CNINamespace},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: CNIImage}}},
	}
	var last error
	err := wait.PollUntilContextTimeout(ctx, pollInterval, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, last = client.CoreV1().Pods(CNINamespace).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return last != nil && strings.Contains(last.Error(), "failed calling webhook"), nil
	})
	if err != nil {
		return 0, errors.Join(errors.New("waiting for the API server to call the webhook"), err, last)
	}
	return time.Since(start), nil
}

// cniPodsOn returns the names of the aws-node pods bound to node.
func cniPodsOn(ctx context.Context, t *testing.T, client kubernetes.Interface, node string) []string {
	t.Helper()
	pods, err := client.CoreV1().Pods(CNINamespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{cniAppLabel: CNIName}.String(),
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
	})
	if err != nil {
		t.Fatalf("listing aws-node pods on %s: %v", node, err)
	}
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name+"="+string(p.Status.Phase))
	}
	return names
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// nodeState is one update of a node as a watch delivered it.
type nodeState struct {
	at                 time.Time
	ready              corev1.ConditionStatus
	readyReason        string
	readyMessage       string
	networkUnavailable corev1.ConditionStatus
}

// joinTimeline records, from watches opened before the node exists, each
// update of one node and when an aws-node pod on it was first Running.
type joinTimeline struct {
	mu      sync.Mutex
	states  []nodeState
	running time.Time
}

// watchJoin opens the watches for node (it need not exist yet); they end
// with ctx.
func watchJoin(ctx context.Context, t *testing.T, client kubernetes.Interface, node string) *joinTimeline {
	t.Helper()
	tl := &joinTimeline{}
	nodes, err := client.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", node).String(),
	})
	if err != nil {
		t.Fatalf("watching node %s: %v", node, err)
	}
	pods, err := client.CoreV1().Pods(CNINamespace).Watch(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{cniAppLabel: CNIName}.String(),
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
	})
	if err != nil {
		nodes.Stop()
		t.Fatalf("watching aws-node pods on %s: %v", node, err)
	}
	t.Cleanup(func() { nodes.Stop(); pods.Stop() })
	go func() {
		for ev := range nodes.ResultChan() {
			n, ok := ev.Object.(*corev1.Node)
			if !ok {
				continue
			}
			s := nodeState{at: time.Now()}
			if c := NodeCondition(n, corev1.NodeReady); c != nil {
				s.ready, s.readyReason, s.readyMessage = c.Status, c.Reason, c.Message
			}
			if c := NodeCondition(n, corev1.NodeNetworkUnavailable); c != nil {
				s.networkUnavailable = c.Status
			}
			tl.mu.Lock()
			tl.states = append(tl.states, s)
			tl.mu.Unlock()
		}
	}()
	go func() {
		for ev := range pods.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || p.Status.Phase != corev1.PodRunning {
				continue
			}
			tl.mu.Lock()
			if tl.running.IsZero() {
				tl.running = time.Now()
			}
			tl.mu.Unlock()
		}
	}()
	return tl
}

// podRunningAt returns when an aws-node pod on the node was first seen
// Running, waiting up to timeout for the watch to deliver it; zero if never.
func (tl *joinTimeline) podRunningAt(ctx context.Context, timeout time.Duration) time.Time {
	var at time.Time
	_ = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		at = tl.running
		return !at.IsZero(), nil
	})
	return at
}

// firstWithConditions returns the first update that had a Ready condition.
func (tl *joinTimeline) firstWithConditions() (nodeState, bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, s := range tl.states {
		if s.ready != "" {
			return s, true
		}
	}
	return nodeState{}, false
}

// firstReady returns the first update with Ready=True, waiting up to
// timeout for the watch to deliver it.
func (tl *joinTimeline) firstReady(ctx context.Context, timeout time.Duration) (nodeState, bool) {
	var first nodeState
	var found bool
	_ = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		for _, s := range tl.states {
			if s.ready == corev1.ConditionTrue {
				first, found = s, true
				break
			}
		}
		return found, nil
	})
	return first, found
}
