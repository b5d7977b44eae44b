//go:build linux

package scenarios

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/hookscope/hookscope/chaos"
)

// The API server's texts, as the article quotes them.
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
	return nil, swapCertificate(wh, cert)
}

// swapCertificate serves cert from now on. The server closes its open
// connections, as a restart with a new certificate does; the API server
// must see them closed before the game day's write, or the write races the
// close on a kept-alive connection (a POST is not retried: "write: broken
// pipe" instead of the certificate's error).
func swapCertificate(wh *chaos.Webhook, cert tls.Certificate) error {
	if err := wh.Server.SetCertificate(cert); err != nil {
		return err
	}
	time.Sleep(closeSettle)
	return nil
}

// closeSettle is how long the API server is given to read the close of a
// kept-alive connection.
const closeSettle = 300 * time.Millisecond

func serveValidCertificate(_ context.Context, wh *chaos.Webhook, _ any) error {
	cert, err := wh.ValidCertificate()
	if err != nil {
		return err
	}
	return wh.Server.SetCertificate(cert)
}

func TestExpiredServingCertificate(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "expired serving certificate",
		callOutcome:   "rejected",
		expectedClass: "CertExpired",
		spec:          chaos.WebhookSpec{Name: "expired-cert", FailurePolicy: admissionv1.Fail},
		inject:        serveExpiredCertificate,
		wantError:     x509Expired,
		effect:        "writes rejected",
		remediation:   "serve a renewed, valid certificate",
		remediate:     serveValidCertificate,
		spanTags:      map[string]string{"tls.protocol.version": "1.3", "hookscope.handshake.phase": "server_hello", "hookscope.tls.encrypted_alert": "true"},
		whileOpen:     &findingsOfTwoNodes,
		events:        true,
	}.feature())
}

// TestExpiredServingCertificateTLS12: a backend that speaks TLS 1.2 at
// most (older webhook servers, a FIPS proxy): the API server's alert goes
// in cleartext, and the finding's span names it.
func TestExpiredServingCertificateTLS12(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "expired serving certificate, TLS 1.2 backend",
		callOutcome:   "rejected",
		expectedClass: "CertExpired",
		spec:          chaos.WebhookSpec{Name: "expired-cert-tls12", FailurePolicy: admissionv1.Fail},
		inject: func(ctx context.Context, wh *chaos.Webhook) (any, error) {
			if err := wh.Server.SetTLSMaxVersion(tls.VersionTLS12); err != nil {
				return nil, err
			}
			return serveExpiredCertificate(ctx, wh)
		},
		wantError:   x509Expired,
		effect:      "writes rejected",
		remediation: "serve a renewed, valid certificate",
		remediate:   serveValidCertificate,
		spanTags:    map[string]string{"tls.protocol.version": "1.2", "hookscope.tls.alert.level": "fatal", "hookscope.tls.alert.description": "*"},
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
		callOutcome:   "rejected",
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
		callOutcome:   "refused",
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

func serve(cert func(*chaos.Webhook) (tls.Certificate, error)) func(context.Context, *chaos.Webhook) (any, error) {
	return func(_ context.Context, wh *chaos.Webhook) (any, error) {
		c, err := cert(wh)
		if err != nil {
			return nil, err
		}
		return nil, swapCertificate(wh, c)
	}
}

func TestCertificateNotYetValid(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "certificate not yet valid",
		callOutcome:   "rejected",
		expectedClass: "CertNotYetValid",
		spec:          chaos.WebhookSpec{Name: "not-yet-valid", FailurePolicy: admissionv1.Fail},
		inject:        serve((*chaos.Webhook).NotYetValidCertificate),
		wantError:     x509Expired, // the API server's text is the same for both ends of the window
		effect:        "writes rejected",
		remediation:   "serve a certificate valid now",
		remediate:     serveValidCertificate,
	}.feature())
}

func TestUnknownAuthority(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "caBundle does not verify the served chain (rotated CA)",
		callOutcome:   "rejected",
		expectedClass: "UnknownAuthority",
		spec:          chaos.WebhookSpec{Name: "unknown-ca", FailurePolicy: admissionv1.Fail},
		inject:        serve((*chaos.Webhook).OtherCACertificate),
		wantError:     "x509: certificate signed by unknown authority",
		effect:        "writes rejected",
		remediation:   "serve a certificate the caBundle's CA signed",
		remediate:     serveValidCertificate,
	}.feature())
}

func TestHostnameMismatch(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "certificate for another name",
		callOutcome:   "rejected",
		expectedClass: "HostnameMismatch",
		spec:          chaos.WebhookSpec{Name: "wrong-name", FailurePolicy: admissionv1.Fail},
		inject:        serve((*chaos.Webhook).WrongNameCertificate),
		wantError:     "x509: certificate is valid for other-webhook.chaos-wrong-name.svc",
		effect:        "writes rejected",
		remediation:   "serve a certificate for <service>.<namespace>.svc",
		remediate:     serveValidCertificate,
	}.feature())
}

