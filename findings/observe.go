package findings

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/hookscope/hookscope/callout"
)

// Observation is what a producer found of one webhook: a class (Healthy
// when it works) and the evidence. With a Backend it is about that
// backend (a probe, the wire's latency); without, about the webhook's
// objects.
type Observation struct {
	Webhook callout.Webhook
	Backend netip.AddrPort
	Class   Class
	// Covers is what a Healthy observation verified: a handshake says
	// nothing of how fast the webhook answers. Zero means Connection.
	Covers Aspect
	// Started is when the failing call or probe started.
	Started     time.Time
	Evidence    Evidence
	Certificate *Certificate
	// OpenConnections is how many connections the API server holds open to
	// the backend, as the data plane sees them (0 without one): a class
	// that fails only new connections leaves those carrying writes.
	OpenConnections int
	// Untraced says why no agent traces the backend (it is probed from the
	// agent holding the Lease); empty for a backend this agent traces.
	Untraced string
}

func (o Observation) key() Key {
	if o.Backend.IsValid() && o.Untraced != "" {
		return Key{Webhook: o.Webhook.Ref, Scope: ScopeRemote, Backend: o.Backend}
	}
	if o.Backend.IsValid() {
		return Key{Webhook: o.Webhook.Ref, Scope: ScopeBackend, Backend: o.Backend}
	}
	return Key{Webhook: o.Webhook.Ref, Scope: ScopeObjects}
}

// Observe opens, continues, re-classes or resolves the finding o is about.
func (s *Store) Observe(o Observation) {
	var c change
	s.mu.Lock()
	s.observeLocked(o, &c)
	s.mu.Unlock()
	s.done(c)
}

func (s *Store) observeLocked(o Observation, c *change) {
	k := o.key()
	cur := s.open[k]
	if o.Class == Healthy || o.Class == "" {
		covers := o.Covers
		if covers == 0 {
			covers = Connection
		}
		if cur != nil && cur.Class.Aspect()&covers != 0 {
			s.resolveLocked(cur, o.Evidence, c)
		}
		if covers&Connection != 0 && o.Backend.IsValid() {
			delete(s.wire, o.Backend)
		}
		return
	}
	if cur != nil && cur.Class == o.Class {
		s.continueLocked(cur, o, c)
		return
	}
	if cur != nil && cur.Class.generic() {
		s.reclassLocked(cur, o.Class, o.Webhook, c, o.Evidence)
		return
	}
	if cur != nil { // the reason changed: close the old finding, open a new one
		cur.Superseded = o.Class
		s.resolveLocked(cur, Evidence{Source: o.Evidence.Source, At: o.Evidence.At, Detail: "now " + string(o.Class) + ": " + o.Evidence.Detail}, c)
	}
	f := s.newFinding(o)
	if m, ok := s.wire[o.Backend]; ok && o.Backend.IsValid() && s.cfg.Clock.Since(m.seen) < wireRecent {
		// Calls the kernel saw fail in the last moments are this finding's
		// evidence, and the first of them is when the failure began.
		f.Evidence = append(f.Evidence, m.evidence)
		if m.started.Before(f.FirstFailure) {
			f.FirstFailure = m.started
		}
		if f.Effect == NextConnectionFails {
			f.Effect = EffectOf(o.Webhook, o.Class)
		}
	}
	f.Evidence = append(f.Evidence, o.Evidence)
	s.openLocked(k, f, c)
	s.causeSignalLocked(k, f, o.Webhook, c)
}

// causeSignalLocked gives the webhook's finding opened from the API
// server's counters alone (calls fail) the cause f names, with f's
// evidence: the counters and the cause are one failure, under the
// counters' ID, and the finding says how the cause is known. It resolves
// when that finding (opened under k) does.
func (s *Store) causeSignalLocked(k Key, f Finding, w callout.Webhook, c *change) {
	e := s.open[SignalKey(w.Ref)]
	if e == nil || !e.Class.generic() || f.Class.generic() || !f.Class.FailsCalls() || s.open[k] == nil {
		return
	}
	e.causedBy = &k
	s.reclassLocked(e, f.Class, w, c, f.Evidence...)
}

// newFinding is the finding o opens, without its evidence.
func (s *Store) newFinding(o Observation) Finding {
	now := s.cfg.Clock.Now()
	w := o.Webhook
	f := Finding{
		Class:         o.Class,
		Webhook:       w.Ref,
		FailurePolicy: w.FailurePolicy,
		Effect:        EffectOf(w, o.Class),
		Service:       w.Service,
		URL:           w.URL,
		Backend:       o.Backend,
		FirstFailure:  o.Started,
		FirstSeen:     now,
		Certificate:   o.Certificate,
		Remediation:   Remediation(o.Class, w),
		Untraced:      o.Untraced,
	}
	if f.FirstFailure.IsZero() || f.FirstFailure.After(now) {
		f.FirstFailure = now
	}
	if b, ok := w.Backend(o.Backend); ok {
		f.Pod = b.Pod
	}
	if o.OpenConnections > 0 && o.Class.FailsNewConnections() && f.Effect != FailsOpen {
		f.Effect = NextConnectionFails
	}
	return f
}

