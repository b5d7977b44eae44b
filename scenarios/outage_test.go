//go:build linux

package scenarios

import (
	"context"
	"os"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/hookscope/hookscope/chaos"
)

// apiServerPauser is a provider whose API server can be frozen a while.
type apiServerPauser interface {
	PauseAPIServer(ctx context.Context, d time.Duration) error
}

// TestAPIServerOutage: the API server stops answering for 30 s, longer
// than the Lease's renew deadline, while two failures are open: one the
// agent holding the Lease finds from the objects (a deleted Service), one
// its probe finds on the node (an expired certificate). When the API server
// is back, both go on under the IDs they had: an outage costs no finding
// its identity, and drops none.
func TestAPIServerOutage(t *testing.T) {
	pauser, ok := lab.Provider.(apiServerPauser)
	if !ok || os.Getenv("PROVIDER") == "kind" {
		t.Skip("the provider cannot freeze its API server")
	}
	var (
		objects, backend *chaos.Webhook
		svc              *corev1.Service
		ids              = map[string]string{} // webhook -> finding ID
	)
	f := features.New("API server outage").
		Setup(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if objects, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "outage-objects", FailurePolicy: admissionv1.Fail}); err != nil {
				t.Fatal(err)
			}
			if backend, err = lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "outage-backend", FailurePolicy: admissionv1.Fail}); err != nil {
				t.Fatal(err)
			}
			return ctx
		}).
		Assess("two failures are open", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if svc, err = objects.DeleteService(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := serveExpiredCertificate(ctx, backend); err != nil {
				t.Fatal(err)
			}
			for wh, class := range map[*chaos.Webhook]string{objects: "ServiceNotFound", backend: "CertExpired"} {
				fd, err := lab.Agent.WaitForFinding(ctx, wh.WebhookName, class, 15*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				ids[wh.WebhookName] = fd.ID
			}
			return ctx
		}).
		Assess("the API server is away 30 s; the findings keep their IDs", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if err := pauser.PauseAPIServer(ctx, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			// The Lease comes back within its retry period; the object checks
			// and the probe see both failures again.
			time.Sleep(10 * time.Second)
			open, resolved, err := lab.Agent.Findings(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for name, id := range ids {
				if got := findingIDs(open, name); len(got) != 1 || got[0] != id {
					t.Errorf("webhook %s: open findings %v after the outage, want %s", name, got, id)
				}
				if got := findingIDs(resolved, name); len(got) != 0 {
					t.Errorf("webhook %s: resolved %v during the outage", name, got)
				}
			}
			return ctx
		}).
		Assess("fixed: both resolve under their IDs", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if err := objects.RestoreService(ctx, svc); err != nil {
				t.Fatal(err)
			}
			if err := serveValidCertificate(ctx, backend, nil); err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if _, err := lab.Agent.WaitForResolved(ctx, id, 30*time.Second); err != nil {
					t.Error(err)
				}
			}
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			removeWebhooks(t, objects, backend)
			return ctx
		}).
		Feature()
	testenv.Test(t, f)
}
