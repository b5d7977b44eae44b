// Package dataplane turns the kernel's events on webhook backends' connections
// into what the rest of hookscope reads: calls (one per connection's
// handshake, for spans and metrics), failed calls (typed wire facts: the
// handshake's phase, TLS version, alert), and the webhook's latency
// (SlowResponse, WebhookTimeout) as findings observations. It attaches the
// programs of bpf/handshake and bpf/tcpstate to the interfaces the host
// routes backends through.
//
// The Assembler is the part that needs no kernel: it folds decoded events
// and can be tested with made-up ones.
package dataplane

import (
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"sync"
	"time"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/bpf/tcpstate"
	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// Backend is a backend the data plane traces, with the webhooks it serves.
type Backend struct {
	Addr     netip.AddrPort
	Webhooks []callout.Webhook
	Pod      *callout.PodRef
}

// Tracing is how the kernel traces one backend.
type Tracing struct {
	// Pod is the pod the backend was when tracing began at its interface:
	// when a new pod takes an address over, the kernel traces the old
	// pod's interface until the agent attaches to the new one.
	Pod *callout.PodRef
	// Since is when tracing began at the backend's interface: the kernel
	// saw none of the connections before.
	Since time.Time
}

// SamePod reports whether the kernel traces the address for pod (nil: an
// address that is not a pod's, such as a URL served on the node).
func (t Tracing) SamePod(pod *callout.PodRef) bool { return samePod(t.Pod, pod) }

// samePod reports whether a and b name the same pod, or are both nil.
func samePod(a, b *callout.PodRef) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Namespace == b.Namespace && a.Name == b.Name
}

// Output receives what the Assembler makes of the events. Its functions
// are called without the Assembler's lock held; nil ones are skipped.
type Output struct {
	// FailedCall: the kernel saw a call to the backend fail: the client
	// rejected the handshake, gave up after its ClientHello, or the backend
	// refused the connection.
	FailedCall func(b Backend, fc findings.FailedCall)
	// HandshakeDone: a handshake to the backend completed (a backend with
	// an open finding may have recovered).
	HandshakeDone func(b Backend)
	// Latency: the wire's judgement of how fast a webhook answers.
	Latency func(o findings.Observation)
	// Call: a connection's handshake ended.
	Call func(c callout.Call)
	// Event counts every event by kind ("connect", "tcp_syn", ...).
	Event func(kind string)
	// Response is a webhook's time to answer a request, as the wire saw it.
	Response func(ref callout.Ref, d time.Duration)
}

// Config tunes the Assembler.
type Config struct {
	// IsOwn reports whether a connection is the agent's own probe's:
	// those are left out of everything.
	IsOwn func(client, server netip.AddrPort) bool
	// SlowThreshold: an answer this slow, or half the webhook's
	// timeoutSeconds if that is less, is SlowResponse.
	SlowThreshold time.Duration
	Output        Output
	Log           *slog.Logger
}

// Bounds on what the Assembler follows.
const (
	maxOpenCalls = 4096 // connections followed at once; more are not followed
	maxPending   = 8192 // requests waiting for an answer
	// doneTTL is how long a call that ended before its handshake did is
	// remembered, so its tail (a late hello) is not taken for a new call.
	doneTTL = time.Minute
)

// Assembler folds kernel events into calls, failed calls and latency.
type Assembler struct {
	cfg Config

	mu       sync.Mutex
	backends map[netip.AddrPort]Backend
	calls    map[connKey]*callout.Call
	done     map[connKey]time.Time
	open     map[netip.AddrPort]map[connKey]struct{} // established connections per backend
	pending  map[connKey]pendingRequest              // requests the backend has not answered yet
	timedOut map[connKey]bool                        // connections whose outstanding request timed out
	slowSeen map[latencyKey]time.Time                // when the wire last saw a slow or unanswered request
	closed   map[netip.AddrPort]time.Time            // when a connection to the backend last ended
	hellos   map[connKey]pendingRequest              // ClientHellos the backend has not answered yet
}

// connKey identifies a connection.
type connKey struct{ client, server netip.AddrPort }

// NewAssembler returns an Assembler with no backends.
func NewAssembler(cfg Config) *Assembler {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.SlowThreshold <= 0 {
		cfg.SlowThreshold = time.Second
	}
	if cfg.IsOwn == nil {
		cfg.IsOwn = func(netip.AddrPort, netip.AddrPort) bool { return false }
	}
	return &Assembler{
		cfg:      cfg,
		backends: map[netip.AddrPort]Backend{},
		calls:    map[connKey]*callout.Call{},
		done:     map[connKey]time.Time{},
		open:     map[netip.AddrPort]map[connKey]struct{}{},
		pending:  map[connKey]pendingRequest{},
		timedOut: map[connKey]bool{},
		slowSeen: map[latencyKey]time.Time{},
		closed:   map[netip.AddrPort]time.Time{},
		hellos:   map[connKey]pendingRequest{},
	}
}

// SetOutput says where the Assembler reports; call it before the first
// event.
func (a *Assembler) SetOutput(o Output) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cfg.Output = o
}

