package agent

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/hookscope/hookscope/apisignals"
	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/dataplane"
	"github.com/hookscope/hookscope/findings"
)

// pathSlack widens the window in which a failed call's SYN would have
// arrived: the API server's clock, and an Event's one-second resolution.
const pathSlack = 2 * time.Second

// peerTimeout bounds one read of another node's ledger.
const peerTimeout = 2 * time.Second

// PeerLedger reads the SYN ledger of the agent on node for backend.
type PeerLedger func(ctx context.Context, node string, backend netip.AddrPort) (dataplane.Ledger, error)

// Ledger is what this agent's kernel knows of the connections to backend;
// ok is false when it does not trace it.
func (a *Agent) Ledger(backend netip.AddrPort) (dataplane.Ledger, bool) {
	dp := a.dataPlane()
	t, ok := tracing(dp, backend)
	if !ok {
		return dataplane.Ledger{}, false
	}
	arr, err := dp.Arrivals(backend)
	if err != nil {
		a.cfg.Logger.Warn("reading the SYN ledger", "backend", backend.String(), "err", err)
		return dataplane.Ledger{}, false
	}
	open, closed := a.asm.Connections(backend)
	return dataplane.Ledger{Node: a.cfg.NodeName, Traced: true, TracedSince: t.Since, Arrivals: arr, Open: open, LastClosed: closed}, true
}

