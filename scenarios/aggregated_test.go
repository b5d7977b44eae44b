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

// TestAggregatedAPINoEndpoints: an aggregated API (metrics-server's kind)
// whose backend pod is gone: its Service has no endpoints, the API
// server's discovery of the group fails, and namespaces cannot finish
// deleting. The agent names the APIService, the reason and what fails.
func TestAggregatedAPINoEndpoints(t *testing.T) {
	testenv.Test(t, gameDay{
		name:            "aggregated API with no endpoints (metrics-server down)",
		expectedClass:   "NoEndpoints",
		spec:            chaos.WebhookSpec{Name: "agg-no-endpoints", FailurePolicy: admissionv1.Fail, APIService: true},
		inject:          func(ctx context.Context, wh *chaos.Webhook) (any, error) { return nil, wh.StopBackend(ctx) },
		firstWriteDelay: time.Second,
		wantError:       "stale GroupVersion discovery", // aggregated discovery (Kubernetes 1.30 and later); older: "the server is currently unable to handle the request"
		effect:          "requests to the API fail",
		evidence:        "Available=False",
		remediation:     "restore the endpoints: start the backend pod again",
		remediate:       restartBackend,
	}.feature())
}

// TestAggregatedAPIUnknownAuthority: the aggregated API's serving
// certificate was reissued by a CA its APIService's caBundle does not
// hold: the API server's availability check fails its handshake, and
// discovery of the group fails. The agent sees the API server reject the
// handshake on the wire and names the caBundle.
func TestAggregatedAPIUnknownAuthority(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "aggregated API: caBundle does not verify the served chain",
		callOutcome:   "rejected",
		expectedClass: "UnknownAuthority",
		spec:          chaos.WebhookSpec{Name: "agg-unknown-ca", FailurePolicy: admissionv1.Fail, APIService: true},
		inject:        serve((*chaos.Webhook).OtherCACertificate),
		// The API server's availability check has not failed yet: the
		// group is listed, and reading it fails at the proxy's handshake
		// (once the check fails too, the group is stale).
		wantError:   "the server is currently unable to handle the request",
		orError:     "stale GroupVersion discovery",
		effect:      "requests to the API fail",
		remediation: "serve a certificate the caBundle's CA signed",
		remediate:   serveValidCertificate,
	}.feature())
}

// TestConversionServiceNotFound: a CRD converts its custom resources with a
// webhook whose Service was deleted (cert-manager's CRDs while its webhook
// is uninstalled): every write of a Widget at a version other than the
// stored one fails, and a conversion webhook has no failurePolicy to
// relax. The agent names the CRD, the reason and what fails.
func TestConversionServiceNotFound(t *testing.T) {
	testenv.Test(t, gameDay{
		name:            "conversion webhook: Service not found",
		expectedClass:   "ServiceNotFound",
		spec:            chaos.WebhookSpec{Name: "conv-no-svc", FailurePolicy: admissionv1.Fail, Conversion: true},
		inject:          func(ctx context.Context, wh *chaos.Webhook) (any, error) { return wh.DeleteService(ctx) },
		firstWriteDelay: time.Second,
		wantError:       `service "conv-no-svc-webhook" not found`,
		effect:          "custom resources cannot be converted",
		remediation:     "restore the Service from its backup",
		remediate: func(ctx context.Context, wh *chaos.Webhook, backup any) error {
			return wh.RestoreService(ctx, backup.(*corev1.Service))
		},
	}.feature())
}

// TestConversionExpiredCertificate: a CRD's conversion webhook serves an
// expired certificate (cert-manager's own webhook, when its CA injection
// lagged): the API server rejects the handshake, seen on the wire.
func TestConversionExpiredCertificate(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "conversion webhook: expired serving certificate",
		callOutcome:   "rejected",
		expectedClass: "CertExpired",
		spec:          chaos.WebhookSpec{Name: "conv-expired", FailurePolicy: admissionv1.Fail, Conversion: true},
		inject:        serveExpiredCertificate,
		wantError:     x509Expired,
		effect:        "custom resources cannot be converted",
		remediation:   "serve a renewed, valid certificate",
		remediate:     serveValidCertificate,
	}.feature())
}

// TestAggregatedAPIBlockedBeforeNode: the API server's packets to an
// aggregated API's pod are dropped before its node (on EKS, the node
// security group admits metrics-server's port only from the nodes, not
// from the cluster security group): the API server marks the APIService
// unavailable and its reads fail, while the pod and its endpoints look
// healthy. The agent says where the packets stop.
func TestAggregatedAPIBlockedBeforeNode(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "aggregated API: API server's packets dropped before the node (security group)",
		expectedClass: "BlockedBeforeNode",
		spec:          chaos.WebhookSpec{Name: "agg-blocked", FailurePolicy: admissionv1.Fail, APIService: true},
		inject: func(ctx context.Context, wh *chaos.Webhook) (any, error) {
			return lab.BlockAPIServer(ctx, wh)
		},
		// The proxy's dial gives up: a 503, in the API server's words; or,
		// once its availability check failed too, a stale group.
		wantError: "the server is currently unable to handle the request",
		orError:   "stale GroupVersion discovery",
		effect:    "requests to the API fail",
		evidence:  "no SYN from the API server reached pod",
		// Only the API server's availability check (every 30 s, 5 s to
		// time out) says it tried: the packets never reach a node.
		namedWithin: 60 * time.Second,
		remediation: "admit the API server's packets again (remove the firewall rule)",
		remediate: func(ctx context.Context, _ *chaos.Webhook, restore any) error {
			return restore.(func(context.Context) error)(ctx)
		},
	}.feature())
}
