//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/util/wait"

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

// TestDroppedAtPod: a default-deny NetworkPolicy in the webhook's
// namespace, enforced at the pod (a firewall rule in the pod's network
// stands in for the CNI): the API server's SYNs reach the pod's interface
// and are never answered. Before any write, the agent names the policy as
// a risk; when writes time out, the finding names the policy and where the
// packets stop.
func TestDroppedAtPod(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "API server's packets dropped at the pod (NetworkPolicy)",
		expectedClass: "DroppedAtPod",
		spec:          chaos.WebhookSpec{Name: "dropped-at-pod", FailurePolicy: admissionv1.Fail, Timeout: 2},
		inject: func(ctx context.Context, wh *chaos.Webhook) (any, error) {
			return lab.FirewallPod(ctx, wh)
		},
		wantError:   "context deadline exceeded",
		effect:      "writes rejected",
		evidence:    "NetworkPolicy chaos-dropped-at-pod/default-deny-ingress selects pod",
		remediation: "admit the API server's connections at the pod (remove the NetworkPolicy and the firewall rule)",
		remediate: func(ctx context.Context, wh *chaos.Webhook, restore any) error {
			if err := waitForRisk(ctx, wh.WebhookName, "NetworkPolicyDenies", "default-deny-ingress"); err != nil {
				return err
			}
			return restore.(func(context.Context) error)(ctx)
		},
	}.feature())
}

// waitForRisk waits until the agent lists a risk of kind for webhook whose
// detail holds text.
func waitForRisk(ctx context.Context, webhook, kind, text string) error {
	var last []chaos.AgentRisk
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		last, _ = lab.Agent.Risks(ctx)
		return slices.ContainsFunc(last, func(r chaos.AgentRisk) bool {
			return r.Webhook.Name == webhook && r.Kind == kind && strings.Contains(r.Detail, text)
		}), nil
	})
	if err != nil {
		return fmt.Errorf("no %s risk for %s naming %q within 15s (risks: %+v)", kind, webhook, text, last)
	}
	return nil
}

// TestNotTheWebhook: a service-mesh sidecar injected into the webhook's
// pod takes the API server's connections and closes them without a word
// (the stand-in reads the ClientHello and closes): the API server says only
// EOF. The agent names that something other than the webhook answers.
func TestNotTheWebhook(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "a sidecar in front of the webhook closes the connection (EOF)",
		expectedClass: "NotTheWebhook",
		spec:          chaos.WebhookSpec{Name: "sidecar-eof", FailurePolicy: admissionv1.Fail},
		inject: func(_ context.Context, wh *chaos.Webhook) (any, error) {
			return nil, wh.Server.SetClosing(true)
		},
		wantError:   ": EOF",
		effect:      "writes rejected",
		remediation: "let the webhook serve its port itself (exclude the port from the sidecar's capture)",
		remediate: func(_ context.Context, wh *chaos.Webhook, _ any) error {
			return wh.Server.SetClosing(false)
		},
	}.feature())
}

// TestHostNetworkBackend: the webhook runs with hostNetwork (as on EKS
// with an overlay CNI, whose pod network the control plane cannot reach)
// and its certificate expires. The agent sees the API server reject the
// handshake on the node's own interfaces, not on a pod's veth.
func TestHostNetworkBackend(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "expired serving certificate, hostNetwork backend",
		callOutcome:   "rejected",
		expectedClass: "CertExpired",
		spec:          chaos.WebhookSpec{Name: "hostnet-expired", FailurePolicy: admissionv1.Fail, HostNetwork: true},
		inject:        serveExpiredCertificate,
		wantError:     x509Expired,
		effect:        "writes rejected",
		remediation:   "serve a renewed, valid certificate",
		remediate:     serveValidCertificate,
		spanTags:      map[string]string{"tls.protocol.version": "1.3", "hookscope.handshake.phase": "server_hello"},
	}.feature())
}
