//go:build linux

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// nodeJoiner is a Provider that can add a labelled node without waiting for
// it to become Ready (Local does).
type nodeJoiner interface {
	AddNodeWithLabels(ctx context.Context, name string, labels map[string]string, waitReady bool) error
}

// DeployCNI creates the DaemonSet kube-system/aws-node for the nodes labelled
// CNILabel=CNIName and starts a stand-in for its pods' work: while a pod of
// the DaemonSet is Running on such a node, the node carries
// CNIReadyLabel=true; when none is, the label is removed. The stand-in polls
// the API server every 200 ms and sends nothing anywhere else; it runs until
// Lab.Stop or until ctx is done, so ctx should live as long as the lab.
func (l *Lab) DeployCNI(ctx context.Context) error {
	if _, ok := l.Provider.(*Kind); ok {
		return nil // the real aws-node came with the cluster (Kind.Create)
	}
	if l.stopCNI != nil {
		return nil // once per lab: the game days that need it share it
	}
	if _, err := l.Client.AppsV1().DaemonSets(CNINamespace).Create(ctx, cniDaemonSet(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("deploying CNI: creating DaemonSet %s/%s: %w", CNINamespace, CNIName, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runCNI(ctx, l.Client)
	}()
	l.stopCNI = func() {
		cancel()
		<-done
	}
	return nil
}

// runCNI reconciles CNIReadyLabel on the modelled nodes every pollInterval
// until ctx is done. An error is printed once until a different one (or
// success) follows, so a stopped cluster does not flood stderr.
func runCNI(ctx context.Context, client kubernetes.Interface) {
	var lastErr string
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		err := reconcileCNI(ctx, client)
		if err != nil && ctx.Err() == nil && err.Error() != lastErr {
			fmt.Fprintf(os.Stderr, "lab: cni: %v\n", err)
		}
		lastErr = ""
		if err != nil {
			lastErr = err.Error()
		}
	}, pollInterval)
}

// reconcileCNI labels each node with CNILabel=CNIName that has a Running pod
// of the CNI DaemonSet CNIReadyLabel=true and removes the label from the
// others.
func reconcileCNI(ctx context.Context, client kubernetes.Interface) error {
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{CNILabel: CNIName}).String(),
	})
	if err != nil {
		return fmt.Errorf("listing %s nodes: %w", CNIName, err)
	}
	pods, err := client.CoreV1().Pods(CNINamespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{cniAppLabel: CNIName}).String(),
	})
	if err != nil {
		return fmt.Errorf("listing %s pods: %w", CNIName, err)
	}
	running := map[string]bool{}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName != "" && ownedByCNI(&p) {
			running[p.Spec.NodeName] = true
		}
	}
	var errs []error
	for _, n := range nodes.Items {
		want := running[n.Name]
		if (n.Labels[CNIReadyLabel] == "true") == want {
			continue
		}
		// A JSON merge patch: null removes the label.
		var value any
		if want {
			value = "true"
		}
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"labels": map[string]any{CNIReadyLabel: value}},
		})
		if err != nil {
			return fmt.Errorf("labelling node %s: %w", n.Name, err)
		}
		if _, err := client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("setting %s=%v on node %s: %w", CNIReadyLabel, want, n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// ownedByCNI reports whether p was created by the CNI DaemonSet.
func ownedByCNI(p *corev1.Pod) bool {
	ref := metav1.GetControllerOf(p)
	return ref != nil && ref.Kind == "DaemonSet" && ref.Name == CNIName
}

// JoinNode adds a node as a new EKS node joins: labelled CNILabel=CNIName, so
// it stays NotReady until an aws-node pod runs on it. It returns once the
// node exists; WaitNodeReady waits for the rest.
func (l *Lab) JoinNode(ctx context.Context, name string) error {
	j, ok := l.Provider.(nodeJoiner)
	if !ok {
		return fmt.Errorf("joining node %s: provider %s cannot add a node that is not Ready yet", name, l.Provider.Name())
	}
	return j.AddNodeWithLabels(ctx, name, map[string]string{CNILabel: CNIName}, false)
}

// WaitNodeReady waits up to timeout until node name's Ready condition is True
// (ready) or is there and not True (!ready: False or Unknown; a node kwok has
// not given conditions yet is neither), and returns when that was observed.
// It watches the node, so the time is that of the first update showing it.
func (l *Lab) WaitNodeReady(ctx context.Context, name string, ready bool, timeout time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	byName := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = byName
			return l.Client.CoreV1().Nodes().List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = byName
			return l.Client.CoreV1().Nodes().Watch(ctx, o)
		},
	}
	var (
		at   time.Time
		last = "node not seen"
	)
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Node{}, nil, func(ev watch.Event) (bool, error) {
		n, ok := ev.Object.(*corev1.Node)
		if !ok {
			return false, nil
		}
		if ev.Type == watch.Deleted {
			return false, fmt.Errorf("node %s was deleted", name)
		}
		c := NodeCondition(n, corev1.NodeReady)
		if c == nil {
			last = "no Ready condition"
			return false, nil
		}
		last = fmt.Sprintf("Ready=%s (%s: %s)", c.Status, c.Reason, c.Message)
		if (c.Status == corev1.ConditionTrue) == ready {
			at = time.Now()
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		want := "Ready"
		if !ready {
			want = "NotReady"
		}
		return time.Time{}, fmt.Errorf("waiting %s for node %s to be %s: %w (last: %s)", timeout, name, want, err, last)
	}
	return at, nil
}

// NodeCondition returns node n's condition of type t, or nil.
func NodeCondition(n *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}
