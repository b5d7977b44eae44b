package agent

import (
	"net/netip"
	"slices"
	"time"

	"github.com/hookscope/hookscope/bpf/handshake"
)

// Call is one connection to a webhook backend as the kernel saw it, from
// the client's SYN to the end of its handshake: done, rejected by the
// client, refused, reset, or closed before it was done. The API server
// keeps HTTP/2 connections to a webhook open and sends many reviews over
// each, so the handshake, not each review, is what a Call covers.
type Call struct {
	Client   netip.AddrPort
	Server   netip.AddrPort
	Webhooks []WebhookRef // every webhook this backend serves
	Pod      *PodRef
	Start    time.Time
	End      time.Time
	Outcome  string // done, rejected, refused, reset, closed
	TLS13    bool
	Cipher   uint16
	Events   []CallEvent
}

// CallEvent is one step of a Call.
type CallEvent struct {
	Name   string // the kernel event's kind: connect, client_hello, ...
	At     time.Time
	Detail string
}

// Failed reports whether the call ended without a completed handshake.
func (c Call) Failed() bool { return c.Outcome != "done" }

// CallSink receives each finished Call.
type CallSink interface {
	ReportCall(c Call)
}

// callKey identifies a connection.
type callKey struct{ client, server netip.AddrPort }

const (
	maxOpenCalls = 4096 // connections followed at once; more are not followed
	// ownProbeGrace: a probe registers its address once it returns, a
	// moment after its events arrive; calls wait this long before they
	// are told apart from the probes and reported.
	ownProbeGrace = 300 * time.Millisecond
)

// trackCall folds a kernel event into its Call and reports the Call when
// its handshake ends. Callers hold a.mu.
func (a *Agent) trackCall(e handshake.Event, detail string) {
	if len(a.callSinks) == 0 {
		return
	}
	k := callKey{e.Client, e.Server}
	c := a.calls[k]
	if c == nil {
		if _, done := a.callsDone[k]; done && e.Kind != handshake.KindConnect {
			return // the tail of a call already reported (a reset after a rejection)
		}
		if len(a.calls) >= maxOpenCalls {
			a.callsDropped++
			return
		}
		start := e.FlowStart
		if start.IsZero() {
			start = e.Time
		}
		c = &Call{Client: e.Client, Server: e.Server, Start: start}
		a.calls[k] = c
	}
	c.Events = append(c.Events, CallEvent{Name: e.Kind.String(), At: e.Time, Detail: detail})
	switch e.Kind {
	case handshake.KindServerHello:
		c.TLS13, c.Cipher = e.TLS13, e.Cipher
	case handshake.KindHandshakeDone:
		c.Outcome = "done"
	case handshake.KindHandshakeRejected:
		c.Outcome = "rejected"
	case handshake.KindRefused:
		c.Outcome = "refused"
	case handshake.KindReset:
		c.Outcome = "reset"
	case handshake.KindClose:
		c.Outcome = "closed"
	}
	if c.Outcome == "" {
		return
	}
	c.End = e.Time
	delete(a.calls, k)
	a.callsDone[k] = time.Now()
	c.Webhooks = slices.Clone(a.byBackend[e.Server])
	for _, ref := range c.Webhooks {
		for _, b := range a.webhooks[ref].Backends {
			if b.Addr == e.Server && c.Pod == nil {
				c.Pod = b.Pod
			}
		}
	}
	call := *c
	time.AfterFunc(ownProbeGrace, func() {
		a.mu.Lock()
		_, own := a.ownProbes[call.Client]
		a.mu.Unlock()
		if own {
			return
		}
		for _, s := range a.callSinks {
			s.ReportCall(call)
		}
	})
}
