package impact

import (
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hookscope/hookscope/findings"
)

// Denial is a webhook's explicit denial of a controller's pods, as an
// Event reported it: the webhook works, and says no.
type Denial struct {
	// Webhook is the webhook's name as the API server's text gives it.
	Webhook string
	// Message is the policy's reason; empty when it gave none.
	Message string
	At      time.Time
	// Object ("Kind namespace/name") and Reason are the Event's.
	Object, Reason string
	// Count is the Event's count.
	Count int
}

// OnDenial takes a webhook's denial of a controller's pods (a FailedCreate
// Event). When the controller is one the cluster needs (critical), the
// denial is a DeniesCriticalPods finding with the impacts of a call that
// fails closed: the controller blocked, and each NotReady node its
// DaemonSet cannot reach (Evaluate). Denials of other pods are the
// webhook doing its work: ignored.
func (c *Correlator) OnDenial(d Denial) {
	if d.Webhook == "" || d.Reason != "FailedCreate" || !critical(d.Object) {
		return
	}
	w, _ := c.webhooks.WebhookByName(d.Webhook)
	detail := "webhook " + d.Webhook + " denies them without explanation"
	if d.Message != "" {
		detail = "webhook " + d.Webhook + " denies them: " + d.Message
	}
	c.block(w, Signal{Webhook: d.Webhook, Class: findings.DeniesCriticalPods, Detail: detail, Source: findings.Event,
		At: d.At, Object: d.Object, Reason: d.Reason, Count: d.Count})
}

// critical reports whether a controller is one the cluster needs to run:
// a DaemonSet of kube-system (the CNI, kube-proxy, a CSI node plugin), or
// CoreDNS (its Deployment, or a ReplicaSet of it, which is what its
// FailedCreate Events name: coredns-<hash>).
func critical(object string) bool {
	kind, ns, name, ok := parseObject(object)
	if !ok || ns != metav1.NamespaceSystem {
		return false
	}
	switch kind {
	case "DaemonSet":
		return true
	case "Deployment":
		return name == "coredns" || name == "kube-dns"
	case "ReplicaSet":
		return strings.HasPrefix(name, "coredns-") || strings.HasPrefix(name, "kube-dns-")
	}
	return false
}

// blockCause says why a blocked controller cannot create its pods: its
// webhook fails closed, or denies them.
func blockCause(b blockedController) string {
	if b.failure.Class == findings.DeniesCriticalPods {
		return b.failure.Detail
	}
	return "webhook " + b.webhook.Ref.Name + " fails closed: " + b.failure.Detail
}
