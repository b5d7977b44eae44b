//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hookscope/hookscope/chaos"
)

// The agent's Events as an operator reads them with kubectl describe: its
// source component, and the reasons of an admission webhook's.
const (
	agentComponent   = "hookscope-agent"
	webhookFailing   = "WebhookFailing"
	webhookRecovered = "WebhookRecovered"
)

// failingEvent waits for the agent's Warning on wh's configuration that
// names the failure: "<class>: validating webhook "<name>" fails: ...".
func failingEvent(ctx context.Context, wh *chaos.Webhook, class string, since time.Time) (string, error) {
	return awaitAgentEvent(ctx, wh, corev1.EventTypeWarning, webhookFailing, class+": "+describeWebhook(wh)+" fails", since)
}

// recoveredEvent waits for the agent's Normal Event on wh's configuration
// that says the failure is over.
func recoveredEvent(ctx context.Context, wh *chaos.Webhook, class string, since time.Time) (string, error) {
	return awaitAgentEvent(ctx, wh, corev1.EventTypeNormal, webhookRecovered, describeWebhook(wh)+" no longer fails with "+class, since)
}

func describeWebhook(wh *chaos.Webhook) string {
	return strings.ToLower(wh.Kind()) + ` webhook "` + wh.WebhookName + `"`
}

// awaitAgentEvent reads, through the API server, the agent's Events on
// wh's webhook configuration (this one, by UID) until one of type and
// reason whose message starts with prefix, last seen at or after since,
// is there (15 s at most). It returns the Event as kubectl shows it.
func awaitAgentEvent(ctx context.Context, wh *chaos.Webhook, typ, reason, prefix string, since time.Time) (string, error) {
	kind := wh.Kind() + "WebhookConfiguration"
	uid, err := configurationUID(ctx, wh)
	if err != nil {
		return "", err
	}
	sel := fmt.Sprintf("involvedObject.kind=%s,involvedObject.name=%s,involvedObject.uid=%s,source=%s", kind, wh.Configuration(), uid, agentComponent)
	var seen []string
	var found string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := lab.Client.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			seen = []string{"listing Events: " + err.Error()}
			return false, nil
		}
		seen = seen[:0]
		for _, ev := range list.Items {
			seen = append(seen, fmt.Sprintf("%s %s x%d: %s", ev.Type, ev.Reason, ev.Count, ev.Message))
			// Event times have whole seconds.
			if ev.Type == typ && ev.Reason == reason && strings.HasPrefix(ev.Message, prefix) && !ev.LastTimestamp.Time.Before(since.Truncate(time.Second)) {
				found = fmt.Sprintf("%s %s (from %s on %s): %s", ev.Type, ev.Reason, ev.Source.Component, ev.Source.Host, ev.Message)
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("kubectl describe %s %s shows no %s %s Event from hookscope saying %q within 15s; hookscope's Events there: %q",
			strings.ToLower(kind), wh.Configuration(), typ, reason, prefix, seen)
	}
	return found, nil
}

// configurationUID is the UID of wh's webhook configuration.
func configurationUID(ctx context.Context, wh *chaos.Webhook) (string, error) {
	admission := lab.Client.AdmissionregistrationV1()
	if wh.Kind() == "Mutating" {
		c, err := admission.MutatingWebhookConfigurations().Get(ctx, wh.Configuration(), metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", wh.Configuration(), err)
		}
		return string(c.UID), nil
	}
	c, err := admission.ValidatingWebhookConfigurations().Get(ctx, wh.Configuration(), metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading ValidatingWebhookConfiguration %s: %w", wh.Configuration(), err)
	}
	return string(c.UID), nil
}
