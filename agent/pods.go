package agent

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// APIPodLister lists pods with the API: the Pending check runs only for a
// webhook that has no endpoints, so a list on demand costs less than a
// cluster-wide pod informer on every node.
type APIPodLister struct {
	Client kubernetes.Interface
}

// ListPods implements PodLister. It reads at most 100 pods.
func (l APIPodLister) ListPods(ctx context.Context, namespace string, selector map[string]string) ([]PodState, error) {
	list, err := l.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(selector).String(),
		Limit:         100,
	})
	if err != nil {
		return nil, fmt.Errorf("listing pods %s in %s: %w", labels.SelectorFromSet(selector), namespace, err)
	}
	out := make([]PodState, 0, len(list.Items))
	for _, p := range list.Items {
		st := PodState{Name: p.Name, Phase: string(p.Status.Phase), Node: p.Spec.NodeName}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue {
				st.Reason = c.Reason
				if c.Message != "" {
					st.Reason += ": " + c.Message
				}
			}
		}
		out = append(out, st)
	}
	return out, nil
}