// SetBackends replaces the backends whose events are folded. What it
// held of the connections to a backend no longer traced, or to an address
// another pod took over, goes: the old pod's connections ended with its
// network, unseen, and their unanswered requests must not read as the new
// pod's stalls.
func (a *Assembler) SetBackends(bs []Backend) {
	m := make(map[netip.AddrPort]Backend, len(bs))
	for _, b := range bs {
		m[b.Addr] = b
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	gone := map[netip.AddrPort]bool{}
	for addr, old := range a.backends {
		if b, ok := m[addr]; !ok || !samePod(old.Pod, b.Pod) {
			gone[addr] = true
		}
	}
	a.backends = m
	if len(gone) == 0 {
		return
	}
	for addr := range gone {
		delete(a.open, addr)
		delete(a.closed, addr)
	}
	forgetConnections(a.pending, gone)
	forgetConnections(a.hellos, gone)
	forgetConnections(a.calls, gone)
	forgetConnections(a.done, gone)
	forgetConnections(a.timedOut, gone)
}

// forgetConnections deletes from m the connections to the servers gone.
func forgetConnections[V any](m map[connKey]V, gone map[netip.AddrPort]bool) {
	maps.DeleteFunc(m, func(k connKey, _ V) bool { return gone[k.server] })
}

// OpenConnections is how many connections to backend have completed their
// handshake and not closed: the API server's kept-alive connections.
func (a *Assembler) OpenConnections(backend netip.AddrPort) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.open[backend])
}

// Connections is how many connections to backend are open, and when the
// last one ended (zero if none did while traced): a call after that, with
// none open, needed a new connection, so its SYN would have reached the
// backend's interface.
func (a *Assembler) Connections(backend netip.AddrPort) (open int, lastClosed time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.open[backend]), a.closed[backend]
}

// HandleTLS folds one event of the handshake program.
func (a *Assembler) HandleTLS(e handshake.Event) {
	if a.cfg.IsOwn(e.Client, e.Server) {
		return
	}
	var after []func() // what to do once a.mu is released
	a.mu.Lock()
	b, known := a.backends[e.Server]
	k := connKey{e.Client, e.Server}
	call := a.foldCall(k, e, &after)
	a.trackOpen(k, e)
	done := known && e.Kind == handshake.KindHandshakeDone
	if known {
		if fc, ok := failedCall(e, call); ok && a.cfg.Output.FailedCall != nil {
			after = append(after, func() { a.cfg.Output.FailedCall(b, fc) })
		}
		a.helloEvent(k, e)
		a.latencyEvent(b, k, e, &after)
	}
	handshakeDone := a.cfg.Output.HandshakeDone
	a.mu.Unlock()
	if done && handshakeDone != nil {
		handshakeDone(b)
	}
	if e.Kind != handshake.KindRequest && e.Kind != handshake.KindResponse && a.cfg.Log.Enabled(context.Background(), slog.LevelDebug) {
		a.cfg.Log.Debug("wire", "kind", e.Kind.String(), "client", e.Client, "server", e.Server, "phase", uint8(e.Phase), "alert", e.AlertDescription, "known", known)
	}
	if a.cfg.Output.Event != nil {
		a.cfg.Output.Event(e.Kind.String())
	}
	for _, f := range after {
		f()
	}
}

// trackOpen keeps the set of established connections per backend.
// Callers hold a.mu.
func (a *Assembler) trackOpen(k connKey, e handshake.Event) {
	switch e.Kind {
	case handshake.KindHandshakeDone:
		if _, ok := a.backends[k.server]; !ok {
			return
		}
		if a.open[k.server] == nil {
			a.open[k.server] = map[connKey]struct{}{}
		}
		if len(a.open[k.server]) < maxOpenCalls {
			a.open[k.server][k] = struct{}{}
		}
	case handshake.KindClose, handshake.KindReset, handshake.KindRefused, handshake.KindHandshakeRejected:
		a.closeLocked(k, e.Time)
	}
}

// closeLocked notes that connection k ended at. Callers hold a.mu.
func (a *Assembler) closeLocked(k connKey, at time.Time) {
	if _, ok := a.open[k.server][k]; !ok {
		return
	}
	delete(a.open[k.server], k)
	if at.After(a.closed[k.server]) {
		a.closed[k.server] = at
	}
}

// HandleTCP folds one event of the TCP tracepoints: retransmissions and
// resets during a call's handshake become steps of the call; every event
// is counted.
func (a *Assembler) HandleTCP(e tcpstate.Event) {
	if a.cfg.IsOwn(e.Client, e.Server) {
		return
	}
	kind := tcpKindName(e.Kind)
	a.mu.Lock()
	if c := a.calls[connKey{e.Client, e.Server}]; c != nil && e.Kind != tcpstate.KindSYN && e.Kind != tcpstate.KindEstablished {
		c.Events = append(c.Events, callout.CallEvent{Name: kind, At: e.Time, Detail: describeTCP(e)})
	}
	if e.Kind == tcpstate.KindClose {
		a.closeLocked(connKey{e.Client, e.Server}, e.Time)
	}
	a.mu.Unlock()
	if a.cfg.Output.Event != nil {
		a.cfg.Output.Event(kind)
	}
}

// tcpKindNames are the TCP events' names in Output.Event, made once
// rather than for each event.
var tcpKindNames = func() (names [16]string) {
	for k := range names {
		names[k] = "tcp_" + tcpstate.EventKind(k).String()
	}
	return names
}()

func tcpKindName(k tcpstate.EventKind) string {
	if int(k) < len(tcpKindNames) {
		return tcpKindNames[k]
	}
	return "tcp_" + k.String()
}

// Tick judges the requests that have waited past their webhook's
// timeoutSeconds with the connection still open, resolves latency
// findings that went quiet, and forgets old state. Call it every
// PendingCheck while it returns more: false says nothing waits for its
// time until the next event.
func (a *Assembler) Tick(now time.Time) (more bool) {
	a.mu.Lock()
	for k, at := range a.done {
		if now.Sub(at) > doneTTL {
			delete(a.done, k)
		}
	}
	after := a.stalls(now)
	after = append(after, a.lateRequests(now)...)
	after = append(after, a.quietLatency(now)...)
	more = len(a.done)+len(a.hellos)+len(a.pending)+len(a.slowSeen) > 0
	a.mu.Unlock()
	for _, f := range after {
		f()
	}
	return more
}
