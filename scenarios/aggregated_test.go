//go:build linux

package scenarios

import (
	"context"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"

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
		// group is listed, and reading it fails at the proxy's handshake.
		wantError:   "the server is currently unable to handle the request",
		effect:      "requests to the API fail",
		remediation: "serve a certificate the caBundle's CA signed",
		remediate:   serveValidCertificate,
	}.feature())
}
