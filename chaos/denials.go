//go:build linux

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hookscope/hookscope/chaos/backend"
)

// A policy webhook (Kyverno, Gatekeeper) that works, and denies: the
// webhook's server answers allowed=false, with the policy's message, for
// the objects a backend.Denial matches. A denial of aws-node's pod on a
// joining node has the same outcome as a webhook that cannot be called:
// the node stays NotReady.

// Deny makes the webhook's server deny what d matches, as a policy does;
// nil admits everything again.
func (w *Webhook) Deny(d *backend.Denial) error {
	dn, ok := w.Server.(backend.Denier)
	if !ok {
		return fmt.Errorf("webhook %s: its server (%T) cannot deny", w.Spec.Name, w.Server)
	}
	if err := dn.SetDenial(d); err != nil {
		return fmt.Errorf("webhook %s: setting its denial: %w", w.Spec.Name, err)
	}
	return nil
}

// NodeToJoin names a node that has not joined yet, for JoinNode, leaving
// the lab's JoiningNode to the blocked-CNI game day: locally a new name
// (JoiningNode-2, -3, ...); on kind, whose workers are fixed, the joining
// worker, which leaves the CNI again if it joined: its label goes, its
// aws-node pod goes, its CNI configuration is removed, and it is NotReady
// once more, as a node that never had its aws-node pod.
func (l *Lab) NodeToJoin(ctx context.Context) (string, error) {
	if _, ok := l.Provider.(*Kind); ok {
		return l.JoiningNode, l.leaveCNI(ctx, l.JoiningNode)
	}
	for i := 2; i < 100; i++ {
		name := fmt.Sprintf("%s-%d", l.JoiningNode, i)
		_, err := l.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return name, nil
		case err != nil:
			return "", fmt.Errorf("choosing a node to join: %w", err)
		}
	}
	return "", fmt.Errorf("choosing a node to join: %s-2 to -99 all exist", l.JoiningNode)
}

// leaveCNI undoes JoinNode on a kind worker that has its aws-node pod.
func (l *Lab) leaveCNI(ctx context.Context, node string) error {
	n, err := l.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("node %s leaving the CNI: %w", node, err)
	}
	if _, joined := n.Labels[CNILabel]; !joined {
		return nil
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{CNILabel: nil}}})
	if _, err := l.Client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("node %s leaving the CNI: removing %s: %w", node, CNILabel, err)
	}
	sel := labels.SelectorFromSet(labels.Set{cniAppLabel: CNIName}).String()
	err = wait.PollUntilContextTimeout(ctx, pollInterval, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := l.Client.CoreV1().Pods(CNINamespace).List(ctx, metav1.ListOptions{LabelSelector: sel, FieldSelector: "spec.nodeName=" + node})
		return err == nil && len(pods.Items) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("node %s leaving the CNI: its %s pod is still there: %w", node, CNIName, err)
	}
	rm := exec.CommandContext(ctx, "docker", "exec", node, "rm", "-f", "/etc/cni/net.d/10-aws-node.conflist")
	if out, err := rm.CombinedOutput(); err != nil {
		return fmt.Errorf("node %s leaving the CNI: removing its CNI configuration: %w: %s", node, err, strings.TrimSpace(string(out)))
	}
	if _, err := l.WaitNodeReady(ctx, node, false, 2*time.Minute); err != nil {
		return fmt.Errorf("node %s leaving the CNI: %w", node, err)
	}
	return nil
}

// FailedCreateEvent waits up to timeout for a FailedCreate Event on the
// object kind namespace/name whose message holds every one of want, and
// returns its message.
func (l *Lab) FailedCreateEvent(ctx context.Context, kind, namespace, name string, timeout time.Duration, want ...string) (string, error) {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		evs, err := l.Client.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name + ",reason=FailedCreate"})
		if err != nil {
			return false, nil
		}
		for _, e := range evs.Items {
			last = e.Message
			if containsEvery(e.Message, want) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("no FailedCreate Event on %s %s/%s saying %q (last: %q): %w", kind, namespace, name, want, last, err)
	}
	return last, nil
}

func containsEvery(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
