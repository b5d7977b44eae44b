package impact

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/hookscope/hookscope/findings"
)

// Evaluate links NotReady nodes to blocked DaemonSets and Deployments to
// their stuck deletions, and resolves what is over. Run calls it every
// second and on every change; tests call it directly.
func (c *Correlator) Evaluate() {
	now := c.clock.Now()
	holding := map[findings.Key]bool{}
	active, deleting := c.snapshot(now, holding)
	notReady := c.cluster.notReadyNodes()
	for _, b := range active {
		kind, ns, name, ok := parseObject(b.object)
		if ok && c.cluster.satisfied(kind, ns, name) {
			// The controller has its pods again: the loop is over.
			c.mu.Lock()
			delete(c.blocked, b.object)
			c.mu.Unlock()
			continue
		}
		holding[findings.ImpactKey(b.webhook.Ref, findings.Impact{Kind: findings.ImpactControllerBlocked, Object: b.object})] = true
		if kind != "DaemonSet" {
			continue
		}
		for _, n := range notReady {
			if has, known := c.cluster.daemonSetPodOn(ns, name, n.Name); has || !known {
				continue
			}
			imp := findings.Impact{Kind: findings.ImpactNodeNotReady, Node: n.Name, Object: b.object, Since: notReadySince(n),
				Detail: fmt.Sprintf("node %s is NotReady (%s) and %s cannot create its pod there: %s",
					n.Name, readyReason(n), b.object, blockCause(b))}
			holding[findings.ImpactKey(b.webhook.Ref, imp)] = true
			c.store.OpenImpact(b.webhook, b.failure.Class, imp, eventEvidence(b.failure),
				findings.Evidence{Source: findings.Objects, At: now, Detail: imp.Detail})
		}
	}
	for name, sf := range deleting {
		w, _ := c.webhooks.WebhookByName(name)
		for _, imp := range c.cluster.stuckDeletions(w.Ref.Name, sf) {
			holding[findings.ImpactKey(w.Ref, imp)] = true
			ev := sf
			ev.Reason, ev.Object = "DELETE rejected", imp.Object
			c.store.OpenImpact(w, sf.Class, imp, eventEvidence(ev), findings.Evidence{Source: findings.Objects, At: now, Detail: imp.Detail})
		}
	}
	if apis, ok := c.webhooks.(APIs); ok {
		for _, st := range append(c.cluster.stuckNamespaces(apis, now), c.cluster.stoppedAutoscalers(apis, now)...) {
			holding[findings.ImpactKey(st.api.Ref, st.imp)] = true
			class := c.store.OpenClass(st.api.Ref)
			if class == "" {
				class = findings.CallsFailing
			}
			c.store.OpenImpact(st.api, class, st.imp, findings.Evidence{Source: findings.Objects, At: now, Detail: st.cause},
				findings.Evidence{Source: findings.Objects, At: now, Detail: st.imp.Detail})
		}
	}
	c.store.ResolveQuiet(func(k findings.Key) bool { return holding[k] })
}

// snapshot forgets what is over and returns the controllers still
// blocked and the webhooks still rejecting DELETEs; holding gets the
// signal findings that still hold.
func (c *Correlator) snapshot(now time.Time, holding map[findings.Key]bool) ([]blockedController, map[string]Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var active []blockedController
	for k, b := range c.blocked {
		if now.Sub(b.last) > impactWindow {
			delete(c.blocked, k)
			continue
		}
		active = append(active, b)
	}
	for name, at := range c.lastSignal {
		if now.Sub(at) > signalQuiet {
			delete(c.lastSignal, name)
			delete(c.slowOnly, name)
			continue
		}
		w, _ := c.webhooks.WebhookByName(name)
		holding[findings.SignalKey(w.Ref)] = true
	}
	deleting := map[string]Signal{}
	for name, sf := range c.deleting {
		if now.Sub(sf.At) > impactWindow {
			delete(c.deleting, name)
			continue
		}
		deleting[name] = sf
	}
	c.cluster.keepPodWatches(active)
	return active, deleting
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false // a new node with no conditions yet is not Ready
}

func notReadySince(n *corev1.Node) time.Time {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && !c.LastTransitionTime.IsZero() {
			return c.LastTransitionTime.Time
		}
	}
	return n.CreationTimestamp.Time
}

func readyReason(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Reason != "" {
				return c.Reason
			}
			return "Ready=" + string(c.Status)
		}
	}
	return "no Ready condition yet"
}

// parseObject splits "Kind namespace/name".
func parseObject(o string) (kind, ns, name string, ok bool) {
	kind, rest, ok := strings.Cut(o, " ")
	if !ok {
		return "", "", "", false
	}
	ns, name, ok = strings.Cut(rest, "/")
	return kind, ns, name, ok
}