// ledgerOf reads b's ledger here, or from the agent on b's node.
func (a *Agent) ledgerOf(ctx context.Context, b callout.Backend) (dataplane.Ledger, bool) {
	if a.isLocal(b) {
		return a.Ledger(b.Addr)
	}
	if a.cfg.PeerLedger == nil || b.Pod == nil || b.Pod.Node == "" {
		return dataplane.Ledger{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	l, err := a.cfg.PeerLedger(ctx, b.Pod.Node, b.Addr)
	if err != nil {
		a.cfg.Logger.Debug("reading another node's SYN ledger", "node", b.Pod.Node, "backend", b.Addr.String(), "err", err)
		return dataplane.Ledger{}, false
	}
	return l, l.Traced
}

// judgePath reads, for calls the API server reports failing without an
// answer, what reached the webhook's backends on their nodes: no SYN at
// all while the node's probes connect (the packets stop before the node),
// or SYNs the pod never answered (they stop at the pod). The Lease holder
// runs it before the signal reaches the store, so the signal becomes this
// finding's evidence.
func (a *Agent) judgePath(f apisignals.Failure) {
	switch f.Class {
	case findings.WebhookTimeout, findings.ConnectTimeout, findings.CallsFailing, "":
	default:
		return // the cause is known, and it is not the path
	}
	w, ok := a.WebhookByName(f.Webhook)
	if !ok {
		return
	}
	timeout := time.Duration(max(w.TimeoutSeconds, 1)) * time.Second
	for _, b := range w.Backends {
		if !b.Ready {
			continue
		}
		l, ok := a.ledgerOf(context.Background(), b)
		// A connection the API server holds open needs no SYN: the ledger
		// cannot speak for calls on it. Nor can a ledger begun after the
		// call can have failed: a call that failed fast (a rejected
		// certificate) left no trace before tracing began, as when a new
		// pod takes over an address and the agent attaches to its
		// interface after the API server called it.
		if !ok || l.Open > 0 || l.TracedSince.After(f.Earliest()) {
			continue
		}
		from := callWindow(f, timeout, l.LastClosed)
		pod, node := podOf(b)
		arr, _ := l.Arrivals.FromAPIServer(a.cfg.APIServer)
		verdict, ok := arr.Judge(from, pod, node)
		if !ok {
			continue
		}
		verdict = a.withPolicy(b, verdict)
		a.store.Observe(findings.Observation{Webhook: w, Backend: b.Addr, Class: verdict.Class, Started: from,
			Evidence: findings.Evidence{Source: findings.Kernel, At: time.Now(), Detail: verdict.Detail}})
	}
}

// callWindow is when the failed call f's SYN would have reached the
// backend: from the earliest the call can have begun, its timeout before
// the earliest it can have failed. A call ends its connection no sooner
// than it fails (a refused handshake closes it as the call fails, a call
// that timed out holds it to the end), so a connection that closed before
// that was not the failed call's own: with none open since, the call
// needed a new one, and the window starts at that close (the SYNs before
// it were answered, for calls that did not fail). A connection that closed
// later may have been the call's: its SYN stays in the window.
func callWindow(f apisignals.Failure, timeout time.Duration, lastClosed time.Time) time.Time {
	earliest := f.Earliest()
	from := earliest.Add(-timeout - pathSlack)
	if lastClosed.After(from) && lastClosed.Before(earliest.Add(-closeSlack)) {
		return lastClosed
	}
	return from
}

// closeSlack is how long before the earliest a failed call can have
// failed a connection must have closed not to be the call's own: the
// kernel's clock and the API server's, and the moment between a call's
// connection closing and the API server counting the call as failed.
const closeSlack = 500 * time.Millisecond

// pathRecovered resolves a finding on where the API server's packets stop
// once a SYN from the API server reaches the backend again and is
// answered: a probe from the node never speaks for the API server's path.
// A DroppedAtPod finding resolves so only when the ledger tells the API
// server's SYNs apart (its addresses are the kubernetes Service's
// endpoints): a kubelet's readiness probe is answered while the API
// server's SYNs are dropped. Otherwise this node's probe resolves its own
// finding; the Lease holder's verdict about a backend on another node
// stays open until that backend is gone.
func (a *Agent) pathRecovered() {
	for _, class := range []findings.Class{findings.BlockedBeforeNode, findings.DroppedAtPod} {
		for _, f := range a.store.OpenOfClass(class) {
			a.pathRecoveredFor(f)
		}
	}
}

// pathRecoveredFor resolves f if the API server's SYNs are answered again.
func (a *Agent) pathRecoveredFor(f findings.Finding) {
	if !f.Backend.IsValid() {
		return
	}
	w, ok := a.Webhook(f.Webhook)
	if !ok {
		return
	}
	b, ok := w.Backend(f.Backend)
	if !ok {
		return
	}
	l, ok := a.ledgerOf(context.Background(), b)
	if !ok {
		return
	}
	arr, identified := l.Arrivals.FromAPIServer(a.cfg.APIServer)
	if (f.Class == findings.DroppedAtPod && !identified) || !arr.Clients.LastAnswer.After(f.FirstSeen) {
		return
	}
	a.store.Observe(findings.Observation{Webhook: w, Backend: f.Backend, Class: findings.Healthy, Covers: f.Class.Aspect(),
		Evidence: findings.Evidence{Source: findings.Kernel, At: time.Now(),
			Detail: fmt.Sprintf("the API server's connections reach the pod again (a SYN from %s answered at %s)",
				arr.Clients.LastAnswerTo, arr.Clients.LastAnswer.Format("15:04:05.000"))}})
}

// droppedAtPod re-reads a probe whose connection was never answered: when
// its SYNs reached the pod's interface, or a NetworkPolicy shuts callers
// out of it, the packets stop at the pod.
func (a *Agent) droppedAtPod(backend callout.Backend, start time.Time) (dataplane.Verdict, bool) {
	l, ok := a.Ledger(backend.Addr)
	if !ok {
		return dataplane.Verdict{}, false
	}
	pod, node := podOf(backend)
	v, ok := l.Arrivals.JudgeProbe(start, pod, node)
	if v2 := a.withPolicy(backend, v); v2.Class == findings.DroppedAtPod {
		return v2, true // the SYNs may stop on the node, before the pod's interface
	}
	return v, ok
}

// podOf names a backend's pod and node for the evidence.
func podOf(b callout.Backend) (pod, node string) {
	if b.Pod == nil {
		return b.Addr.Addr().String(), "this node"
	}
	node = b.Pod.Node
	if node == "" {
		node = "this node"
	}
	return b.Pod.Namespace + "/" + b.Pod.Name, node
}
