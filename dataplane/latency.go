package dataplane

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// The webhook's own latency as the wire shows it: the kernel reports a
// request (the first application-data record of one, none outstanding) and
// the server's answer with its latency, and on a close how long a request
// still outstanding had waited. An answer slower than the webhook's
// threshold is SlowResponse; a request unanswered past timeoutSeconds is
// WebhookTimeout, whether the client closes (HTTP/1.1) or only resets the
// stream and keeps the connection (HTTP/2, the API server's way).

// PendingCheck is how often Tick should run: how late an unanswered
// request is found.
const PendingCheck = 250 * time.Millisecond

// latencyQuiet is how long a latency finding stays open with no new slow
// or unanswered request and no fast answer either.
const latencyQuiet = time.Minute

// pendingRequest is a request the backend has not answered yet.
type pendingRequest struct {
	at     time.Time
	client netip.AddrPort
	// stalled: it was named a stall (once).
	stalled bool
}

// latencyKey is one webhook's view of one backend.
type latencyKey struct {
	ref     callout.Ref
	backend netip.AddrPort
}

// latencyEvent handles request, response and the pending time of a close
// or reset. Callers hold a.mu; it appends to after what to do once it is
// released.
func (a *Assembler) latencyEvent(b Backend, k connKey, e handshake.Event, after *[]func()) {
	switch e.Kind {
	case handshake.KindRequest:
		if len(a.pending) < maxPending {
			a.pending[k] = pendingRequest{at: e.Time, client: e.Client}
		}
	case handshake.KindResponse:
		delete(a.pending, k)
		if a.timedOut[k] {
			// The request this answer is timed from was abandoned (HTTP/2
			// resets the stream and keeps the connection): the answer is
			// to a later one, whose start the kernel did not keep.
			delete(a.timedOut, k)
			return
		}
		for _, w := range b.Webhooks {
			if f := a.judgeAnswer(w, e); f != nil {
				*after = append(*after, f)
			}
		}
	case handshake.KindClose, handshake.KindReset:
		p, had := a.pending[k]
		delete(a.pending, k)
		delete(a.timedOut, k)
		if !had || e.FromServer || e.Latency <= 0 {
			return
		}
		for _, w := range b.Webhooks {
			if f := a.judgeTimeout(w, e.Server, p, e.Latency, "the client gave up and closed the connection"); f != nil {
				*after = append(*after, f)
			}
		}
	}
}

// slowAfter is the latency above which w is slow: the configured
// threshold, or half its timeoutSeconds if that is less (a webhook that
// uses half its budget times out under a little more load).
func (a *Assembler) slowAfter(w callout.Webhook) time.Duration {
	return min(a.cfg.SlowThreshold, time.Duration(w.TimeoutSeconds)*time.Second/2)
}

// SlowAfter is the latency above which webhook w's answers are slow.
func (a *Assembler) SlowAfter(w callout.Webhook) time.Duration { return a.slowAfter(w) }

// judgeAnswer judges an answer's latency: SlowResponse or WebhookTimeout
// when slow, Healthy (latency) when fast after slow ones. Callers hold
// a.mu.
func (a *Assembler) judgeAnswer(w callout.Webhook, e handshake.Event) func() {
	lk := latencyKey{w.Ref, e.Server}
	after := a.slowAfter(w)
	// The wire sees the request a little after the API server starts its
	// timer, and what the backend sends as the API server gives up (a
	// GOAWAY, a close_notify: application data in TLS 1.3) looks like an
	// answer: within 2% of timeoutSeconds it is the timeout (seen: 1.9996 s
	// of 2 s, called SlowResponse).
	timeout := time.Duration(w.TimeoutSeconds) * time.Second
	class := findings.Healthy
	switch {
	case e.Latency >= timeout-timeout/50:
		class = findings.WebhookTimeout
	case e.Latency >= after:
		class = findings.SlowResponse
	}
	_, wasSlow := a.slowSeen[lk]
	if class == findings.Healthy {
		delete(a.slowSeen, lk)
	} else {
		a.slowSeen[lk] = time.Now()
	}
	respond, observe := a.cfg.Output.Response, a.cfg.Output.Latency
	if class == findings.Healthy && !wasSlow {
		// Almost every answer: only its latency is recorded, and no
		// observation is built.
		if respond == nil {
			return nil
		}
		ref, d := w.Ref, e.Latency
		return func() { respond(ref, d) }
	}
	o := answerObservation(w, e, class, after)
	return func() {
		if respond != nil {
			respond(o.Webhook.Ref, o.Evidence.Wire.Latency)
		}
		if observe != nil {
			observe(o)
		}
	}
}

