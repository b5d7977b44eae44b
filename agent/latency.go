package agent

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/hookscope/hookscope/bpf/handshake"
)

// The webhook's own latency as the wire shows it: the kernel reports a
// request (the first application-data record of one, none outstanding) and
// the server's answer with its latency, and on a close how long a request
// still outstanding had waited. An answer slower than the webhook's
// threshold is SlowResponse; a request unanswered past timeoutSeconds is
// WebhookTimeout, whether the client closes (HTTP/1.1) or only resets the
// stream and keeps the connection (HTTP/2, the API server's way).

// maxPending bounds the requests followed at once.
const maxPending = 8192

// pendingCheck is how often unanswered requests are checked.
const pendingCheck = 250 * time.Millisecond

// pendingRequest is a request the backend has not answered yet.
type pendingRequest struct {
	at     time.Time
	client string
}

// onLatencyEvent handles request, response and the pending time of a
// close or reset. Callers hold a.mu; it returns what to apply once the
// lock is released.
func (a *Agent) onLatencyEvent(e handshake.Event) (apply func()) {
	k := callKey{e.Client, e.Server}
	switch e.Kind {
	case handshake.KindRequest:
		if a.pending == nil {
			a.pending = map[callKey]pendingRequest{}
		}
		if len(a.pending) < maxPending {
			a.pending[k] = pendingRequest{at: e.Time, client: e.Client.String()}
		}
		return nil
	case handshake.KindResponse:
		delete(a.pending, k)
		if a.timedOut[k] {
			// The request this answer is timed from was abandoned (HTTP/2
			// resets the stream and keeps the connection): the answer is
			// to a later one, whose start the kernel did not keep.
			delete(a.timedOut, k)
			return nil
		}
		refs := a.byBackend[e.Server]
		return func() {
			for _, ref := range refs {
				a.judgeLatency(ref, e)
			}
		}
	case handshake.KindClose, handshake.KindReset:
		p, had := a.pending[k]
		delete(a.pending, k)
		delete(a.timedOut, k)
		if !had || e.FromServer || e.Latency <= 0 {
			return nil
		}
		refs := a.byBackend[e.Server]
		return func() {
			for _, ref := range refs {
				a.judgeTimeout(ref, e.Server, p, e.Latency, "the client gave up and closed the connection")
			}
		}
	}
	return nil
}

// judgeLatency opens SlowResponse for a slow answer, and resolves a wire
// finding (SlowResponse, WebhookTimeout) when answers are fast again.
func (a *Agent) judgeLatency(ref WebhookRef, e handshake.Event) {
	a.mu.Lock()
	w, ok := a.webhooks[ref]
	cur := a.open[probeKey{ref, e.Server}]
	a.mu.Unlock()
	if !ok {
		return
	}
	if o, ok := a.cfg.Observer.(ResponseObserver); ok {
		o.ObserveResponse(ref, e.Latency)
	}
	after := a.slowAfter(w)
	r := ProbeResult{Target: e.Server, Start: e.Time.Add(-e.Latency), Source: "ebpf"}
	// The wire sees the request a little after the API server starts its
	// timer, and what the backend sends as the API server gives up (a
	// GOAWAY, a close_notify: application data in TLS 1.3) looks like an
	// answer: within 2% of timeoutSeconds it is the timeout (seen: 1.9996 s
	// of 2 s, called SlowResponse).
	timeout := time.Duration(w.TimeoutSeconds) * time.Second
	switch {
	case e.Latency >= timeout-timeout/50:
		r.Class = WebhookTimeout
		r.Detail = fmt.Sprintf("the backend answered a request from %s after %s, past timeoutSeconds (%ds): the API server had given up", e.Client, e.Latency.Round(time.Millisecond), w.TimeoutSeconds)
	case e.Latency >= after:
		r.Class = SlowResponse
		r.Detail = fmt.Sprintf("the backend answered a request from %s after %s, above the %s threshold (timeoutSeconds %d)", e.Client, e.Latency.Round(time.Millisecond), after, w.TimeoutSeconds)
	case cur != nil && (cur.Class == SlowResponse || cur.Class == WebhookTimeout):
		r.Class = Healthy // fast again
		r.Detail = fmt.Sprintf("answered in %s", e.Latency.Round(time.Millisecond))
	default:
		return
	}
	if r.Class != Healthy {
		a.noteLatencyFailure(probeKey{ref, e.Server})
	}
	a.apply(w, probeKey{ref, e.Server}, r)
}

