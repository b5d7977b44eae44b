package agent

import (
	"context"
	"log/slog"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/guard"
	"github.com/hookscope/hookscope/internal/kube/kubefake"
	"github.com/hookscope/hookscope/inventory"
)

// TestGuardRunsOnTheLeaseHolderOnly: two agents see the same blocked
// aws-node; only the one that holds the Lease lets the guard write, so the
// webhook is changed once, never twice.
func TestGuardRunsOnTheLeaseHolderOnly(t *testing.T) {
	fail := admissionv1.Fail
	cfg := &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "blocker", Annotations: map[string]string{guard.OptIn: "true"}},
		Webhooks: []admissionv1.MutatingWebhook{{Name: "mpod.blocker.example.com", FailurePolicy: &fail,
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "kube-system", Name: "gone"}}}}}
	ref := callout.Ref{Kind: callout.KindMutating, Configuration: "blocker", Name: "mpod.blocker.example.com"}
	api := kubefake.New(nil, cfg)
	inv := inventory.New(api, slog.New(slog.DiscardHandler))
	ctx := t.Context()
	go func() { _ = inv.Run(ctx, time.Second, func([]callout.Webhook) {}) }()
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		_, m := inv.Configurations()
		return len(m) == 1, nil
	}); err != nil {
		t.Fatal("the inventory never listed the configuration")
	}
	agentOn := func(leading bool) *Agent {
		store := findings.NewStore(findings.Config{})
		since := time.Now().Add(-time.Hour)
		w := callout.Webhook{Ref: ref, FailurePolicy: "Fail"}
		store.Observe(findings.Observation{Webhook: w, Class: findings.ServiceNotFound, Started: since,
			Evidence: findings.Evidence{Source: findings.Objects, At: since, Detail: `service "gone" not found`}})
		store.OpenImpact(w, findings.ServiceNotFound, findings.Impact{Kind: findings.ImpactNodeNotReady, Object: "DaemonSet kube-system/aws-node", Since: since},
			findings.Evidence{Source: findings.Event, At: since, Detail: "FailedCreate"})
		a := New(Config{ObjectChecks: leading}, Parts{Inventory: inv, Store: store,
			Guard: guard.New(api, guard.Config{Grace: time.Nanosecond}, guard.Records{}, slog.New(slog.DiscardHandler))})
		return a
	}
	updates := func() int {
		n := 0
		for _, a := range api.Clientset.Actions() {
			if a.GetVerb() == "update" {
				n++
			}
		}
		return n
	}
	follower, leader := agentOn(false), agentOn(true)
	follower.runGuard(ctx)
	if n := updates(); n != 0 {
		t.Fatalf("an agent that does not hold the Lease wrote %d times", n)
	}
	leader.runGuard(ctx)
	if n := updates(); n != 1 {
		t.Fatalf("the Lease holder wrote %d times, want one exclusion", n)
	}
}
