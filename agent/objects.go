package agent

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/inventory"
	"github.com/hookscope/hookscope/risk"
)

// objectLoop runs the object checks whenever the inventory changes and
// every probe interval (a pod can turn Pending without any change to the
// objects the inventory watches), while this agent leads.
func (a *Agent) objectLoop(ctx context.Context) {
	// A webhook without endpoints is re-checked often: its pods can turn
	// Pending, or come back, with no change to the objects watched.
	const brokenRecheck = 200 * time.Millisecond
	next := a.cfg.ProbeInterval
	for {
		changed := false
		select {
		case <-ctx.Done():
			return
		case <-a.objects:
			changed = true
		case <-time.After(next):
		}
		// URLs are probed on changes and each probe interval, not on the
		// quick rechecks of webhooks without endpoints.
		probeURLs := changed || next == a.cfg.ProbeInterval
		next = a.cfg.ProbeInterval
		if probeURLs {
			a.resolveURLs(ctx, a.view.Load())
		}
		if !a.leading.Load() {
			continue
		}
		if a.inv != nil { // for the risks; once, and kept
			a.inv.WatchNetworkPolicies(ctx)
			a.inv.WatchPodDisruptionBudgets(ctx)
			a.inv.WatchCertificates(ctx)
		}
		v := a.view.Load()
		for _, w := range v.webhooks {
			if callsURL(w) {
				// The Lease holder probes it, as the API server calls it,
				// unless this node serves it (then it is a local target).
				if _, probed := v.targets[probeTarget{url: w.Ref}]; probed && probeURLs {
					a.queue.Add(task{target: probeTarget{url: w.Ref}})
				}
				continue
			}
			if a.checkObjects(ctx, w) == findings.NoEndpoints {
				next = brokenRecheck
			}
		}
		if probeURLs {
			a.probeRemote(v)
		}
		if changed { // risks follow the objects; a CA's expiry wakes the loop (calloutRisks)
			a.analyzeRisks(v)
		}
	}
}

// checkObjects hands the store what w's objects say; it returns the class
// before the Pending check.
func (a *Agent) checkObjects(ctx context.Context, w callout.Webhook) findings.Class {
	class, detail := inventory.Problem(w)
	if class == "" {
		return class // not listed yet: nothing to say
	}
	if class == findings.NoEndpoints {
		c, d, err := inventory.Diagnose(ctx, w, a.cfg.Pods)
		if err != nil {
			a.cfg.Logger.Warn("listing backend pods", "webhook", w.Ref.String(), "err", err)
		}
		class, detail = c, d
	}
	if class == findings.Healthy {
		detail = "the objects look callable"
	}
	a.store.Observe(findings.Observation{Webhook: w, Class: class, Started: time.Now(),
		Evidence: findings.Evidence{Source: findings.Objects, At: time.Now(), Detail: detail}})
	if class == findings.BackendPodsPending {
		return findings.NoEndpoints
	}
	return class
}

// analyzeRisks re-evaluates what could block the cluster and logs each
// new risk once.
func (a *Agent) analyzeRisks(v *view) {
	if a.inv == nil {
		return
	}
	backends := map[callout.Ref][]callout.Backend{}
	for ref, w := range v.webhooks {
		backends[ref] = w.Backends
	}
	vwcs, mwcs := a.inv.Configurations()
	risks := risk.Analyze(vwcs, mwcs, nil, backends)
	risks = append(risks, a.policyRisks(v)...)
	risks = append(risks, risk.AggregatedAPIs(slices.Collect(maps.Values(v.webhooks)))...)
	risks = append(risks, a.calloutRisks(v)...)
	risks = append(risks, a.caInjectionRisks(v)...)
	prev := a.risks.Swap(&risks)
	for _, r := range risks {
		if prev != nil && slices.ContainsFunc(*prev, func(p risk.Risk) bool { return p.Webhook == r.Webhook && p.Kind == r.Kind }) {
			continue
		}
		a.cfg.Logger.Warn("risk", "webhook", r.Webhook.String(), "kind", r.Kind, "severity", r.Severity, "detail", r.Detail, "fix", r.Fix)
	}
}

// probeRemote queues the probes of backends on nodes no agent runs on.
func (a *Agent) probeRemote(v *view) {
	covered, ok := a.agentNodes()
	if !ok {
		return // not known yet: no guess
	}
	for t := range v.remote {
		if untraced(v.remoteNode[t], covered) != "" {
			a.queue.Add(task{target: t})
		}
	}
}
