// Package guard is hookscope's opt-in failover for an admission webhook
// that fails closed and keeps what the cluster needs to heal itself from
// running: the CNI DaemonSet's pods (aws-node), kube-proxy, CoreDNS. When
// such a finding has lasted a grace period, and only for a webhook whose
// configuration carries the opt-in annotation, it excludes the blocked
// object's namespace from that webhook (the narrowest change that lets the
// target run), and puts the webhook back exactly as it was once it has
// been healthy for a while, or after a TTL.
//
// The original selector is kept on the configuration itself, in an
// annotation written in the same update as the change: the change and its
// backup are one write, they survive the agent's restarts, and a revert
// restores the webhook entry and removes the annotation, leaving the
// configuration as it was. Writes carry the resourceVersion read (a
// concurrent change wins and the guard tries again later), at most one
// change per webhook per window, at most MaxGuarded webhooks at once. Only
// the agent holding the Lease calls it.
package guard

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube"
)

const (
	// OptIn on a webhook configuration ("true") lets the guard change its
	// webhooks; anything else, or removing it, reverts what it changed.
	OptIn = "guard.hookscope.dev/enabled"
	// backupKey holds, per webhook the guard changed, its original
	// namespaceSelector, the namespace excluded and when.
	backupKey = "guard.hookscope.dev/original"
	// nameLabel is the label the API server sets on every namespace.
	nameLabel = corev1.LabelMetadataName
)

// Config bounds the guard.
type Config struct {
	// Grace is how long a protected target must stay blocked before the
	// guard acts (default 60 s).
	Grace time.Duration
	// RevertAfter is how long the webhook must be healthy before the
	// guard puts it back (default 5 min).
	RevertAfter time.Duration
	// TTL is the longest a change stays, healthy or not (default 6 h).
	TTL time.Duration
	// Window: at most one change (or revert) per webhook per window
	// (default 10 min), so a flapping webhook does not make it flap.
	Window time.Duration
	// MaxGuarded is the most webhooks changed at once (default 3).
	MaxGuarded int
	// Protected are the objects whose blocking makes the guard act, as a
	// finding's impact names them ("DaemonSet kube-system/aws-node"): a
	// prefix ends with "/" ("DaemonSet kube-system/": every DaemonSet of
	// kube-system). Default: kube-system's DaemonSets, CoreDNS.
	Protected []string
}

func (c *Config) defaults() {
	if c.Grace <= 0 {
		c.Grace = time.Minute
	}
	if c.RevertAfter <= 0 {
		c.RevertAfter = 5 * time.Minute
	}
	if c.TTL <= 0 {
		c.TTL = 6 * time.Hour
	}
	if c.Window <= 0 {
		c.Window = 10 * time.Minute
	}
	if c.MaxGuarded <= 0 {
		c.MaxGuarded = 3
	}
	if len(c.Protected) == 0 {
		c.Protected = []string{"DaemonSet kube-system/", "Deployment kube-system/coredns"}
	}
}

// Records is where the guard says what it did: Events on the
// configuration, a metric, a log line. Any of them may be nil.
type Records struct {
	// Event records a Kubernetes Event on the configuration.
	Event func(ctx context.Context, cfg metav1.Object, kind string, warning bool, reason, message string)
	// Count counts an action (hookscope_guard_actions_total{action}).
	Count func(action string)
	// Span records the action as a span linked to the webhook's finding.
	Span func(ref callout.Ref, action, detail string, at time.Time)
}

// Guard acts on the findings of the agent that holds the Lease.
type Guard struct {
	api     kube.API
	cfg     Config
	log     *slog.Logger
	records Records
	// lastChange and healthySince are per webhook; the changes
	// themselves live on the configurations.
	lastChange   map[callout.Ref]time.Time
	healthySince map[callout.Ref]time.Time
}

// New makes a guard that writes through api.
func New(api kube.API, cfg Config, records Records, log *slog.Logger) *Guard {
	cfg.defaults()
	if log == nil {
		log = slog.Default()
	}
	return &Guard{api: api, cfg: cfg, log: log, records: records,
		lastChange: map[callout.Ref]time.Time{}, healthySince: map[callout.Ref]time.Time{}}
}

// original is what the guard changed in one webhook entry.
type original struct {
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector"`
	Excluded          string                `json:"excluded"`
	Since             time.Time             `json:"since"`
	Reason            string                `json:"reason"`
}

// blocked is a webhook that keeps a protected target from running, and the
// namespace to exclude.
type blocked struct {
	ref       callout.Ref
	namespace string
	reason    string
}

// Tick looks at the open findings and the configurations (as the
// inventory caches them) once: it reverts what may be reverted, then
// excludes what must be. Errors are logged; the next tick tries again.
func (g *Guard) Tick(ctx context.Context, open []findings.Finding, cfgs Configurations, now time.Time) {
	failing := map[callout.Ref]bool{}
	for _, f := range open {
		if f.Impact == nil && f.Class != findings.Healthy {
			failing[f.Webhook] = true
		}
	}
	guarded := cfgs.guarded()
	active := 0
	for _, gw := range guarded {
		if !g.maybeRevert(ctx, gw, failing[gw.ref], now) {
			active++
		}
	}
	for _, b := range g.blocked(open, now) {
		if active >= g.cfg.MaxGuarded {
			g.log.Warn("guard: at its limit of webhooks changed at once; not acting", "webhook", b.ref.String(), "limit", g.cfg.MaxGuarded)
			return
		}
		if slices.ContainsFunc(guarded, func(gw guardedWebhook) bool { return gw.ref == b.ref }) {
			continue
		}
		if last, ok := g.lastChange[b.ref]; ok && now.Sub(last) < g.cfg.Window {
			continue
		}
		if optIn, ok := cfgs.optIn(b.ref); !ok || !optIn {
			continue // not opted in: the guard never writes
		}
		if g.exclude(ctx, b, now) {
			active++
		}
	}
}

// blocked are the webhooks whose open findings show them failing closed
// and keeping a protected target from running for longer than Grace.
func (g *Guard) blocked(open []findings.Finding, now time.Time) []blocked {
	var out []blocked
	for _, f := range open {
		if f.Impact == nil || f.FailurePolicy != string(admissionv1.Fail) {
			continue
		}
		if k := f.Webhook.Kind; k != callout.KindValidating && k != callout.KindMutating {
			continue
		}
		since := f.Impact.Since
		if since.IsZero() || f.FirstSeen.After(since) {
			since = f.FirstSeen
		}
		ns, ok := g.protected(f.Impact.Object)
		if !ok || now.Sub(since) < g.cfg.Grace {
			continue
		}
		if slices.ContainsFunc(out, func(b blocked) bool { return b.ref == f.Webhook }) {
			continue
		}
		out = append(out, blocked{ref: f.Webhook, namespace: ns,
			reason: fmt.Sprintf("%s keeps %s from running since %s (%s)", f.Webhook.Name, f.Impact.Object, since.UTC().Format(time.RFC3339), f.Class)})
	}
	return out
}

// protected reports whether an impact's object ("Kind namespace/name") is
// protected, and its namespace.
func (g *Guard) protected(object string) (string, bool) {
	_, nsName, ok := strings.Cut(object, " ")
	if !ok {
		return "", false
	}
	ns, _, ok := strings.Cut(nsName, "/")
	if !ok || ns == "" {
		return "", false
	}
	for _, p := range g.cfg.Protected {
		if object == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(object, p)) {
			return ns, true
		}
	}
	return "", false
}
