//go:build linux

package scenarios

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/hookscope/hookscope/chaos"
)

// TestBackendWithNoAgent: a webhook's backend runs on a node where no
// hookscope agent runs (Fargate, a node the DaemonSet leaves out). No
// kernel sees its calls; the agent holding the Lease lists it as untraced,
// probes it, and names its expired certificate, saying the backend is not
// traced; the finding resolves when the certificate is renewed.
func TestBackendWithNoAgent(t *testing.T) {
	if os.Getenv("PROVIDER") == "kind" {
		t.Skip("an agent runs on every node of the kind cluster")
	}
	var (
		wh *chaos.Webhook
		id string
	)
	f := features.New("backend on a node with no agent").
		Setup(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if wh, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "no-agent", FailurePolicy: admissionv1.Fail, Node: "hookscope-node-fargate"}); err != nil {
				t.Fatal(err)
			}
			return ctx
		}).
		Assess("the agent lists the backend as untraced", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
				ws, err := lab.Agent.Webhooks(ctx)
				if err != nil {
					return false, nil
				}
				return slices.ContainsFunc(ws, func(w chaos.AgentWebhook) bool {
					return w.Ref.Name == wh.WebhookName && len(w.Untraced) == 1 && len(w.Traced) == 0
				}), nil
			})
			if err != nil {
				t.Fatalf("the agent's /webhooks does not list %s's backend as untraced", wh.WebhookName)
			}
			return ctx
		}).
		Assess("an expired certificate is found by the Lease holder's probe, named untraced", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if _, err := serveExpiredCertificate(ctx, wh); err != nil {
				t.Fatal(err)
			}
			fd, err := lab.Agent.WaitForFinding(ctx, wh.WebhookName, "CertExpired", 15*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(fd.Untraced, "hookscope-node-fargate") || slices.Contains(fd.Sources(), "ebpf") {
				t.Errorf("finding %+v: want it named untraced on hookscope-node-fargate, with no kernel evidence", fd)
			}
			id = fd.ID
			return ctx
		}).
		Assess("renewed: the finding resolves", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if err := serveValidCertificate(ctx, wh, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := lab.Agent.WaitForResolved(ctx, id, 30*time.Second); err != nil {
				t.Fatal(err)
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