func TestHandshakeTimeout(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "webhook timeout (backend accepts and never answers)",
		expectedClass: "HandshakeTimeout",
		spec:          chaos.WebhookSpec{Name: "hung", FailurePolicy: admissionv1.Fail, Timeout: 2},
		beforeFailure: true,
		inject: func(_ context.Context, wh *chaos.Webhook) (any, error) {
			return nil, wh.Server.SetSilent(true)
		},
		wantError:   "context deadline exceeded",
		effect:      "writes rejected",
		remediation: "restart the hung webhook server",
		remediate: func(_ context.Context, wh *chaos.Webhook, _ any) error {
			return wh.Server.SetSilent(false)
		},
	}.feature())
}

func TestPortMismatch(t *testing.T) {
	testenv.Test(t, gameDay{
		name:            "webhook port not on the Service",
		expectedClass:   "PortMismatch",
		spec:            chaos.WebhookSpec{Name: "port-mismatch", FailurePolicy: admissionv1.Fail},
		inject:          func(ctx context.Context, wh *chaos.Webhook) (any, error) { return nil, wh.SetWebhookPort(ctx, 8443) },
		firstWriteDelay: time.Second,
		wantError:       `no service port 8443 found for service "port-mismatch-webhook"`,
		effect:          "writes rejected",
		remediation:     "point the webhook at the Service's port 443",
		remediate:       func(ctx context.Context, wh *chaos.Webhook, _ any) error { return wh.SetWebhookPort(ctx, 443) },
	}.feature())
}

func TestCertificateExpiringSoon(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "certificate expiring within the horizon (no write fails yet)",
		expectedClass: "CertExpiringSoon",
		spec:          chaos.WebhookSpec{Name: "expiring", FailurePolicy: admissionv1.Fail},
		inject: serve(func(wh *chaos.Webhook) (tls.Certificate, error) {
			return wh.ExpiringCertificate(48 * time.Hour)
		}),
		wantError:   "", // still valid: the write goes through
		effect:      "none yet",
		remediation: "renew the certificate",
		remediate:   serveValidCertificate,
	}.feature())
}

func TestBackendPodsNotReady(t *testing.T) {
	testenv.Test(t, gameDay{
		name:            "backend pods not ready (readiness probe failing)",
		expectedClass:   "BackendPodsNotReady",
		spec:            chaos.WebhookSpec{Name: "not-ready", FailurePolicy: admissionv1.Fail},
		inject:          func(ctx context.Context, wh *chaos.Webhook) (any, error) { return nil, wh.SetBackendReady(ctx, false) },
		firstWriteDelay: time.Second,
		wantError:       noEndpoints, // the API server calls ready endpoints only
		effect:          "writes rejected",
		remediation:     "restore the endpoints: the pod passes its readiness probe again (Option 1)",
		remediate: func(ctx context.Context, wh *chaos.Webhook, _ any) error {
			if err := wh.SetBackendReady(ctx, true); err != nil {
				return err
			}
			return wh.WaitServing(ctx)
		},
	}.feature())
}

func TestSlowWebhook(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "slow webhook (answers, but takes 1.5 s of its 5 s)",
		expectedClass: "SlowResponse",
		spec:          chaos.WebhookSpec{Name: "slow", FailurePolicy: admissionv1.Fail, Timeout: 5},
		inject: func(_ context.Context, wh *chaos.Webhook) (any, error) {
			return nil, wh.Server.SetDelay(1500 * time.Millisecond)
		},
		wantError:   "", // slow, not failing: every matched write waits
		effect:      "writes slowed",
		remediation: "fix the slow backend (here: it answers at once again)",
		remediate: func(_ context.Context, wh *chaos.Webhook, _ any) error {
			return wh.Server.SetDelay(0)
		},
	}.feature())
}

func TestWebhookTimeoutAfterHandshake(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "webhook timeout (handshake completes, no answer within timeoutSeconds)",
		expectedClass: "WebhookTimeout",
		spec:          chaos.WebhookSpec{Name: "no-answer", FailurePolicy: admissionv1.Fail, Timeout: 2},
		beforeFailure: true,
		inject: func(_ context.Context, wh *chaos.Webhook) (any, error) {
			return nil, wh.Server.SetDelay(time.Minute)
		},
		wantError:   "context deadline exceeded",
		effect:      "writes rejected",
		remediation: "fix the backend so it answers (here: at once again), writes flow",
		remediate: func(ctx context.Context, wh *chaos.Webhook, _ any) error {
			if err := wh.Server.SetDelay(0); err != nil {
				return err
			}
			// The first answer on the API server's connection is timed from
			// the request it abandoned; the next ones show the recovery.
			for range 2 {
				if _, err := wh.Write(ctx); err != nil {
					return err
				}
			}
			return nil
		},
	}.feature())
}
