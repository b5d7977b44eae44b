package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/dataplane"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/probe"
)

// task is one item of the agent's queue: one probe, or hand the local
// backends to the data plane.
type task struct {
	target probeTarget
	sync   bool
}

// work takes tasks off the queue until it shuts down.
func (a *Agent) work(ctx context.Context) {
	for {
		t, quit := a.queue.Get()
		if quit {
			return
		}
		if t.sync {
			a.syncBackends(t)
		} else {
			a.probe(ctx, t)
		}
		a.queue.Done(t)
	}
}

// probeLoop probes every local backend each probe interval, and hands the
// backends to the data plane again (a restarted pod gets a new veth).
func (a *Agent) probeLoop(ctx context.Context) {
	for {
		// Jitter (+-10%) so the agents of a cluster do not probe in step.
		jitter := time.Duration(rand.Int64N(int64(a.cfg.ProbeInterval)/5+1)) - a.cfg.ProbeInterval/10
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.ProbeInterval + jitter):
		}
		a.queue.Add(task{sync: true})
		for t := range a.view.Load().targets {
			if t.backend.IsValid() { // URLs: the Lease holder's object loop
				a.queue.Add(task{target: t})
			}
		}
	}
}

// onFailedCall: the kernel saw a call fail. The failure is evidence now;
// a probe of the backend, for each webhook it serves, names the reason.
// A backend that goes on failing is probed less and less often (down to
// once per probe interval).
func (a *Agent) onFailedCall(b dataplane.Backend, fc findings.FailedCall) {
	a.store.NoteFailedCall(fc)
	for _, w := range b.Webhooks {
		a.queue.AddRateLimited(task{target: a.targetOf(w, b.Addr)})
	}
}

// onHandshakeDone: a handshake completed on a backend with an open
// finding: it may have recovered.
func (a *Agent) onHandshakeDone(b dataplane.Backend) {
	if !a.store.HasOpen(b.Addr) {
		return
	}
	for _, w := range b.Webhooks {
		a.queue.AddRateLimited(task{target: a.targetOf(w, b.Addr)})
	}
}

// probe probes one target as the API server calls it and hands the result
// to the store, for every webhook that shares the target.
func (a *Agent) probe(ctx context.Context, t task) {
	v := a.view.Load()
	refs, why := v.targets[t.target], ""
	if len(refs) == 0 && a.leading.Load() {
		covered, _ := a.agentNodes()
		if why = untraced(v.remoteNode[t.target], covered); why != "" {
			refs = v.remote[t.target]
		}
	}
	if len(refs) == 0 {
		a.queue.Forget(t)
		return
	}
	w := v.webhooks[refs[0]]
	if !t.target.backend.IsValid() {
		if a.leading.Load() {
			a.probeURL(ctx, t, w)
		}
		return
	}
	o := probe.Options{ServerName: t.target.serverName, CABundle: w.CABundle, Timeout: a.cfg.ProbeTimeout, Own: a.own, CertHorizon: a.cfg.CertHorizon,
		SkipVerify: t.target.skipVerify}
	if w.ReviewProbed(a.cfg.ReviewProbe) { // --review-probe, or its configuration's annotation
		o.Review = probe.ReviewOf(w, t.target.path, a.asm.SlowAfter(w))
	}
	r := probe.Run(ctx, t.target.backend, o)
	if a.restarting(w.Ref, t.target.backend, r.Class) {
		// What a pod restarting with the fix looks like (its port closed,
		// a handshake cut): the open finding gives way only if it lasts.
		select {
		case <-ctx.Done():
		case <-time.After(confirmAfter):
			r = probe.Run(ctx, t.target.backend, o)
		}
	}
	if ctx.Err() != nil {
		return
	}
	a.cfg.Logger.Debug("probe", "webhooks", len(refs), "first", refs[0].String(), "result", r.String())
	for _, ref := range refs {
		if w, ok := v.webhooks[ref]; ok {
			a.observeProbe(t, w, r, why)
		}
	}
}

// confirmAfter is how long after a probe that failed as a restarting pod
// does the agent probes again before the open finding changes class.
const confirmAfter = 250 * time.Millisecond

