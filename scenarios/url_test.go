//go:build linux

package scenarios

import (
	"context"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"

	"github.com/hookscope/hookscope/chaos"
)

// Webhooks that call a URL (clientConfig.url) instead of a Service: no
// Service, endpoints or pods for the API server to resolve, an address it
// dials as written. Here the URL holds the backend pod's IP, as a webhook
// served at a fixed address (a hostNetwork server, an external endpoint)
// does. The agent on the node that holds the address traces the API
// server's calls to it, and the finding and its fix name the URL.

// TestURLWebhookExpiredCertificate: the server at the URL serves an
// expired certificate; the API server rejects the handshake, seen on the
// wire at the URL's address.
func TestURLWebhookExpiredCertificate(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "URL webhook: expired serving certificate",
		callOutcome:   "rejected",
		expectedClass: "CertExpired",
		spec:          chaos.WebhookSpec{Name: "url-expired", FailurePolicy: admissionv1.Fail, URL: true},
		inject:        serveExpiredCertificate,
		wantError:     x509Expired,
		effect:        "writes rejected",
		fix:           "renew the serving certificate behind URL https://",
		remediation:   "serve a renewed, valid certificate",
		remediate:     serveValidCertificate,
	}.feature())
}

// TestURLWebhookConnectionRefused: nothing listens at the URL's port any
// more (the server stopped, or the URL names an old port); the pod's
// kernel refuses the API server's connections.
func TestURLWebhookConnectionRefused(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "URL webhook: connection refused",
		callOutcome:   "refused",
		expectedClass: "ConnectionRefused",
		spec:          chaos.WebhookSpec{Name: "url-refused", FailurePolicy: admissionv1.Fail, URL: true},
		inject:        func(_ context.Context, wh *chaos.Webhook) (any, error) { return nil, wh.StopServer() },
		wantError:     "connect: connection refused",
		effect:        "writes rejected",
		fix:           "nothing listens on ",
		remediation:   "start the webhook server again",
		remediate:     func(_ context.Context, wh *chaos.Webhook, _ any) error { return wh.StartServer() },
	}.feature())
}
