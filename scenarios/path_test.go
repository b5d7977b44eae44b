//go:build linux

package scenarios

import (
	"context"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"

	"github.com/hookscope/hookscope/chaos"
)

// TestBlockedBeforeNode: the API server's packets to the webhook's pod are
// dropped before they reach its node, and only the API server's: the
// node's own probe still connects. On EKS this is a node security group
// that does not admit the webhook's target port from the cluster security
// group. The API server reports only a timeout; the agent says where the
// packets stop, from the SYNs that never reached the pod.
func TestBlockedBeforeNode(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "API server's packets dropped before the node (security group)",
		expectedClass: "BlockedBeforeNode",
		spec:          chaos.WebhookSpec{Name: "blocked-path", FailurePolicy: admissionv1.Fail, Timeout: 2},
		inject: func(ctx context.Context, wh *chaos.Webhook) (any, error) {
			return lab.BlockAPIServer(ctx, wh)
		},
		wantError:   "context deadline exceeded",
		effect:      "writes rejected",
		evidence:    "no SYN from the API server reached pod",
		remediation: "admit the API server's packets again (remove the firewall rule)",
		remediate: func(ctx context.Context, _ *chaos.Webhook, restore any) error {
			return restore.(func(context.Context) error)(ctx)
		},
	}.feature())
}
