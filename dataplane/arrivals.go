package dataplane

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/hookscope/hookscope/findings"
)

// SYNs is what arrived at a backend's interface from one kind of client:
// the SYNs (retransmissions included) and the backend's answers.
type SYNs struct {
	SYNs     uint64 `json:"syns"`
	Answered uint64 `json:"answered"`
	Refused  uint64 `json:"refused"`
	// LastSYN and LastAnswer are zero when none was seen.
	LastSYN    time.Time `json:"lastSYN"`
	LastAnswer time.Time `json:"lastAnswer"`
	// LastAnswerTo is the client of the last answer (invalid when none
	// was seen).
	LastAnswerTo netip.Addr `json:"lastAnswerTo,omitzero"`
	// Untracked counts data segments on connections that began before
	// tracing: a client that holds one may call with no SYN at all.
	Untracked     uint64    `json:"untracked,omitempty"`
	LastUntracked time.Time `json:"lastUntracked,omitzero"`
}

// add folds in one client's counts.
func (s *SYNs) add(o SYNs) {
	s.SYNs += o.SYNs
	s.Answered += o.Answered
	s.Refused += o.Refused
	if o.LastSYN.After(s.LastSYN) {
		s.LastSYN = o.LastSYN
	}
	if o.LastAnswer.After(s.LastAnswer) {
		s.LastAnswer, s.LastAnswerTo = o.LastAnswer, o.LastAnswerTo
	}
	s.Untracked += o.Untracked
	if o.LastUntracked.After(s.LastUntracked) {
		s.LastUntracked = o.LastUntracked
	}
}

// Arrivals is the kernel's SYN ledger for one backend: the connections the
// API server (and any other client) tried, apart from this agent's probes.
type Arrivals struct {
	Clients SYNs `json:"clients"`
	Probes  SYNs `json:"probes"`
	// ByClient is Clients by client address (at most maxClients of them,
	// the latest).
	ByClient map[netip.Addr]SYNs `json:"byClient,omitempty"`
}

// maxClients bounds ByClient: a backend has few clients (the API server's
// addresses, a node's kubelet, a scraper); past it the least recent go.
const maxClients = 32

// AddClient folds in the SYNs of the client at addr.
func (a *Arrivals) AddClient(addr netip.Addr, s SYNs) {
	if !s.LastAnswer.IsZero() {
		s.LastAnswerTo = addr
	}
	a.Clients.add(s)
	if a.ByClient == nil {
		a.ByClient = map[netip.Addr]SYNs{}
	}
	c := a.ByClient[addr]
	c.add(s)
	a.ByClient[addr] = c
	if len(a.ByClient) <= maxClients {
		return
	}
	oldest := addr
	for k, v := range a.ByClient {
		if last(v).Before(last(a.ByClient[oldest])) {
			oldest = k
		}
	}
	delete(a.ByClient, oldest)
}

// last is when the client was last seen.
func last(s SYNs) time.Time {
	t := s.LastSYN
	for _, u := range []time.Time{s.LastAnswer, s.LastUntracked} {
		if u.After(t) {
			t = u
		}
	}
	return t
}

// FromAPIServer is the ledger with, as clients, only the API server's
// addresses (apiServer says whether an address is one): a node's kubelet
// probing the pod, or another client calling it, does not speak for the
// API server's path. ok is false when no SYN from the API server's
// addresses is in the ledger (it connects from other addresses, or not
// since tracing began): then the ledger is all it can say.
func (a Arrivals) FromAPIServer(apiServer func(netip.Addr) bool) (Arrivals, bool) {
	if apiServer == nil {
		return a, false
	}
	out := Arrivals{Probes: a.Probes}
	for addr, s := range a.ByClient {
		if apiServer(addr) {
			out.AddClient(addr, s)
		}
	}
	if out.ByClient == nil {
		return a, false
	}
	return out, true
}

// Ledger is what a node's agent knows of the connections to one backend:
// what reached its interface, and the connections the API server holds.
// The agent that judges a failed call may read it from another node's.
type Ledger struct {
	Node   string `json:"node"`
	Traced bool   `json:"traced"`
	// TracedSince is when tracing began at the backend's interface
	// (zero from an agent that does not say): the ledger knows nothing
	// of what arrived before.
	TracedSince time.Time `json:"tracedSince,omitzero"`
	Arrivals    Arrivals  `json:"arrivals"`
	// Open is how many connections are open; LastClosed when the last one
	// ended (zero if none did while traced).
	Open       int       `json:"open"`
	LastClosed time.Time `json:"lastClosed"`
}

// Verdict says where the API server's connections to a backend stop.
type Verdict struct {
	Class  findings.Class // BlockedBeforeNode or DroppedAtPod
	Detail string
}

// Judge reads the ledger for a failed call that began at since (the API
// server's call, timeoutSeconds before it gave up) at pod (namespace/name
// on node): ok is false when the ledger says nothing of where the packets
// stop (the SYNs were answered; this node's probes fail too, which their
// own finding says; or a client still uses a connection from before
// tracing).
func (a Arrivals) Judge(since time.Time, pod, node string) (Verdict, bool) {
	at := since.Format("15:04:05.000")
	switch {
	case a.Clients.LastSYN.Before(since) && a.Clients.LastUntracked.Before(since) && !a.Probes.LastAnswer.Before(since.Add(-probeRecent)):
		// (A client that sent data on a connection from before tracing
		// may call with no SYN: then the ledger does not say.)
		return Verdict{findings.BlockedBeforeNode, fmt.Sprintf(
			"no SYN from the API server reached pod %s's interface on node %s since %s (last one: %s), while this node's probes connect (%d of %d SYNs answered): the packets stop before the node",
			pod, node, at, describeLast(a.Clients.LastSYN), a.Probes.Answered, a.Probes.SYNs)}, true
	case !a.Clients.LastSYN.Before(since) && a.Clients.LastAnswer.Before(since):
		return Verdict{findings.DroppedAtPod, fmt.Sprintf(
			"SYNs reached pod %s's interface on node %s since %s (last at %s) and the pod answered none of them: the packets stop at the pod",
			pod, node, at, a.Clients.LastSYN.Format("15:04:05.000"))}, true
	}
	return Verdict{}, false
}

// probeRecent is how far before a failed call this node's probe may have
// connected and still speak for the backend then.
const probeRecent = 30 * time.Second

func describeLast(t time.Time) string {
	if t.IsZero() {
		return "none since tracing began"
	}
	return t.Format("15:04:05.000")
}

// JudgeProbe reads the ledger for this node's probe that began at since
// and whose connection was never answered: DroppedAtPod when its SYNs
// reached the pod's interface; ok is false when they did not (the node
// itself drops them, before the pod).
func (a Arrivals) JudgeProbe(since time.Time, pod, node string) (Verdict, bool) {
	if a.Probes.LastSYN.Before(since) || !a.Probes.LastAnswer.Before(since) {
		return Verdict{}, false
	}
	return Verdict{findings.DroppedAtPod, fmt.Sprintf(
		"this node's probe's SYNs reached pod %s's interface on node %s (last at %s) and the pod answered none of them: the packets stop at the pod",
		pod, node, a.Probes.LastSYN.Format("15:04:05.000"))}, true
}
