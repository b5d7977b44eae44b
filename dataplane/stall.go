package dataplane

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// Stalls are named while they stall: a backend that has not answered the
// API server's ClientHello, or a request, for half the webhook's
// timeoutSeconds is HandshakeTimeout or WebhookTimeout from the wire, with
// the moment the API server will fail its write, before it does. Half,
// and at least a second: a webhook that answers slowly but in time is
// SlowResponse when its answer comes, not a stall.

// stallAfter is how long an unanswered ClientHello or request of w waits
// before it is a stall; ok is false when that leaves no time before the
// API server gives up (timeoutSeconds of 1).
func stallAfter(w callout.Webhook) (d time.Duration, ok bool) {
	budget := time.Duration(w.TimeoutSeconds) * time.Second
	d = max(budget/2, time.Second)
	return d, d < budget*9/10
}

// helloEvent keeps the ClientHellos the backend has not answered yet.
// Callers hold a.mu.
func (a *Assembler) helloEvent(k connKey, e handshake.Event) {
	switch e.Kind {
	case handshake.KindClientHello:
		if !e.FromServer && len(a.hellos) < maxPending {
			a.hellos[k] = pendingRequest{at: e.Time, client: e.Client}
		}
	case handshake.KindServerHello, handshake.KindClose, handshake.KindReset, handshake.KindRefused, handshake.KindHandshakeRejected:
		delete(a.hellos, k)
	}
}

// stalls names the ClientHellos and requests that have waited past their
// webhook's stall time, once each. Callers hold a.mu.
func (a *Assembler) stalls(now time.Time) []func() {
	observe := a.cfg.Output.Latency
	if observe == nil {
		return nil
	}
	var out []func()
	for _, s := range []struct {
		waiting map[connKey]pendingRequest
		class   findings.Class
		what    string
	}{
		{a.hellos, findings.HandshakeTimeout, "ClientHello"},
		{a.pending, findings.WebhookTimeout, "request"},
	} {
		for k, p := range s.waiting {
			if p.stalled {
				continue
			}
			for _, w := range a.backends[k.server].Webhooks {
				d, ok := stallAfter(w)
				if !ok || now.Sub(p.at) < d {
					continue
				}
				p.stalled = true
				o := stallObservation(w, k.server, p, now, s.class, s.what)
				out = append(out, func() { observe(o) })
			}
			s.waiting[k] = p
		}
	}
	return out
}

// stallObservation is what a stalled ClientHello or request says.
func stallObservation(w callout.Webhook, backend netip.AddrPort, p pendingRequest, now time.Time, class findings.Class, what string) findings.Observation {
	waited := now.Sub(p.at)
	fails := p.at.Add(time.Duration(w.TimeoutSeconds) * time.Second)
	phase := findings.PhaseDone
	if class == findings.HandshakeTimeout {
		phase = findings.PhaseClientHello
	}
	return findings.Observation{Webhook: w, Backend: backend, Class: class, Started: p.at,
		Evidence: findings.Evidence{Source: findings.Kernel, At: now,
			Detail: fmt.Sprintf("the backend has not answered the %s from %s for %s: the API server fails the write at %s (timeoutSeconds %d) unless it answers",
				what, p.client, waited.Round(time.Millisecond), fails.Format("15:04:05.000"), w.TimeoutSeconds),
			Wire: &findings.WireFacts{Client: p.client, Phase: phase, Latency: waited}}}
}
