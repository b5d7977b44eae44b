//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/hookscope/hookscope/chaos"
)

// TestAgentRestart: an agent restarted while a failure is open, shut down
// (SIGTERM) and killed where it stands (SIGKILL), goes on with the same
// finding and ID; when the webhook is fixed the finding resolves under that
// ID, and the trace backend holds a resolution for every finding span of
// the webhook: none is left open for ever.
func TestAgentRestart(t *testing.T) {
	if p := os.Getenv("PROVIDER"); p == "kind" {
		t.Skip("on kind the agent is a DaemonSet pod: its kubelet restarts it, with its state in an emptyDir")
	}
	var (
		wh *chaos.Webhook
		id string
	)
	f := features.New("agent restarted with a failure open").
		Setup(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if wh, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "agent-restart", FailurePolicy: admissionv1.Fail}); err != nil {
				t.Fatalf("deploying the webhook: %v", err)
			}
			return ctx
		}).
		Assess("a failure is open", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if _, err := serveExpiredCertificate(ctx, wh); err != nil {
				t.Fatal(err)
			}
			fd, err := lab.Agent.WaitForFinding(ctx, wh.WebhookName, "CertExpired", 15*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			id = fd.ID
			return ctx
		}).
		Assess("the agent restarts twice and keeps the finding", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
				if err := lab.Agent.Restart(ctx, sig); err != nil {
					t.Fatalf("restarting the agent with %s: %v", sig, err)
				}
				// Two probe intervals: the restored finding is seen again.
				time.Sleep(5 * time.Second)
				open, resolved, err := lab.Agent.Findings(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if ids := findingIDs(open, wh.WebhookName); len(ids) != 1 || ids[0] != id {
					t.Fatalf("after %s: open findings of the webhook %v, want the one finding %s", sig, ids, id)
				}
				if ids := findingIDs(resolved, wh.WebhookName); len(ids) != 0 {
					t.Fatalf("after %s: resolved %v: the restart closed the finding", sig, ids)
				}
			}
			return ctx
		}).
		Assess("fixed: the finding resolves under its ID, and no span is left open", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if err := serveValidCertificate(ctx, wh, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := lab.Agent.WaitForResolved(ctx, id, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
				return spansLeftOpen(ctx, wh.WebhookName) == nil, nil
			})
			if err != nil {
				t.Fatal(spansLeftOpen(ctx, wh.WebhookName))
			}
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			removeWebhooks(t, wh)
			return ctx
		}).
		Feature()
	testenv.Test(t, f)
}

// findingIDs are the IDs of the findings of webhook.
func findingIDs(fs []chaos.AgentFinding, webhook string) []string {
	var ids []string
	for _, f := range fs {
		if f.Webhook.Name == webhook && f.Impact == nil {
			ids = append(ids, f.ID)
		}
	}
	return ids
}

// spansLeftOpen says which finding spans of webhook in Jaeger have no
// resolution span; nil when each has one.
func spansLeftOpen(ctx context.Context, webhook string) error {
	traces, err := lab.Jaeger.FindTraces(ctx, chaos.AgentServiceName, map[string]string{"hookscope.webhook.name": webhook})
	if err != nil {
		return err
	}
	state := map[string]map[string]bool{} // finding ID -> states seen
	for _, tr := range traces {
		for _, sp := range tr.Spans {
			id := sp.Tags["hookscope.finding.id"]
			if id == "" {
				continue // a call span
			}
			if state[id] == nil {
				state[id] = map[string]bool{}
			}
			state[id][sp.Tags["hookscope.finding.state"]] = true
		}
	}
	if len(state) == 0 {
		return fmt.Errorf("no finding span of %s in Jaeger", webhook)
	}
	for id, st := range state {
		if st["open"] && !st["resolved"] {
			return fmt.Errorf("finding %s of %s: an open span and no resolution in Jaeger (states %v)", id, webhook, st)
		}
	}
	return nil
}