// continueLocked is the same failure observed again. The kernel's first
// account of a failed call, and an effect that changed, are reported (the
// finding's span gains them).
func (s *Store) continueLocked(e *entry, o Observation, c *change) {
	e.observed()
	changed := false
	if m, ok := s.wire[o.Backend]; ok && o.Backend.IsValid() && !e.hasSource(Kernel) && s.cfg.Clock.Since(m.seen) < wireRecent {
		changed = addEvidence(e, m.evidence)
	}
	// The connections that carried writes are gone: the next write needs a
	// new one.
	if e.Effect == NextConnectionFails && o.OpenConnections == 0 {
		e.Effect = EffectOf(o.Webhook, o.Class)
		changed = true
	}
	if o.Certificate != nil {
		e.Certificate = o.Certificate
	}
	if changed {
		c.report(cloneFinding(e.Finding))
	}
}

// reclassLocked gives a finding opened on a generic signal its cause.
func (s *Store) reclassLocked(e *entry, class Class, w callout.Webhook, c *change, evidence ...Evidence) {
	e.observed()
	e.Class = class
	e.Remediation = Remediation(class, w)
	if e.Effect != FailsOpen && e.Effect != NextConnectionFails {
		e.Effect = EffectOf(w, class)
	}
	for _, ev := range evidence {
		addEvidence(e, ev)
	}
	c.report(cloneFinding(e.Finding))
}

// FailedCall is a call the kernel saw fail on a backend: the client
// rejected the handshake, gave up waiting for the server's first flight,
// or the backend refused the connection.
type FailedCall struct {
	Backend  netip.AddrPort
	Started  time.Time
	Evidence Evidence
}

// NoteFailedCall records a failed call: it is evidence of the backend's
// open findings, and of one that opens in the next moments (the probe it
// starts), and it means writes no longer pass on open connections.
func (s *Store) NoteFailedCall(fc FailedCall) {
	var c change
	s.mu.Lock()
	now := s.cfg.Clock.Now()
	if fc.Started.IsZero() {
		fc.Started = now
	}
	s.wire[fc.Backend] = wireMark{started: fc.Started, seen: now, evidence: fc.Evidence}
	if len(s.wire) > maxOpen {
		for b, m := range s.wire {
			if now.Sub(m.seen) > wireRecent {
				delete(s.wire, b)
			}
		}
	}
	for k, e := range s.open {
		if k.Scope != ScopeBackend || k.Backend != fc.Backend {
			continue
		}
		changed := false
		if !e.hasSource(Kernel) {
			// The kernel's first account of a failed call: the finding
			// (and its span) gains the wire's facts.
			changed = addEvidence(e, fc.Evidence)
		}
		if e.Effect == NextConnectionFails {
			e.Effect = failedEffect(e.FailurePolicy)
			changed = true
		}
		if changed {
			c.report(cloneFinding(e.Finding))
		}
	}
	s.mu.Unlock()
	s.done(c)
}

// failedEffect is the effect once a call is known to have failed.
func failedEffect(policy string) Effect {
	if policy == "Ignore" {
		return FailsOpen
	}
	return WritesRejected
}

// Retain resolves the findings about webhooks and backends that are gone:
// present says whether a backend finding's backend (traced here, or
// probed from afar), or an objects finding's webhook, still exists.
func (s *Store) Retain(present func(Key) bool) {
	var c change
	s.mu.Lock()
	for k, e := range s.open {
		if (k.Scope == ScopeBackend || k.Scope == ScopeObjects || k.Scope == ScopeRemote) && !present(k) {
			s.resolveLocked(e, Evidence{Source: Objects, Detail: "webhook or backend no longer exists"}, &c)
		}
	}
	s.mu.Unlock()
	s.done(c)
}

// describeHold is the last evidence of a held finding that resolves.
func describeHold(r holdReason, since time.Duration) string {
	switch r {
	case heldRestored:
		return fmt.Sprintf("not observed again in the %s after the agent restarted", since.Round(time.Second))
	default:
		return fmt.Sprintf("no longer checked by this agent: it lost the cluster-checks Lease %s ago (the agent holding it reports the webhook)", since.Round(time.Second))
	}
}
