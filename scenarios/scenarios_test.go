//go:build linux

package scenarios

import (
	"context"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/hookscope/hookscope/chaos"
)

// The API server's texts, as the seed article quotes them.
const (
	x509Expired = "x509: certificate has expired or is not yet valid"
	notFound    = `service "%s" not found`
	noEndpoints = "no endpoints available for service"
)

func serveExpiredCertificate(_ context.Context, wh *chaos.Webhook) (any, error) {
	cert, err := wh.ExpiredCertificate()
	if err != nil {
		return nil, err
	}
	wh.Server.SetCertificate(cert)
	return nil, nil
}

func serveValidCertificate(_ context.Context, wh *chaos.Webhook, _ any) error {
	cert, err := wh.ValidCertificate()
	if err != nil {
		return err
	}
	wh.Server.SetCertificate(cert)
	return nil
}

func TestExpiredServingCertificate(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "expired serving certificate",
		expectedClass: "CertExpired",
		spec:          chaos.WebhookSpec{Name: "expired-cert", FailurePolicy: admissionv1.Fail},
		inject:        serveExpiredCertificate,
		wantError:     x509Expired,
		effect:        "writes rejected",
		remediation:   "serve a renewed, valid certificate",
		remediate:     serveValidCertificate,
	}.feature())
}

func TestServiceNotFound(t *testing.T) {
	const name = "svc-not-found"
	testenv.Test(t, gameDay{
		name:            "service not found",
		expectedClass:   "ServiceNotFound",
		spec:            chaos.WebhookSpec{Name: name, FailurePolicy: admissionv1.Fail},
		inject:          func(ctx context.Context, wh *chaos.Webhook) (any, error) { return wh.DeleteService(ctx) },
		firstWriteDelay: time.Second,
		wantError:       `service "` + name + `-webhook" not found`,
		effect:          "writes rejected",
		remediation:     "restore the Service from its backup (Option 1)",
		remediate: func(ctx context.Context, wh *chaos.Webhook, backup any) error {
			return wh.RestoreService(ctx, backup.(*corev1.Service))
		},
	}.feature())
}

func TestNoEndpoints(t *testing.T) {
	testenv.Test(t, gameDay{
		name:            "no endpoints",
		expectedClass:   "NoEndpoints",
		spec:            chaos.WebhookSpec{Name: "no-endpoints", FailurePolicy: admissionv1.Fail},
		inject:          func(ctx context.Context, wh *chaos.Webhook) (any, error) { return nil, wh.StopBackend(ctx) },
		firstWriteDelay: time.Second,
		wantError:       noEndpoints,
		effect:          "writes rejected",
		remediation:     "restore the endpoints: start the backend pod again (Option 1)",
		remediate:       restartBackend,
	}.feature())
}

func TestBackendPodsPending(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "backend pods Pending",
		expectedClass: "BackendPodsPending",
		spec:          chaos.WebhookSpec{Name: "pods-pending", FailurePolicy: admissionv1.Fail},
		inject: func(ctx context.Context, wh *chaos.Webhook) (any, error) {
			if err := wh.StopBackend(ctx); err != nil {
				return nil, err
			}
			return nil, wh.AddPendingBackend(ctx)
		},
		firstWriteDelay: time.Second,
		wantError:       noEndpoints,
		effect:          "writes rejected",
		remediation:     "replace the Pending pod with one that schedules (Option 1)",
		remediate: func(ctx context.Context, wh *chaos.Webhook, _ any) error {
			if err := wh.RemovePendingBackend(ctx); err != nil {
				return err
			}
			return restartBackend(ctx, wh, nil)
		},
	}.feature())
}

func TestFailOpenImpact(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "fail-open impact (failurePolicy Ignore)",
		expectedClass: "CertExpired",
		spec:          chaos.WebhookSpec{Name: "fail-open", FailurePolicy: admissionv1.Ignore},
		inject:        serveExpiredCertificate,
		wantError:     "", // the API server fails open: the write goes through unchecked
		effect:        "fails open",
		remediation:   "serve a renewed, valid certificate",
		remediate:     serveValidCertificate,
	}.feature())
}

func TestConnectionRefused(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "connection refused (backend port closed)",
		expectedClass: "ConnectionRefused",
		spec:          chaos.WebhookSpec{Name: "refused", FailurePolicy: admissionv1.Fail},
		inject:        func(_ context.Context, wh *chaos.Webhook) (any, error) { return nil, wh.StopServer() },
		wantError:     "connect: connection refused",
		effect:        "writes rejected",
		remediation:   "start the webhook server again",
		remediate:     func(_ context.Context, wh *chaos.Webhook, _ any) error { return wh.StartServer() },
	}.feature())
}

func restartBackend(ctx context.Context, wh *chaos.Webhook, _ any) error {
	if err := wh.StartBackend(ctx); err != nil {
		return err
	}
	return wh.WaitServing(ctx)
}