// noteLatencyFailure remembers when the wire last saw a slow or
// unanswered request on k: its finding resolves on a fast answer, or when
// none has been slow for latencyQuiet (a probe's handshake says nothing of
// the webhook's answers).
func (a *Agent) noteLatencyFailure(k probeKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.latencyBad == nil {
		a.latencyBad = map[probeKey]time.Time{}
	}
	a.latencyBad[k] = time.Now()
}

// latencyQuiet is how long a latency finding stays open with no new slow
// or unanswered request and no fast answer either.
const latencyQuiet = time.Minute

// expireLatencyFindings resolves the latency findings that went quiet.
func (a *Agent) expireLatencyFindings(now time.Time) {
	type quiet struct {
		w Webhook
		k probeKey
	}
	var qs []quiet
	a.mu.Lock()
	for k, at := range a.latencyBad {
		if now.Sub(at) < latencyQuiet {
			continue
		}
		delete(a.latencyBad, k)
		if f := a.open[k]; f != nil && (f.Class == SlowResponse || f.Class == WebhookTimeout) {
			qs = append(qs, quiet{a.webhooks[k.webhook], k})
		}
	}
	a.mu.Unlock()
	for _, q := range qs {
		a.apply(q.w, q.k, ProbeResult{Target: q.k.backend, Start: now, Class: Healthy, Source: "ebpf",
			Detail: fmt.Sprintf("no slow or unanswered request for %s", latencyQuiet)})
	}
}

// judgeTimeout opens WebhookTimeout for a request that waited past the
// webhook's timeoutSeconds.
func (a *Agent) judgeTimeout(ref WebhookRef, backend netip.AddrPort, p pendingRequest, waited time.Duration, how string) {
	a.mu.Lock()
	w, ok := a.webhooks[ref]
	a.mu.Unlock()
	budget := time.Duration(w.TimeoutSeconds) * time.Second
	// The client's timer and the wire's differ by a few milliseconds.
	if !ok || waited < budget*9/10 {
		return
	}
	a.noteLatencyFailure(probeKey{ref, backend})
	a.apply(w, probeKey{ref, backend}, ProbeResult{Target: backend, Start: p.at, Class: WebhookTimeout, Source: "ebpf",
		Detail: fmt.Sprintf("a request from %s had no answer after %s (timeoutSeconds %d): %s", p.client, waited.Round(time.Millisecond), w.TimeoutSeconds, how)})
}

// pendingLoop finds requests that have waited past their webhook's
// timeoutSeconds with the connection still open (HTTP/2: the API server
// resets the stream and keeps the connection).
func (a *Agent) pendingLoop(ctx context.Context) {
	t := time.NewTicker(pendingCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		type late struct {
			ref WebhookRef
			k   callKey
			p   pendingRequest
		}
		var lates []late
		a.mu.Lock()
		for k, p := range a.pending {
			for _, ref := range a.byBackend[k.server] {
				w := a.webhooks[ref]
				if now.Sub(p.at) >= time.Duration(w.TimeoutSeconds)*time.Second {
					lates = append(lates, late{ref, k, p})
				}
			}
		}
		for _, l := range lates {
			delete(a.pending, l.k)
			if a.timedOut == nil {
				a.timedOut = map[callKey]bool{}
			}
			if len(a.timedOut) < maxPending {
				a.timedOut[l.k] = true
			}
		}
		a.mu.Unlock()
		for _, l := range lates {
			a.judgeTimeout(l.ref, l.k.server, l.p, now.Sub(l.p.at), "still waiting, connection open")
		}
		a.expireLatencyFindings(now)
	}
}
