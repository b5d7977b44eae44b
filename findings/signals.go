package findings

import (
	"slices"
	"time"

	"github.com/hookscope/hookscope/callout"
)

// Signal is a failed (or slow) call the API server reported: an Event or
// a rise of its counters.
type Signal struct {
	// Class is why the call failed, when the signal says; CallsFailing
	// when it says only that calls fail.
	Class Class
	// FailOpen: the API server let the write through (failurePolicy
	// Ignore).
	FailOpen bool
	// Started is when the failure happened, as the API server reports it.
	Started time.Time
	// Since, for a signal read from /metrics, is the previous scrape: the
	// calls failed between Since and Started. Zero for an Event.
	Since    time.Time
	Evidence Evidence
}

// failedClosed reports whether the signal means a write was rejected.
func (sig Signal) failedClosed() bool { return !sig.FailOpen && sig.Class != SlowResponse }

// Signal adds what the API server reported to the webhook's open findings.
// With none open about its backends or objects, it opens a finding from
// the signal alone (kept, like the impacts, until ResolveQuiet); a signal
// finding that said only "calls fail" takes the cause a later signal names.
// known says whether w is in the inventory; counters outlive a deleted
// webhook, so its last failures open nothing.
func (s *Store) Signal(w callout.Webhook, known bool, sig Signal) {
	var c change
	s.mu.Lock()
	defer func() { s.mu.Unlock(); s.done(c) }()
	ref := w.Ref
	covered := false
	for k, e := range s.open {
		if k.Webhook != ref {
			continue
		}
		if k.Scope == ScopeSignals {
			e.observed()
		}
		if k.Scope == ScopeSignals && e.Class.generic() && sig.Class != "" && !sig.Class.generic() && sig.Class != SlowResponse {
			s.reclassLocked(e, sig.Class, w, &c, sig.Evidence)
			covered = true
			continue
		}
		c.persist = addEvidence(e, sig.Evidence) || c.persist
		if e.Effect == NextConnectionFails && sig.failedClosed() {
			e.Effect = failedEffect(e.FailurePolicy)
			c.report(cloneFinding(e.Finding))
		}
		covered = covered || k.Scope != ScopeImpact
	}
	if covered || (!known && sig.Evidence.Source == Metrics) || s.endedSinceLocked(ref, sig.Since) {
		return
	}
	class := sig.Class
	if class == "" {
		class = CallsFailing
	}
	f := s.newFinding(Observation{Webhook: w, Class: class, Started: sig.Started})
	switch {
	case class == SlowResponse:
		f.Effect = WritesSlowed
	case sig.FailOpen:
		f.Effect = FailsOpen
	case !known:
		f.Effect = WritesRejected
	}
	f.Evidence = []Evidence{sig.Evidence}
	s.openLocked(Key{Webhook: ref, Scope: ScopeSignals}, f, &c)
}

// endedSinceLocked reports whether a finding about webhook ref ended at or
// after since: the calls a scrape of /metrics counts as failed since then
// may be those it was about, and a failure that goes on rises again at the
// next scrape, after it ended. Zero since: never.
func (s *Store) endedSinceLocked(ref callout.Ref, since time.Time) bool {
	if since.IsZero() {
		return false
	}
	for _, f := range slices.Backward(s.resolved) {
		if f.Webhook == ref && f.Impact == nil && f.Resolved != nil && !f.Resolved.Before(since) {
			return true
		}
	}
	return false
}

// OpenImpact opens a correlation finding, once per impact: the failing
// webhook w (class is why it fails) breaks what imp names.
func (s *Store) OpenImpact(w callout.Webhook, class Class, imp Impact, evidence ...Evidence) {
	var c change
	s.mu.Lock()
	k := ImpactKey(w.Ref, imp)
	if e, ok := s.open[k]; ok {
		e.observed()
		s.mu.Unlock()
		return
	}
	f := s.newFinding(Observation{Webhook: w, Class: class, Started: imp.Since})
	f.Effect = WritesRejected
	f.Impact = &imp
	f.Evidence = evidence
	s.openLocked(k, f, &c)
	s.mu.Unlock()
	s.done(c)
}

// ImpactKey is the key of the finding about imp of webhook ref.
func ImpactKey(ref callout.Ref, imp Impact) Key {
	return Key{Webhook: ref, Scope: ScopeImpact, Impact: imp.key()}
}

// SignalKey is the key of the finding opened from webhook ref's signals.
func SignalKey(ref callout.Ref) Key { return Key{Webhook: ref, Scope: ScopeSignals} }

// ResolveQuiet resolves the signal and impact findings for which holding
// is false: the signals went quiet, the impact is over. Held findings wait
// for Tick.
func (s *Store) ResolveQuiet(holding func(Key) bool) {
	var c change
	s.mu.Lock()
	for k, e := range s.open {
		if (k.Scope != ScopeSignals && k.Scope != ScopeImpact) || !e.held.IsZero() || holding(k) {
			continue
		}
		detail := "the impact is over"
		if k.Scope == ScopeSignals {
			detail = "the API server's signals went quiet"
		}
		s.resolveLocked(e, Evidence{Source: Objects, Detail: detail}, &c)
	}
	s.mu.Unlock()
	s.done(c)
}

// SetLeading says whether this agent holds the cluster-checks Lease. When
// it stops, its cluster-wide findings are held: they go on, with their
// IDs, if it leads again before Config.HandOver (an API server outage
// longer than the renew deadline), and resolve then otherwise, saying so.
func (s *Store) SetLeading(leading bool) {
	if leading {
		return
	}
	s.mu.Lock()
	now := s.cfg.Clock.Now()
	for k, e := range s.open {
		if k.Scope.clusterWide() && e.held.IsZero() {
			e.held, e.holdReason = now, heldHandOver
		}
	}
	s.mu.Unlock()
}

// Tick resolves the held findings whose time is up and brings the state
// file up to date. Call it every second while it returns more: a crash
// loses at most that much. With no finding open, nothing waits for a tick
// until a sink hears of the next one.
func (s *Store) Tick() (more bool) {
	s.tick()
	s.saveIfBehind()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open) > 0
}

func (s *Store) tick() {
	var c change
	s.mu.Lock()
	now := s.cfg.Clock.Now()
	for _, e := range s.open {
		if e.held.IsZero() {
			continue
		}
		limit := s.cfg.HandOver
		if e.holdReason == heldRestored {
			limit = s.cfg.RestoreGrace
		}
		if since := now.Sub(e.held); since >= limit {
			s.resolveLocked(e, Evidence{Source: Agent, Detail: describeHold(e.holdReason, since)}, &c)
		}
	}
	s.mu.Unlock()
	s.done(c)
}