// answerObservation is what an answer of class says, slow after after. A
// function of its own, so that w and e are not moved to the heap for the
// answers that need none of it.
func answerObservation(w callout.Webhook, e handshake.Event, class findings.Class, after time.Duration) findings.Observation {
	o := findings.Observation{Webhook: w, Backend: e.Server, Started: e.Time.Add(-e.Latency), Class: class}
	facts := &findings.WireFacts{Client: e.Client, Phase: findings.PhaseDone, Latency: e.Latency}
	var detail string
	switch class {
	case findings.WebhookTimeout:
		detail = fmt.Sprintf("the backend answered a request from %s after %s, past timeoutSeconds (%ds): the API server had given up", e.Client, e.Latency.Round(time.Millisecond), w.TimeoutSeconds)
	case findings.SlowResponse:
		detail = fmt.Sprintf("the backend answered a request from %s after %s, above the %s threshold (timeoutSeconds %d)", e.Client, e.Latency.Round(time.Millisecond), after, w.TimeoutSeconds)
	default:
		o.Covers = findings.Latency
		detail = fmt.Sprintf("answered in %s", e.Latency.Round(time.Millisecond))
	}
	o.Evidence = findings.Evidence{Source: findings.Kernel, At: e.Time, Detail: detail, Wire: facts}
	return o
}

// judgeTimeout judges a request that waited waited: WebhookTimeout past
// its webhook's timeoutSeconds. Callers hold a.mu.
func (a *Assembler) judgeTimeout(w callout.Webhook, backend netip.AddrPort, p pendingRequest, waited time.Duration, how string) func() {
	budget := time.Duration(w.TimeoutSeconds) * time.Second
	// The client's timer and the wire's differ by a few milliseconds.
	if waited < budget*9/10 || a.cfg.Output.Latency == nil {
		return nil
	}
	a.slowSeen[latencyKey{w.Ref, backend}] = time.Now()
	o := findings.Observation{Webhook: w, Backend: backend, Class: findings.WebhookTimeout, Started: p.at,
		Evidence: findings.Evidence{Source: findings.Kernel, At: p.at.Add(waited),
			Detail: fmt.Sprintf("a request from %s had no answer after %s (timeoutSeconds %d): %s", p.client, waited.Round(time.Millisecond), w.TimeoutSeconds, how),
			Wire:   &findings.WireFacts{Client: p.client, Phase: findings.PhaseDone, Latency: waited}}}
	observe := a.cfg.Output.Latency
	return func() { observe(o) }
}

// lateRequests finds requests that have waited past their webhook's
// timeoutSeconds with the connection still open (HTTP/2: the API server
// resets the stream and keeps the connection). Callers hold a.mu.
func (a *Assembler) lateRequests(now time.Time) []func() {
	var out []func()
	for k, p := range a.pending {
		b := a.backends[k.server]
		late := false
		for _, w := range b.Webhooks {
			if now.Sub(p.at) >= time.Duration(w.TimeoutSeconds)*time.Second {
				late = true
				if f := a.judgeTimeout(w, k.server, p, now.Sub(p.at), "still waiting, connection open"); f != nil {
					out = append(out, f)
				}
			}
		}
		if late {
			delete(a.pending, k)
			if len(a.timedOut) < maxPending {
				a.timedOut[k] = true
			}
		}
	}
	return out
}

// quietLatency resolves the latency findings that went quiet: no slow or
// unanswered request for latencyQuiet (a probe's handshake says nothing of
// the webhook's answers). Callers hold a.mu.
func (a *Assembler) quietLatency(now time.Time) []func() {
	observe := a.cfg.Output.Latency
	var out []func()
	for lk, at := range a.slowSeen {
		if now.Sub(at) < latencyQuiet {
			continue
		}
		delete(a.slowSeen, lk)
		var w callout.Webhook
		for _, bw := range a.backends[lk.backend].Webhooks {
			if bw.Ref == lk.ref {
				w = bw
			}
		}
		if observe == nil || w.Ref != lk.ref {
			continue
		}
		o := findings.Observation{Webhook: w, Backend: lk.backend, Class: findings.Healthy, Covers: findings.Latency,
			Evidence: findings.Evidence{Source: findings.Kernel, At: now, Detail: fmt.Sprintf("no slow or unanswered request for %s", latencyQuiet)}}
		out = append(out, func() { observe(o) })
	}
	return out
}