// restarting reports whether class is how a probe fails while the pod
// restarts (connection refused, the handshake reset or cut short) and an
// open finding about the backend names another failure: a certificate
// fixed by a restart must not read "now TLSHandshakeFailed" on the way
// to resolving, and its Normal Event must name what was fixed.
func (a *Agent) restarting(ref callout.Ref, backend netip.AddrPort, class findings.Class) bool {
	switch class {
	case findings.ConnectionRefused, findings.TLSHandshakeFailed, findings.HandshakeTimeout:
	default:
		return false
	}
	open := a.store.BackendClass(ref, backend)
	return open != "" && open != class
}

// observeProbe hands a probe's result, for webhook w, to the store and
// the metrics.
func (a *Agent) observeProbe(t task, w callout.Webhook, r probe.Result, untraced string) {
	k := probeKey{w.Ref, t.target.backend}
	if a.cfg.Observer != nil {
		a.cfg.Observer.ObserveProbe(k.ref, k.backend, r.Class, r.Handshake, r.Leaf)
	}
	if r.Class == findings.Healthy {
		a.queue.Forget(t)
	}
	covers := findings.Connection
	if r.Response > 0 {
		covers |= findings.Latency
	}
	detail := r.Detail
	if b, ok := w.Backend(k.backend); ok && r.Class == findings.ConnectTimeout && untraced == "" {
		if v, ok := a.droppedAtPod(b, r.Start); ok {
			r.Class, detail = v.Class, detail+"; "+v.Detail
		}
	}
	if r.Class == findings.Healthy && detail == "" {
		detail = fmt.Sprintf("handshake with %s verifies (%s)", r.Target, r.Handshake.Round(time.Microsecond))
	}
	a.store.Observe(findings.Observation{
		Webhook: w, Backend: k.backend, Class: r.Class, Covers: covers, Started: r.Start,
		Evidence:        findings.Evidence{Source: findings.Probe, At: r.Start, Detail: detail},
		Certificate:     r.Leaf,
		OpenConnections: a.openConnections(k.backend, r.Class),
		Untraced:        untraced,
	})
}

// openSettle is how long a count of open connections is given to catch up
// with closes the kernel reported but the agent has not read yet (routine
// events wait up to the ring buffers' 50 ms poll): a certificate swapped
// as its server closes the connections must not read "writes pass on open
// connections".
const openSettle = 120 * time.Millisecond

// openConnections is how many connections the API server holds open to
// backend, when it matters: the class fails only new connections.
func (a *Agent) openConnections(backend netip.AddrPort, class findings.Class) int {
	if !class.FailsNewConnections() || !backend.IsValid() {
		return 0
	}
	if a.asm.OpenConnections(backend) == 0 {
		return 0
	}
	time.Sleep(openSettle)
	return a.asm.OpenConnections(backend)
}

// probeURL probes a webhook that calls a URL, as the API server would:
// the URL's host resolved, TLS with that host as the server name. Its
// finding is about the webhook (no backend of a Service).
func (a *Agent) probeURL(ctx context.Context, t task, w callout.Webhook) {
	target, err := probe.ResolveURL(ctx, w.URL)
	var r probe.Result
	if err != nil {
		r = probe.Result{Start: time.Now(), Class: findings.Unreachable, Detail: err.Error()}
	} else {
		r = probe.Run(ctx, target, probe.Options{ServerName: w.ServerName(), CABundle: w.CABundle, Timeout: a.cfg.ProbeTimeout, Own: a.own, CertHorizon: a.cfg.CertHorizon})
	}
	if ctx.Err() != nil {
		return
	}
	a.cfg.Logger.Debug("probe", "webhook", w.Ref.String(), "url", w.URL, "result", r.String())
	a.observeProbe(t, w, r, "")
}

// syncBackends hands the local backends to the data plane. A backend whose
// route is not there yet (the CNI has not set up the pod's network) fails;
// it is retried with backoff (5 ms up to the probe interval) until it
// works.
func (a *Agent) syncBackends(t task) {
	v := a.view.Load()
	a.asm.SetBackends(v.backends)
	dp := a.dataPlane()
	if dp == nil {
		return
	}
	err := dp.SetBackends(v.backends)
	if err == nil {
		if a.queue.NumRequeues(t) > 0 {
			a.cfg.Logger.Info("tracing every local backend again")
		}
		a.queue.Forget(t)
		return
	}
	if a.queue.NumRequeues(t) == 0 {
		a.cfg.Logger.Warn("cannot trace some backends yet; retrying", "err", err)
	}
	a.queue.AddRateLimited(t)
}
