package findings

import (
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/hookscope/hookscope/callout"
)

// Scope is what a finding is about: one backend of a webhook, its
// objects, the API server's signals alone, or an impact.
type Scope uint8

// The scopes.
const (
	// ScopeBackend: one backend (the probe, the wire). Node-local.
	ScopeBackend Scope = iota
	// ScopeObjects: the webhook's objects (Service, endpoints, pods).
	// Cluster-wide: the agent holding the Lease reports them.
	ScopeObjects
	// ScopeSignals: the API server reports failed calls and nothing
	// else has a finding open for the webhook. Cluster-wide.
	ScopeSignals
	// ScopeImpact: what the failing webhook breaks. Cluster-wide.
	ScopeImpact
	// ScopeRemote: a backend on a node no agent runs on (Fargate, a node
	// the DaemonSet leaves out), probed by the agent holding the Lease.
	// Cluster-wide.
	ScopeRemote
)

// clusterWide reports whether findings of the scope belong to the agent
// that holds the Lease.
func (s Scope) clusterWide() bool { return s != ScopeBackend }

// Key identifies an open finding: the webhook, the scope, and the backend
// or impact it is about.
type Key struct {
	Webhook callout.Ref
	Scope   Scope
	Backend netip.AddrPort
	Impact  string
}

// Config tunes a Store.
type Config struct {
	// Sinks receive every finding that opens, changes and resolves.
	Sinks []Sink
	Log   *slog.Logger
	// Clock is the store's time (tests pass a fake one).
	Clock clock.PassiveClock
	// StatePath is the file open findings are kept in, so that a restarted
	// agent goes on with the same findings and IDs; empty keeps none.
	StatePath string
	// RestoreGrace is how long a finding restored from StatePath waits to
	// be observed again before it resolves.
	RestoreGrace time.Duration
	// HandOver is how long a cluster-wide finding waits, after this agent
	// stopped holding the Lease, to be observed again (the Lease regained
	// after an API server outage) before it resolves.
	HandOver time.Duration
}

// Bounds.
const (
	// maxResolved is how many resolved findings are kept for the API.
	maxResolved = 200
	// maxEvidence bounds one finding's evidence.
	maxEvidence = 20
	// maxOpen bounds the open findings: past it new ones are logged, not kept.
	maxOpen = 4096
	// wireRecent is how long a failed call the kernel saw is evidence of a
	// finding that opens after it.
	wireRecent = 30 * time.Second
)

// Store holds the findings. It is safe for concurrent use; sinks are
// called outside its lock, in the order of the changes.
type Store struct {
	cfg Config

	mu       sync.Mutex
	open     map[Key]*entry
	resolved []Finding
	wire     map[netip.AddrPort]wireMark
	dropped  int  // findings not kept: maxOpen reached
	dirty    bool // the state file is behind the open findings
}

// entry is an open finding and what the store knows of it.
type entry struct {
	Finding
	key Key
	// held is when the finding stopped being observed for a known reason
	// (restored after a restart, the Lease lost); zero while observed.
	held       time.Time
	holdReason holdReason
	// causedBy is the finding this one, opened from the API server's
	// counters, took its cause from: it resolves with it. (Not kept across
	// restarts: a restored one resolves when the signals go quiet.)
	causedBy *Key
}

type holdReason uint8

const (
	notHeld holdReason = iota
	heldRestored
	heldHandOver
)

// wireMark is the latest failed call the kernel saw on a backend.
type wireMark struct {
	started  time.Time // when the failing connection started
	seen     time.Time // when the store heard of it
	evidence Evidence
}

// NewStore returns an empty store; Restore loads the findings a previous
// run left open.
func NewStore(cfg Config) *Store {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.RestoreGrace <= 0 {
		cfg.RestoreGrace = time.Minute
	}
	if cfg.HandOver <= 0 {
		cfg.HandOver = 2 * time.Minute
	}
	return &Store{cfg: cfg, open: map[Key]*entry{}, wire: map[netip.AddrPort]wireMark{}}
}

// AddSink adds a sink for every finding that opens, changes and resolves.
// Call it before the first observation.
func (s *Store) AddSink(sink Sink) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.Sinks = append(s.cfg.Sinks, sink)
}

// change collects what one operation did, to report once the lock is
// released.
type change struct {
	reports []Finding
	persist bool
}

func (c *change) report(f Finding) {
	c.reports = append(c.reports, f)
	c.persist = true
}

// done reports the changes to the sinks and marks the state file behind
// (Tick writes it: a burst of changes, a backend that fails for a hundred
// webhooks, is one write). Callers hold no lock.
func (s *Store) done(c change) {
	if c.persist {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
	}
	for _, f := range c.reports {
		if f.Resolved != nil {
			var why string
			if n := len(f.Evidence); n > 0 {
				why = f.Evidence[n-1].Detail
			}
			s.cfg.Log.Info("finding resolved", "webhook", f.Webhook.String(), "class", f.Class, "id", f.ID, "why", why)
		} else {
			s.cfg.Log.Warn("finding", "webhook", f.Webhook.String(), "class", f.Class, "effect", f.Effect, "id", f.ID, "backend", f.Backend)
		}
		for _, sink := range s.cfg.Sinks {
			sink.Report(f)
		}
	}
}

