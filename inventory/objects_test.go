package inventory

import (
	"context"
	"testing"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

func TestProblem(t *testing.T) {
	ref := &callout.ServiceRef{Namespace: "ns", Name: "hook", Port: 443}
	ready, notReady := callout.Backend{Ready: true}, callout.Backend{}
	found := func(port int32, bs ...callout.Backend) callout.Webhook {
		r := *ref
		r.Port = port
		return callout.Webhook{Service: &r, ServiceFound: true, ServicePorts: []int32{443}, Backends: bs}
	}
	cases := []struct {
		name   string
		w      callout.Webhook
		want   findings.Class
		detail string
	}{
		{"healthy", found(443, notReady, ready), findings.Healthy, ""},
		{"service gone", callout.Webhook{Service: ref}, findings.ServiceNotFound, `service "hook" not found`},
		{"wrong port", found(8080), findings.PortMismatch, `service "hook" has no port 8080`},
		{"none ready", found(443, notReady), findings.BackendPodsNotReady, `1 endpoints of service "hook", none ready`},
		{"no endpoints", found(443), findings.NoEndpoints, `no endpoints available for service "hook"`},
		{"url webhook", callout.Webhook{URL: "https://x.example.com/"}, findings.Healthy, ""},
		{"invalid", callout.Webhook{Service: ref, Invalid: "caBundle holds no PEM certificate"}, findings.InvalidConfiguration, "caBundle holds no PEM certificate"},
		{"not listed yet", callout.Webhook{Service: ref, Unresolved: "not listed"}, "", "not listed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, detail := Problem(c.w)
			if got != c.want || detail != c.detail {
				t.Errorf("got %q %q, want %q %q", got, detail, c.want, c.detail)
			}
		})
	}
}

type podsFunc func() []PodState

func (f podsFunc) ListPods(context.Context, string, map[string]string) ([]PodState, error) {
	return f(), nil
}

// TestDiagnosePending: NoEndpoints becomes BackendPodsPending, with the
// scheduler's reason, when the Service's pods exist but are Pending.
func TestDiagnosePending(t *testing.T) {
	w := callout.Webhook{Service: &callout.ServiceRef{Namespace: "ns", Name: "hook", Port: 443}, ServiceFound: true,
		ServicePorts: []int32{443}, ServiceSelector: map[string]string{"app": "hook"}}
	pending := podsFunc(func() []PodState {
		return []PodState{{Name: "hook-0", Phase: "Pending", Reason: "Unschedulable: 0/3 nodes are available"}}
	})
	class, detail, err := Diagnose(context.Background(), w, pending)
	want := `no endpoints available for service "hook": 1/1 pods of service "hook" Pending: hook-0 (Unschedulable: 0/3 nodes are available)`
	if err != nil || class != findings.BackendPodsPending || detail != want {
		t.Fatalf("got %s %q %v, want BackendPodsPending %q", class, detail, err, want)
	}
	running := podsFunc(func() []PodState { return []PodState{{Name: "hook-0", Phase: "Running"}} })
	if class, _, _ := Diagnose(context.Background(), w, running); class != findings.NoEndpoints {
		t.Errorf("running pods: %s, want NoEndpoints", class)
	}
}
