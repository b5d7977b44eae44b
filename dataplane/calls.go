package dataplane

import (
	"fmt"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/bpf/tcpstate"
	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// foldCall folds a kernel event into its Call, and queues the Call for the
// output when its handshake ends. It returns the call as it stands (nil
// when it is not followed). Callers hold a.mu.
func (a *Assembler) foldCall(k connKey, e handshake.Event, after *[]func()) *callout.Call {
	c := a.calls[k]
	if c == nil {
		if ended, done := a.done[k]; done && !e.FlowStart.After(ended) {
			// The tail of a call already reported (a reset after a
			// rejection). A connection that began after it ended is a new
			// one on the same client port.
			return nil
		}
		if !startsCall(e.Kind) {
			return nil // a connection opened before it was traced: no handshake to follow
		}
		if len(a.calls) >= maxOpenCalls {
			return nil
		}
		start := e.FlowStart
		if start.IsZero() {
			start = e.Time
		}
		// A call has about seven steps: room for them at once.
		c = &callout.Call{Client: e.Client, Server: e.Server, Start: start, Events: make([]callout.CallEvent, 0, 8)}
		if !e.FlowStart.IsZero() {
			// The kernel counts a SYN and sends no event for it: the
			// call's first step is its connection's start.
			c.Events = append(c.Events, callout.CallEvent{Name: handshake.KindConnect.String(), At: e.FlowStart})
		}
		a.calls[k] = c
	}
	c.Events = append(c.Events, callout.CallEvent{Name: e.Kind.String(), At: e.Time, Detail: stepDetail(e)})
	switch e.Kind {
	case handshake.KindServerHello:
		c.TLSVersion, c.Cipher = tlsVersion(e), e.Cipher
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
		return c
	}
	c.End = e.Time
	delete(a.calls, k)
	if c.Outcome == "closed" || c.Outcome == "rejected" {
		// The connection goes on in the kernel, before its handshake's
		// end: a late ServerHello could still come and be read as a new
		// call. After a handshake done, a reset or a refusal no event
		// can start one (the kernel's phase is past the hellos, or its
		// flow is gone), so nothing is kept for the calls that succeed.
		a.done[k] = e.Time
	}
	b := a.backends[e.Server]
	for _, w := range b.Webhooks {
		c.Webhooks = append(c.Webhooks, w.Ref)
	}
	c.Pod = b.Pod
	if out := a.cfg.Output.Call; out != nil {
		// No longer in a.calls, c changes no more: its steps need no copy.
		*after = append(*after, func() { out(*c) })
	}
	return c
}

// startsCall reports whether an event of kind can begin a call.
func startsCall(k handshake.EventKind) bool {
	switch k {
	case handshake.KindClientHello, handshake.KindServerHello, handshake.KindRefused, handshake.KindHandshakeRejected:
		return true
	}
	return false
}

// tlsVersion is the version the server chose, from its hello's
// supported_versions (or legacy version) when its bytes were copied;
// otherwise from what the kernel read of it: the 1.3 cipher flag, else its
// legacy version. Empty when none says.
func tlsVersion(e handshake.Event) string {
	if e.Hello != nil && len(e.Hello.Versions) == 1 {
		return handshake.VersionName(e.Hello.Versions[0])
	}
	if e.TLS13 {
		return "1.3"
	}
	if e.TLSVersion != 0 {
		return handshake.VersionName(e.TLSVersion)
	}
	return ""
}

// failedCall is the wire's account of a failed call, when e ends one.
func failedCall(e handshake.Event, c *callout.Call) (findings.FailedCall, bool) {
	if !failsCall(e) {
		return findings.FailedCall{}, false // most events: nothing built
	}
	facts := &findings.WireFacts{Client: e.Client, Phase: phase(e.Phase), EncryptedAlert: e.EncryptedAlert}
	if c != nil {
		facts.TLSVersion = c.TLSVersion
	}
	if facts.TLSVersion == "" && e.TLS13 {
		facts.TLSVersion = "1.3"
	}
	var detail string
	switch {
	case e.Kind == handshake.KindHandshakeRejected:
		if e.AlertLevel != 0 {
			facts.Alert = &findings.TLSAlert{Level: e.AlertLevel, Description: e.AlertDescription}
		}
		detail = describeRejection(e, facts)
	case (e.Kind == handshake.KindClose || e.Kind == handshake.KindReset) && !e.FromServer && e.Phase == handshake.PhaseClientHello:
		detail = fmt.Sprintf("client %s gave up after its ClientHello: the backend never sent its first flight", e.Client)
	case (e.Kind == handshake.KindClose || e.Kind == handshake.KindReset) && e.FromServer && e.Phase == handshake.PhaseClientHello:
		detail = fmt.Sprintf("the backend closed the connection from %s after its ClientHello without a TLS answer: something other than the webhook takes it (a sidecar or a proxy)", e.Client)
	case e.Kind == handshake.KindRefused:
		facts.Phase = findings.PhaseConnect
		detail = fmt.Sprintf("connection from %s refused: the backend answered the SYN with a reset", e.Client)
	}
	start := e.FlowStart
	if start.IsZero() {
		start = e.Time
	}
	return findings.FailedCall{Backend: e.Server, Started: start,
		Evidence: findings.Evidence{Source: findings.Kernel, At: e.Time, Detail: detail, Wire: facts}}, true
}

// failsCall reports whether e ends a call that failed: the cases
// failedCall describes.
func failsCall(e handshake.Event) bool {
	switch e.Kind {
	case handshake.KindHandshakeRejected, handshake.KindRefused:
		return true
	case handshake.KindClose, handshake.KindReset:
		return e.Phase == handshake.PhaseClientHello
	}
	return false
}

// describeRejection is the sentence for a handshake the client rejected.
func describeRejection(e handshake.Event, f *findings.WireFacts) string {
	switch {
	case f.Alert != nil:
		return fmt.Sprintf("TLS handshake rejected by client %s: %s", e.Client, f.Alert)
	case f.TLSVersion == "1.3" && e.EncryptedAlert:
		return fmt.Sprintf("TLS 1.3 handshake rejected by client %s: encrypted alert right after the server's first flight", e.Client)
	case f.TLSVersion == "1.3":
		return fmt.Sprintf("TLS 1.3 handshake rejected by client %s: closed right after the server's first flight", e.Client)
	default:
		return fmt.Sprintf("TLS handshake rejected by client %s: closed right after the server's first flight", e.Client)
	}
}

// phase names where a handshake stood.
func phase(p handshake.Phase) findings.Phase {
	switch p {
	case handshake.PhaseTCP:
		return findings.PhaseConnect
	case handshake.PhaseClientHello:
		return findings.PhaseClientHello
	case handshake.PhaseServerFlight:
		return findings.PhaseServerHello
	default:
		return findings.PhaseDone
	}
}

// stepDetail is what a call's step says, for the failures.
func stepDetail(e handshake.Event) string {
	if fc, ok := failedCall(e, nil); ok {
		return fc.Evidence.Detail
	}
	return ""
}

// describeTCP is what a TCP tracepoint event adds to a call.
func describeTCP(e tcpstate.Event) string {
	detail := e.Side.String() + " socket"
	switch e.Kind {
	case tcpstate.KindRetransmit:
		detail = fmt.Sprintf("%d retransmissions on the %s socket: packets to or from the backend are lost", e.Retransmits, e.Side)
	case tcpstate.KindResetSent, tcpstate.KindResetReceived, tcpstate.KindRefused:
		if e.ResetReason != "" {
			detail += ", reason " + e.ResetReason
		}
	}
	return detail
}
