package inventory

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube"
)

// Problem says what the API server will hit when it calls w, from its
// objects alone, in the API server's words where it has them; Healthy
// when they look callable, and "" when they are not known yet
// (Webhook.Unresolved). A webhook that calls a URL has no objects to
// judge.
func Problem(w callout.Webhook) (findings.Class, string) {
	class, detail := problem(w)
	if a := w.Available; w.IsAPIService() && a != nil && a.Status == "False" && class != "" {
		// The API server's own availability check, in its words.
		said := fmt.Sprintf("the API server marks APIService %s Available=False (%s): %s", w.Ref.Name, a.Reason, a.Message)
		if detail == "" {
			return class, said
		}
		return class, detail + "; " + said
	}
	return class, detail
}

func problem(w callout.Webhook) (findings.Class, string) {
	if w.Invalid != "" {
		return findings.InvalidConfiguration, w.Invalid
	}
	if w.Unresolved != "" {
		return "", w.Unresolved
	}
	if w.Service == nil {
		return findings.Healthy, ""
	}
	if !w.ServiceFound {
		return findings.ServiceNotFound, fmt.Sprintf("service %q not found", w.Service.Name)
	}
	if !slices.Contains(w.ServicePorts, w.Service.Port) {
		return findings.PortMismatch, fmt.Sprintf("service %q has no port %d", w.Service.Name, w.Service.Port)
	}
	ready := 0
	for _, b := range w.Backends {
		if b.Ready {
			ready++
		}
	}
	switch {
	case ready > 0:
		return findings.Healthy, ""
	case len(w.Backends) > 0:
		return findings.BackendPodsNotReady, fmt.Sprintf("%d endpoints of service %q, none ready", len(w.Backends), w.Service.Name)
	default:
		return findings.NoEndpoints, fmt.Sprintf("no endpoints available for service %q", w.Service.Name)
	}
}

// PodLister lists the pods a selector matches in a namespace.
type PodLister interface {
	ListPods(ctx context.Context, namespace string, selector map[string]string) ([]PodState, error)
}

// PodState is what the Pending check needs of a pod.
type PodState struct {
	Name  string
	Phase string
	Node  string
	// Reason is why it is Pending, from its PodScheduled condition.
	Reason string
}

// Diagnose is Problem, and for a webhook with no endpoints, whether its
// Service's pods exist but are Pending (the "0/1 Pending" controller pods):
// BackendPodsPending with the scheduler's reason.
func Diagnose(ctx context.Context, w callout.Webhook, pods PodLister) (findings.Class, string, error) {
	class, detail := Problem(w)
	if class != findings.NoEndpoints || pods == nil || len(w.ServiceSelector) == 0 {
		return class, detail, nil
	}
	list, err := pods.ListPods(ctx, w.Service.Namespace, w.ServiceSelector)
	if err != nil {
		return class, detail, err
	}
	var pending []string
	for _, p := range list {
		if p.Phase == string(corev1.PodPending) {
			s := p.Name
			if p.Reason != "" {
				s += " (" + p.Reason + ")"
			}
			pending = append(pending, s)
		}
	}
	if len(pending) == 0 {
		return class, detail, nil
	}
	return findings.BackendPodsPending, fmt.Sprintf("%s: %d/%d pods of service %q Pending: %s", detail, len(pending), len(list), w.Service.Name, strings.Join(pending, ", ")), nil
}

// APIPodLister lists pods with the API: the Pending check runs only for a
// webhook that has no endpoints, so a list on demand costs less than a
// cluster-wide pod informer on every node.
type APIPodLister struct {
	Client kube.API
}

// ListPods implements PodLister. It reads at most 100 pods.
func (l APIPodLister) ListPods(ctx context.Context, namespace string, selector map[string]string) ([]PodState, error) {
	sel := labels.SelectorFromSet(selector)
	var list corev1.PodList
	if err := l.Client.List(ctx, podsGVR, namespace, metav1.ListOptions{LabelSelector: sel.String(), Limit: 100}, &list); err != nil {
		return nil, fmt.Errorf("listing pods %s in %s: %w", sel, namespace, err)
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