// resolveLocked closes e with ev as its last evidence. Callers hold s.mu.
func (s *Store) resolveLocked(e *entry, ev Evidence, c *change) {
	now := s.cfg.Clock.Now()
	e.Resolved = &now
	if ev.At.IsZero() {
		ev.At = now
	}
	e.Evidence = append(e.Evidence, ev)
	delete(s.open, e.key)
	s.resolved = append(s.resolved, cloneFinding(e.Finding))
	if len(s.resolved) > maxResolved {
		s.resolved = slices.Delete(s.resolved, 0, len(s.resolved)-maxResolved)
	}
	c.report(cloneFinding(e.Finding))
	if sig := s.open[SignalKey(e.Webhook)]; sig != nil && sig.causedBy != nil && *sig.causedBy == e.key {
		s.resolveLocked(sig, ev, c)
	}
}

// openLocked keeps f under k and reports it. Callers hold s.mu.
func (s *Store) openLocked(k Key, f Finding, c *change) {
	if len(s.open) >= maxOpen {
		s.dropped++
		if s.dropped == 1 || s.dropped%1000 == 0 {
			s.cfg.Log.Error("too many open findings: new ones are not kept", "open", len(s.open), "dropped", s.dropped)
		}
		return
	}
	f.ID = findingID(k, f.Class, f.FirstFailure)
	s.open[k] = &entry{Finding: f, key: k}
	c.report(cloneFinding(f))
}

// addEvidence adds ev to e unless e already holds the same (then it
// updates its time and count); it reports whether e changed.
func addEvidence(e *entry, ev Evidence) bool {
	for i := range e.Evidence {
		if e.Evidence[i].same(ev) {
			if ev.At.After(e.Evidence[i].At) {
				e.Evidence[i].At = ev.At
			}
			e.Evidence[i].Calls = max(e.Evidence[i].Calls, ev.Calls)
			return false
		}
	}
	if len(e.Evidence) >= maxEvidence {
		return false
	}
	e.Evidence = append(e.Evidence, ev)
	return true
}

// hasSource reports whether e has evidence from src.
func (e *entry) hasSource(src Source) bool {
	return slices.ContainsFunc(e.Evidence, func(ev Evidence) bool { return ev.Source == src })
}

// observed marks e as observed again: no longer held.
func (e *entry) observed() { e.held, e.holdReason = time.Time{}, notHeld }

// Findings returns the open findings, oldest first, and the recently
// resolved ones.
func (s *Store) Findings() (open, resolved []Finding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.open {
		open = append(open, cloneFinding(e.Finding))
	}
	sort.Slice(open, func(i, j int) bool {
		if !open[i].FirstSeen.Equal(open[j].FirstSeen) {
			return open[i].FirstSeen.Before(open[j].FirstSeen)
		}
		return open[i].ID < open[j].ID
	})
	return open, slices.Clone(s.resolved)
}

// OpenOfClass returns the open findings of class c, unsorted: what a
// check that runs every second reads, without cloning every finding.
func (s *Store) OpenOfClass(c Class) []Finding {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Finding
	for _, e := range s.open {
		if e.Class == c {
			out = append(out, cloneFinding(e.Finding))
		}
	}
	return out
}

// HasOpen reports whether a finding is open about backend.
func (s *Store) HasOpen(backend netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.open {
		if k.Scope == ScopeBackend && k.Backend == backend {
			return true
		}
	}
	return false
}

// BackendClass is the class of webhook ref's open finding about backend
// (this agent's, or probed from afar), or "" with none.
func (s *Store) BackendClass(ref callout.Ref, backend netip.AddrPort) Class {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, scope := range []Scope{ScopeBackend, ScopeRemote} {
		if e := s.open[Key{Webhook: ref, Scope: scope, Backend: backend}]; e != nil {
			return e.Class
		}
	}
	return ""
}

// OpenClass is the class of the webhook's open finding about its objects
// or a backend (the first, by backend), or CallsFailing when it has none:
// what the API server's counters, which say only that calls fail, mean.
func (s *Store) OpenClass(ref callout.Ref) Class {
	s.mu.Lock()
	defer s.mu.Unlock()
	class, first := CallsFailing, ""
	for k, e := range s.open {
		if k.Webhook != ref || (k.Scope != ScopeBackend && k.Scope != ScopeObjects && k.Scope != ScopeRemote) || e.Class == CertExpiringSoon || e.Class == SlowResponse {
			continue
		}
		if b := k.Backend.String(); class == CallsFailing || b < first {
			class, first = e.Class, b
		}
	}
	return class
}

func cloneFinding(f Finding) Finding {
	f.Evidence = slices.Clone(f.Evidence)
	return f
}
