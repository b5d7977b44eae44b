package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/bpf/tcpstate"
)

// DataPlane is the kernel's view: it traces the backends it is given and
// delivers what it saw on their connections.
type DataPlane interface {
	// SetBackends replaces the set of traced backend IP:ports.
	SetBackends(targets []netip.AddrPort) error
	// Events delivers decoded events until the data plane stops.
	Events() <-chan handshake.Event
	// Traced reports whether the kernel traces a backend now.
	Traced(target netip.AddrPort) bool
}

// Config tunes the agent.
type Config struct {
	// NodeName limits tracing and probing to backends on this node; empty
	// means every backend (a single-node or control-plane agent).
	NodeName string
	// ProbeInterval is how often each local backend is probed even when no
	// call fails: it finds a broken backend before the first failed call.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe.
	ProbeTimeout time.Duration
	// SyncTimeout bounds the first informer sync.
	SyncTimeout time.Duration
	// CertHorizon: a served certificate that expires sooner than this is a
	// CertExpiringSoon finding while it still works.
	CertHorizon time.Duration
	// SlowThreshold: a webhook whose calls take this long on average, or
	// half its timeoutSeconds if that is less, is a SlowResponse finding.
	SlowThreshold time.Duration
	// ReviewProbe makes each probe also send one AdmissionReview (dryRun)
	// and time the answer: SlowResponse before any write waits. Off by
	// default: without it a probe sends nothing the webhook sees.
	ReviewProbe bool
	// ObjectChecks turns on the cluster-wide checks of webhook objects
	// (Service, endpoints, backend pods): they fail inside the API server
	// with no packet. One agent per cluster runs them (see LeaderElection).
	ObjectChecks bool
	// Pods lists a Service's pods for the Pending check; nil skips it.
	Pods PodLister
	// Observer gets every probe, kernel event and finding; nil for none.
	Observer Observer
	Logger   *slog.Logger
}

// PodLister lists the pods a selector matches in a namespace.
type PodLister interface {
	ListPods(ctx context.Context, namespace string, selector map[string]string) ([]PodState, error)
}

// PodState is what the Pending check needs of a pod.
type PodState struct {
	Name  string
	Phase string
	Node  string
	// Reason is why it is Pending, from its PodScheduled condition.
	Reason string
}

func (c *Config) defaults() {
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = 10 * time.Second
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = 3 * time.Second
	}
	if c.SyncTimeout <= 0 {
		c.SyncTimeout = 30 * time.Second
	}
	if c.CertHorizon <= 0 {
		c.CertHorizon = 7 * 24 * time.Hour
	}
	if c.SlowThreshold <= 0 {
		c.SlowThreshold = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// probeKey is one webhook's view of one backend: webhooks that share a
// backend may trust different CAs.
type probeKey struct {
	webhook WebhookRef
	backend netip.AddrPort
}

// wireFailure is the last failed call the kernel saw on a backend.
type wireFailure struct {
	at        time.Time // when the failing connection started
	seen      time.Time // when the event arrived
	detail    string
	eventTime time.Time
}

// Agent correlates the inventory, the kernel's events and probes into findings.
type Agent struct {
	cfg   Config
	inv   *Inventory
	dp    DataPlane
	sinks []FindingSink
	log   *slog.Logger

	mu        sync.Mutex
	webhooks  map[WebhookRef]Webhook
	local     map[probeKey]bool               // backends this agent traces and probes
	byBackend map[netip.AddrPort][]WebhookRef // the local backends, indexed for the kernel's events
	open      map[probeKey]*Finding           // open findings
	resolved  []Finding                       // recently resolved, newest last
	wire      map[netip.AddrPort]wireFailure
	ownProbes map[netip.AddrPort]time.Time // local addresses of our probes
	inflight  map[probeKey]bool
	again     map[probeKey]bool
	synced    bool

	objectsChanged chan struct{}
	objectChecks   atomic.Bool
	probeSlots     chan struct{} // bounds concurrent probes

	impacts      map[string]*Finding // open correlation findings, by impactKey
	risks        []Risk
	riskSeen     map[string]bool
	calls        map[callKey]*Call
	callsDone    map[callKey]time.Time
	callsDropped int
	callSinks    []CallSink
	targets      []netip.AddrPort // local backends the data plane should trace
	retryPending atomic.Bool
	lastSyncErr  string
	noService    map[WebhookRef]string      // webhooks without a Service already logged, by URL
	pending      map[callKey]pendingRequest // requests the backend has not answered yet
	latencyBad   map[probeKey]time.Time     // when the wire last saw a slow or unanswered request
	timedOut     map[callKey]bool           // connections whose outstanding request timed out
}

// New makes an agent. dp may be nil: the agent then runs on probes and the
// API alone (and says so).
func New(cfg Config, inv *Inventory, dp DataPlane, sinks ...FindingSink) *Agent {
	cfg.defaults()
	if inv != nil {
		inv.log = cfg.Logger
	}
	a := &Agent{
		cfg: cfg, inv: inv, dp: dp, sinks: sinks, log: cfg.Logger,
		webhooks:  map[WebhookRef]Webhook{},
		local:     map[probeKey]bool{},
		open:      map[probeKey]*Finding{},
		wire:      map[netip.AddrPort]wireFailure{},
		ownProbes: map[netip.AddrPort]time.Time{},
		inflight:  map[probeKey]bool{},
		again:     map[probeKey]bool{},

		objectsChanged: make(chan struct{}, 1),
		probeSlots:     make(chan struct{}, maxConcurrentProbes),
		calls:          map[callKey]*Call{},
		callsDone:      map[callKey]time.Time{},
	}
	// Set here, not in Run: leader election may turn the checks on before
	// Run starts.
	a.objectChecks.Store(cfg.ObjectChecks)
	return a
}

// ReportCallsTo adds a sink for every handshake the kernel sees to a
// backend (not the agent's own probes). Call before Run.
func (a *Agent) ReportCallsTo(s CallSink) { a.callSinks = append(a.callSinks, s) }

// maxConcurrentProbes bounds the probes in flight, so a node with many
// backends, or a burst of failures, never floods them.
const maxConcurrentProbes = 8

// Run runs the agent until ctx ends. It returns an error if the inventory
// cannot sync.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if a.dp != nil {
		go a.readEvents(ctx)
	} else {
		a.log.Warn("no eBPF data plane: detecting from probes and the API only")
	}
	go a.probeLoop(ctx)
	go a.pendingLoop(ctx)
	go a.objectLoop(ctx)
	return a.inv.Run(ctx, a.cfg.SyncTimeout, func(ws []Webhook) { a.setWebhooks(ctx, ws) })
}

// InventoryStats is what the inventory caches and watches now.
func (a *Agent) InventoryStats() InventoryStats {
	if a.inv == nil {
		return InventoryStats{}
	}
	return a.inv.Stats()
}

// Synced reports whether the first inventory resolution happened.
func (a *Agent) Synced() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.synced
}

func (a *Agent) isLocal(b BackendTarget) bool {
	if a.cfg.NodeName == "" {
		return true
	}
	return b.Pod != nil && b.Pod.Node == a.cfg.NodeName
}

func (a *Agent) setWebhooks(ctx context.Context, ws []Webhook) {
	a.mu.Lock()
	a.synced = true
	a.webhooks = map[WebhookRef]Webhook{}
	local := map[probeKey]bool{}
	byBackend := map[netip.AddrPort][]WebhookRef{}
	for _, w := range ws {
		a.webhooks[w.Ref] = w
		for _, b := range w.Backends {
			if !a.isLocal(b) {
				continue
			}
			local[probeKey{w.Ref, b.Addr}] = true
			byBackend[b.Addr] = append(byBackend[b.Addr], w.Ref)
		}
	}
	targets := make([]netip.AddrPort, 0, len(byBackend))
	for t := range byBackend {
		targets = append(targets, t)
	}
	var fresh []probeKey
	for k := range local {
		if !a.local[k] {
			fresh = append(fresh, k)
		}
	}
	// A webhook or backend that is gone takes its findings with it.
	var gone []Finding
	for k, f := range a.open {
		_, exists := a.webhooks[k.webhook]
		if objectKey(k) && exists {
			continue // the object checks resolve these
		}
		if !local[k] {
			now := time.Now()
			f.Resolved = &now
			f.Evidence = append(f.Evidence, Evidence{Source: "apiserver", At: now, Detail: "webhook or backend no longer exists"})
			gone = append(gone, *f)
			a.resolved = appendBounded(a.resolved, *f)
			delete(a.open, k)
		}
	}
	a.local = local
	a.byBackend = byBackend
	a.mu.Unlock()

	a.log.Info("inventory", "webhooks", len(ws), "local_backends", len(targets))
	for _, w := range ws {
		a.log.Debug("webhook", "ref", w.Ref.String(), "failurePolicy", w.FailurePolicy, "backends", describeBackends(w.Backends))
		if w.Service == nil && !a.unreachableLogged(w) {
			if w.URL != "" {
				a.log.Info("webhook calls a URL, not a Service: it is neither traced nor probed, only the API server's signals cover it", "webhook", w.Ref.String(), "url", w.URL)
			} else {
				a.log.Warn("webhook has neither a service nor a url in its clientConfig: the API server cannot call it; skipped", "webhook", w.Ref.String())
			}
		}
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].Compare(targets[j]) < 0 })
	a.mu.Lock()
	a.targets = targets
	a.mu.Unlock()
	a.syncBackends()
	for _, f := range gone {
		a.report(f)
	}
	for _, k := range fresh {
		a.requestProbe(ctx, k, "new backend")
	}
	select {
	case a.objectsChanged <- struct{}{}:
	default:
	}
}

// unreachableLogged reports whether w, which has no Service, was already
// logged as such, and remembers it: one line per webhook, not per change.
func (a *Agent) unreachableLogged(w Webhook) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.noService == nil {
		a.noService = map[WebhookRef]string{}
	}
	if a.noService[w.Ref] == w.URL+"|" {
		return true
	}
	a.noService[w.Ref] = w.URL + "|"
	return false
}

// objectKey is the key of a finding about a webhook's objects, not one backend.
func objectKey(k probeKey) bool { return !k.backend.IsValid() }

// syncBackends hands the local backends to the data plane. A backend whose
// route is not there yet (the CNI has not set up the pod's network) fails;
// it is retried every second until it works, and the probe interval
// re-resolves every route anyway (a restarted pod gets a new veth).
func (a *Agent) syncBackends() {
	if a.dp == nil {
		return
	}
	a.mu.Lock()
	targets := slices.Clone(a.targets)
	a.mu.Unlock()
	err := a.dp.SetBackends(targets)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	a.mu.Lock()
	changed := msg != a.lastSyncErr
	a.lastSyncErr = msg
	a.mu.Unlock()
	if err == nil {
		if changed {
			a.log.Info("tracing every local backend again")
		}
		return
	}
	if changed {
		a.log.Warn("cannot trace some backends yet; retrying every second", "err", err)
	}
	if a.retryPending.CompareAndSwap(false, true) {
		time.AfterFunc(time.Second, func() {
			a.retryPending.Store(false)
			a.syncBackends()
		})
	}
}

// TCPEventSource is a data plane that also has the TCP tracepoints.
type TCPEventSource interface {
	TCPEvents() <-chan tcpstate.Event
}

func (a *Agent) readEvents(ctx context.Context) {
	evs := a.dp.Events()
	var tcp <-chan tcpstate.Event
	if src, ok := a.dp.(TCPEventSource); ok {
		tcp = src.TCPEvents()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-evs:
			if !ok {
				a.log.Warn("eBPF event stream ended")
				return
			}
			a.handleEvent(ctx, e)
		case e, ok := <-tcp:
			if !ok {
				tcp = nil // the handshake events go on
				continue
			}
			a.handleTCP(e)
		}
	}
}

// handleTCP folds what the TCP tracepoints saw into the call in progress
// (retransmissions, resets during the handshake) and counts every event;
// the agent's own probes are left out.
func (a *Agent) handleTCP(e tcpstate.Event) {
	kind := "tcp_" + e.Kind.String()
	a.mu.Lock()
	if _, own := a.ownProbes[e.Client]; own {
		a.mu.Unlock()
		return
	}
	if c := a.calls[callKey{e.Client, e.Server}]; c != nil && e.Kind != tcpstate.KindSYN && e.Kind != tcpstate.KindEstablished {
		detail := e.Side.String() + " socket"
		switch e.Kind {
		case tcpstate.KindRetransmit:
			detail = fmt.Sprintf("%d retransmissions on the %s socket: packets to or from the backend are lost", e.Retransmits, e.Side)
		case tcpstate.KindResetSent, tcpstate.KindResetReceived, tcpstate.KindRefused:
			if e.ResetReason != "" {
				detail += ", reason " + e.ResetReason
			}
		}
		c.Events = append(c.Events, CallEvent{Name: kind, At: e.Time, Detail: detail})
	}
	a.mu.Unlock()
	if e.Kind == tcpstate.KindClose {
		a.log.Debug("tcp", "kind", kind, "side", e.Side.String(), "client", e.Client, "server", e.Server,
			"duration", e.Duration, "closed_by", e.ClosedBy.String(), "retransmits", e.Retransmits)
	}
	if a.cfg.Observer != nil {
		a.cfg.Observer.ObserveWire(kind)
	}
}

func (a *Agent) handleEvent(ctx context.Context, e handshake.Event) {
	a.mu.Lock()
	if _, own := a.ownProbes[e.Client]; own {
		a.mu.Unlock()
		return
	}
	var keys []probeKey
	for _, ref := range a.byBackend[e.Server] {
		keys = append(keys, probeKey{ref, e.Server})
	}
	var detail string
	switch {
	case e.Kind == handshake.KindHandshakeRejected:
		detail = describeRejection(e)
	case (e.Kind == handshake.KindClose || e.Kind == handshake.KindReset) && !e.FromServer && e.Phase == handshake.PhaseClientHello:
		detail = fmt.Sprintf("client %s gave up after its ClientHello: the backend never sent its first flight", e.Client)
	case e.Kind == handshake.KindRefused:
		detail = fmt.Sprintf("connection from %s refused: the backend answered the SYN with a reset", e.Client)
	}
	if detail != "" {
		start := e.FlowStart
		if start.IsZero() {
			start = e.Time
		}
		a.wire[e.Server] = wireFailure{at: start, seen: time.Now(), detail: detail, eventTime: e.Time}
	}
	recheck := e.Kind == handshake.KindHandshakeDone && a.hasOpen(e.Server)
	a.trackCall(e, detail)
	latency := a.onLatencyEvent(e)
	a.mu.Unlock()
	if latency != nil {
		latency()
	}

	a.log.Debug("wire", "kind", e.Kind.String(), "client", e.Client, "server", e.Server, "detail", detail)
	if a.cfg.Observer != nil {
		a.cfg.Observer.ObserveWire(e.Kind.String())
	}
	if detail != "" || recheck {
		for _, k := range keys {
			a.requestProbe(ctx, k, e.Kind.String())
		}
	}
}

func (a *Agent) hasOpen(backend netip.AddrPort) bool {
	for _, ref := range a.byBackend[backend] {
		if a.open[probeKey{ref, backend}] != nil {
			return true
		}
	}
	return false
}

func describeRejection(e handshake.Event) string {
	switch {
	case e.AlertLevel != 0:
		return fmt.Sprintf("TLS handshake rejected by client %s: %s alert %s (%d)", e.Client, alertLevel(e.AlertLevel), alertName(e.AlertDescription), e.AlertDescription)
	case e.TLS13 && e.EncryptedAlert:
		return fmt.Sprintf("TLS 1.3 handshake rejected by client %s: encrypted alert right after the server's first flight", e.Client)
	case e.TLS13:
		return fmt.Sprintf("TLS 1.3 handshake rejected by client %s: closed right after the server's first flight", e.Client)
	default:
		return fmt.Sprintf("TLS handshake rejected by client %s: closed right after the server's first flight", e.Client)
	}
}

func (a *Agent) probeLoop(ctx context.Context) {
	for {
		// Jitter (+-10%) so the agents of a cluster do not probe in step.
		jitter := time.Duration(rand.Int64N(int64(a.cfg.ProbeInterval)/5+1)) - a.cfg.ProbeInterval/10
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.ProbeInterval + jitter):
			a.mu.Lock()
			keys := make([]probeKey, 0, len(a.local))
			for k := range a.local {
				keys = append(keys, k)
			}
			// Forget our probes' addresses and finished calls once their
			// events are long in.
			for ap, at := range a.ownProbes {
				if time.Since(at) > time.Minute {
					delete(a.ownProbes, ap)
				}
			}
			for k, at := range a.callsDone {
				if time.Since(at) > time.Minute {
					delete(a.callsDone, k)
				}
			}
			a.mu.Unlock()
			a.syncBackends()
			for _, k := range keys {
				a.requestProbe(ctx, k, "interval")
			}
		}
	}
}

// requestProbe probes k now, or right after the probe of k in flight.
func (a *Agent) requestProbe(ctx context.Context, k probeKey, why string) {
	a.mu.Lock()
	if a.inflight[k] {
		a.again[k] = true
		a.mu.Unlock()
		return
	}
	a.inflight[k] = true
	a.mu.Unlock()
	go func() {
		for {
			a.probeOnce(ctx, k, why)
			a.mu.Lock()
			if !a.again[k] || ctx.Err() != nil {
				delete(a.inflight, k)
				a.mu.Unlock()
				return
			}
			delete(a.again, k)
			a.mu.Unlock()
			why = "again"
		}
	}()
}

func (a *Agent) probeOnce(ctx context.Context, k probeKey, why string) {
	a.mu.Lock()
	w, ok := a.webhooks[k.webhook]
	a.mu.Unlock()
	if !ok || w.Service == nil {
		return
	}
	select {
	case a.probeSlots <- struct{}{}:
		defer func() { <-a.probeSlots }()
	case <-ctx.Done():
		return
	}
	var review *ReviewProbe
	if a.cfg.ReviewProbe {
		review = &ReviewProbe{Path: w.Service.Path, SlowAfter: a.slowAfter(w)}
	}
	r := ProbeWithReview(ctx, k.backend, w.Service.ServerName(), w.CABundle, a.cfg.ProbeTimeout, review)
	a.log.Debug("probe", "why", why, "webhook", k.webhook.String(), "result", r.String())
	if a.cfg.Observer != nil {
		a.cfg.Observer.ObserveProbe(k.webhook, r)
	}
	a.mu.Lock()
	if r.Local.IsValid() {
		a.ownProbes[r.Local] = r.Start
	}
	a.mu.Unlock()
	a.apply(w, k, r)
}

// apply turns a probe result into a finding that opens, changes or resolves.
func (a *Agent) apply(w Webhook, k probeKey, r ProbeResult) {
	now := time.Now()
	if r.Class == Healthy && r.Leaf != nil && r.Leaf.NotAfter.Sub(now) < a.cfg.CertHorizon {
		r.Class = CertExpiringSoon
		r.Detail = fmt.Sprintf("the served certificate %q expires at %s, in %s (horizon %s)", r.Leaf.Subject,
			r.Leaf.NotAfter.UTC().Format(time.RFC3339), r.Leaf.NotAfter.Sub(now).Round(time.Minute), a.cfg.CertHorizon)
	}
	var reports []Finding
	a.mu.Lock()
	cur := a.open[k]
	wire, hasWire := a.wire[k.backend]
	source := r.Source
	if source == "" {
		source = "probe"
	}
	if r.Class == Healthy && cur != nil && (cur.Class == SlowResponse || cur.Class == WebhookTimeout) && source == "probe" && r.Response == 0 {
		// A handshake says nothing of how fast the webhook answers: the
		// wire's answers (or their quiet) resolve this one.
		a.mu.Unlock()
		return
	}
	if r.Class == Healthy {
		if cur != nil {
			cur.Resolved = &now
			detail := fmt.Sprintf("handshake with %s verifies (%s)", r.Target, r.Handshake.Round(time.Microsecond))
			if r.Source == "ebpf" {
				detail = r.Detail
			}
			cur.Evidence = append(cur.Evidence, Evidence{Source: source, At: r.Start, Detail: detail})
			reports = append(reports, *cur)
			a.resolved = appendBounded(a.resolved, *cur)
			delete(a.open, k)
		}
		delete(a.wire, k.backend)
		a.mu.Unlock()
		for _, f := range reports {
			a.log.Info("finding resolved", "webhook", f.Webhook.String(), "class", f.Class, "id", f.ID)
			a.report(f)
		}
		return
	}
	if cur != nil && cur.Class == r.Class {
		// Same failure: keep the first wire evidence of failed calls.
		if hasWire && !slices.ContainsFunc(cur.Evidence, func(e Evidence) bool { return e.Source == "ebpf" }) {
			cur.Evidence = append(cur.Evidence, Evidence{Source: "ebpf", At: wire.eventTime, Detail: wire.detail})
		}
		a.mu.Unlock()
		return
	}
	if cur != nil { // the reason changed: close the old finding, open a new one
		cur.Resolved = &now
		reports = append(reports, *cur)
		a.resolved = appendBounded(a.resolved, *cur)
	}
	effect := w.Effect()
	switch r.Class {
	case CertExpiringSoon:
		effect = "none yet"
	case SlowResponse:
		effect = "writes slowed"
	}
	f := &Finding{
		Class:         r.Class,
		Webhook:       w.Ref,
		FailurePolicy: w.FailurePolicy,
		Effect:        effect,
		Service:       w.Service,
		Backend:       k.backend,
		FirstFailure:  r.Start,
		FirstSeen:     now,
		Certificate:   r.Leaf,
		Remediation:   remediation(r.Class, w),
	}
	for _, b := range w.Backends {
		if b.Addr == k.backend {
			f.Pod = b.Pod
		}
	}
	// Calls the kernel saw fail in the last moments are this finding's
	// evidence, and the first of them is when the failure began.
	if hasWire && now.Sub(wire.seen) < 30*time.Second {
		f.Evidence = append(f.Evidence, Evidence{Source: "ebpf", At: wire.eventTime, Detail: wire.detail})
		if wire.at.Before(f.FirstFailure) {
			f.FirstFailure = wire.at
		}
	}
	f.Evidence = append(f.Evidence, Evidence{Source: source, At: r.Start, Detail: r.Detail})
	f.ID = findingID(f)
	a.open[k] = f
	reports = append(reports, *f)
	a.mu.Unlock()
	a.log.Warn("finding", "webhook", f.Webhook.String(), "class", f.Class, "effect", f.Effect, "backend", f.Backend, "detail", r.Detail)
	for _, f := range reports {
		a.report(f)
	}
}

func (a *Agent) report(f Finding) {
	if a.cfg.Observer != nil {
		a.cfg.Observer.ObserveFinding(f)
	}
	for _, s := range a.sinks {
		s.Report(f)
	}
}

func findingID(f *Finding) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s|%s|%s|%d", f.Webhook, f.Backend, f.Class, f.FirstSeen.UnixNano()))
	return hex.EncodeToString(h[:6])
}

func appendBounded(fs []Finding, f Finding) []Finding {
	const keep = 200
	fs = append(fs, f)
	if len(fs) > keep {
		fs = slices.Delete(fs, 0, len(fs)-keep)
	}
	return fs
}

// Findings returns the open findings and the recently resolved ones.
func (a *Agent) Findings() (open, resolved []Finding) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, f := range a.open {
		open = append(open, *f)
	}
	for _, f := range a.impacts {
		open = append(open, *f)
	}
	sort.Slice(open, func(i, j int) bool { return open[i].FirstSeen.Before(open[j].FirstSeen) })
	return open, slices.Clone(a.resolved)
}

// WebhookStatus is a webhook of the inventory with what this agent does
// with its backends.
type WebhookStatus struct {
	Webhook
	// Local are the backends on this agent's node: it probes them.
	Local []netip.AddrPort `json:"local"`
	// Traced are the local backends the kernel traces now.
	Traced []netip.AddrPort `json:"traced"`
}

// Webhooks returns the current inventory and this agent's part in it.
func (a *Agent) Webhooks() []WebhookStatus {
	var out []WebhookStatus
	for _, w := range a.inv.Webhooks() {
		st := WebhookStatus{Webhook: w, Local: []netip.AddrPort{}, Traced: []netip.AddrPort{}}
		for _, b := range w.Backends {
			if !a.isLocal(b) {
				continue
			}
			st.Local = append(st.Local, b.Addr)
			if a.dp != nil && a.dp.Traced(b.Addr) {
				st.Traced = append(st.Traced, b.Addr)
			}
		}
		out = append(out, st)
	}
	return out
}

// remediation is the seed article's fix for the class, most specific first.
func remediation(c FailureClass, w Webhook) string {
	svc := "the webhook's Service"
	if w.Service != nil {
		svc = "Service " + w.Service.Namespace + "/" + w.Service.Name
	}
	var fix string
	switch c {
	case CertExpired, CertNotYetValid:
		fix = "renew the serving certificate behind " + svc + " (cert-manager: check the Certificate and its issuer) and make sure its caBundle matches"
	case UnknownAuthority:
		fix = "update the caBundle of " + w.Ref.Configuration + " to the CA that signs the serving certificate behind " + svc
	case HostnameMismatch:
		fix = "reissue the serving certificate with the name " + serverName(w)
	case ConnectionRefused:
		fix = "check that the webhook pods behind " + svc + " listen on the target port"
	case CertExpiringSoon:
		fix = "renew the serving certificate behind " + svc + " before it expires (cert-manager: check why renewal has not happened)"
		return fix
	case ServiceNotFound:
		fix = "restore " + svc + " (reinstall the webhook's chart), or remove the webhook configuration " + w.Ref.Configuration + " after a backup (hookscope remediate remove " + w.Ref.Name + ")"
	case NoEndpoints, BackendPodsNotReady:
		fix = "restore the endpoints of " + svc + ": scale its Deployment up and check why its pods are not ready"
	case BackendPodsPending:
		fix = "get the pods behind " + svc + " scheduled (node capacity, taints, affinity, PVCs)"
	case PortMismatch:
		fix = "point the webhook at a port " + svc + " has, or add that port to the Service"
	case SlowResponse:
		return fmt.Sprintf("find why the webhook pods behind %s answer slowly (CPU limits, their own API calls, an external dependency): every write it matches waits, and calls over timeoutSeconds (%ds) fail; narrow its rules or selectors so fewer writes wait", svc, w.TimeoutSeconds)
	default:
		fix = "check the webhook pods behind " + svc
	}
	if w.FailsClosed() {
		fix += "; until then writes it matches are rejected: set failurePolicy Ignore to let them through (hookscope remediate ignore " + w.Ref.Name + ")"
	}
	return fix
}

func serverName(w Webhook) string {
	if w.Service == nil {
		return "of the webhook URL"
	}
	return w.Service.ServerName()
}

// SetObjectChecks turns the cluster-wide object checks on or off (leader
// election calls it). Turning them off forgets their open findings: the
// new leader reports them.
func (a *Agent) SetObjectChecks(on bool) {
	a.objectChecks.Store(on)
	if on {
		select {
		case a.objectsChanged <- struct{}{}:
		default:
		}
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.open {
		if objectKey(k) {
			delete(a.open, k)
		}
	}
}

// objectLoop runs the object checks whenever the inventory changes and
// every probe interval (a pod can turn Pending without any change to the
// objects the inventory watches).
func (a *Agent) objectLoop(ctx context.Context) {
	// A webhook without endpoints is re-checked often: its pods can turn
	// Pending, or come back, with no change to the objects watched.
	const brokenRecheck = 200 * time.Millisecond
	next := a.cfg.ProbeInterval
	for {
		changed := false
		select {
		case <-ctx.Done():
			return
		case <-a.objectsChanged:
			changed = true
		case <-time.After(next):
		}
		next = a.cfg.ProbeInterval
		if !a.objectChecks.Load() {
			continue
		}
		a.mu.Lock()
		ws := make([]Webhook, 0, len(a.webhooks))
		for _, w := range a.webhooks {
			ws = append(ws, w)
		}
		a.mu.Unlock()
		for _, w := range ws {
			class, detail := w.Problem, w.ProblemDetail
			if class == NoEndpoints {
				class, detail = a.pendingPods(ctx, w, class, detail)
				next = brokenRecheck
			}
			a.applyObjects(w, class, detail)
		}
		if changed { // risks depend on the objects only, not on time
			a.analyzeRisks(ws)
		}
	}
}

// analyzeRisks re-evaluates what could block the cluster and logs each
// risk once.
func (a *Agent) analyzeRisks(ws []Webhook) {
	if a.inv == nil {
		return
	}
	backends := map[WebhookRef][]BackendTarget{}
	for _, w := range ws {
		backends[w.Ref] = w.Backends
	}
	vwcs, mwcs := a.inv.Configurations()
	risks := AnalyzeRisks(vwcs, mwcs, nil, backends)
	a.mu.Lock()
	a.risks = risks
	if a.riskSeen == nil {
		a.riskSeen = map[string]bool{}
	}
	var fresh []Risk
	for _, r := range risks {
		key := r.Webhook.String() + "|" + string(r.Kind)
		if !a.riskSeen[key] {
			a.riskSeen[key] = true
			fresh = append(fresh, r)
		}
	}
	a.mu.Unlock()
	for _, r := range fresh {
		a.log.Warn("risk", "webhook", r.Webhook.String(), "kind", r.Kind, "severity", r.Severity, "detail", r.Detail, "fix", r.Fix)
	}
}

// Risks returns the last risk analysis (empty unless this agent runs the
// cluster-wide checks).
func (a *Agent) Risks() []Risk {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.risks)
}

// pendingPods turns NoEndpoints into BackendPodsPending when the Service's
// pods exist but are Pending (the seed's "0/1 Pending" controller pods).
func (a *Agent) pendingPods(ctx context.Context, w Webhook, class FailureClass, detail string) (FailureClass, string) {
	c, d, err := diagnosePending(ctx, w, a.cfg.Pods, class, detail)
	if err != nil {
		a.log.Warn("listing backend pods", "webhook", w.Ref.String(), "err", err)
	}
	return c, d
}

// DiagnoseObjects says what the API server will hit when it calls w, from
// its objects alone (the Service, its endpoints, and with pods, whether its
// pods are Pending); "" when they look callable.
func DiagnoseObjects(ctx context.Context, w Webhook, pods PodLister) (FailureClass, string) {
	if w.Problem != NoEndpoints {
		return w.Problem, w.ProblemDetail
	}
	c, d, _ := diagnosePending(ctx, w, pods, w.Problem, w.ProblemDetail)
	return c, d
}

func diagnosePending(ctx context.Context, w Webhook, lister PodLister, class FailureClass, detail string) (FailureClass, string, error) {
	if lister == nil || len(w.ServiceSelector) == 0 || w.Service == nil {
		return class, detail, nil
	}
	pods, err := lister.ListPods(ctx, w.Service.Namespace, w.ServiceSelector)
	if err != nil {
		return class, detail, err
	}
	var pending []string
	for _, p := range pods {
		if p.Phase == "Pending" {
			s := p.Name
			if p.Reason != "" {
				s += " (" + p.Reason + ")"
			}
			pending = append(pending, s)
		}
	}
	if len(pending) == 0 {
		return class, detail, nil
	}
	return BackendPodsPending, fmt.Sprintf("%s: %d/%d pods of service %q Pending: %s", detail, len(pending), len(pods), w.Service.Name, strings.Join(pending, ", ")), nil
}

// applyObjects opens, changes or resolves the finding about a webhook's
// objects.
func (a *Agent) applyObjects(w Webhook, class FailureClass, detail string) {
	k := probeKey{webhook: w.Ref}
	now := time.Now()
	var reports []Finding
	a.mu.Lock()
	cur := a.open[k]
	switch {
	case cur != nil && cur.Class == class:
	case cur != nil:
		cur.Resolved = &now
		cur.Evidence = append(cur.Evidence, Evidence{Source: "apiserver", At: now, Detail: "now: " + orHealthy(class, detail)})
		reports = append(reports, *cur)
		a.resolved = appendBounded(a.resolved, *cur)
		delete(a.open, k)
	}
	if class != "" && (cur == nil || cur.Class != class) {
		f := &Finding{
			Class: class, Webhook: w.Ref, FailurePolicy: w.FailurePolicy, Effect: w.Effect(), Service: w.Service,
			FirstFailure: now, FirstSeen: now, Remediation: remediation(class, w),
			Evidence: []Evidence{{Source: "apiserver", At: now, Detail: detail}},
		}
		f.ID = findingID(f)
		a.open[k] = f
		reports = append(reports, *f)
	}
	a.mu.Unlock()
	for _, f := range reports {
		if f.Resolved != nil {
			a.log.Info("finding resolved", "webhook", f.Webhook.String(), "class", f.Class, "id", f.ID)
		} else {
			a.log.Warn("finding", "webhook", f.Webhook.String(), "class", f.Class, "effect", f.Effect, "detail", detail)
		}
		a.report(f)
	}
}

func orHealthy(c FailureClass, detail string) string {
	if c == "" {
		return "the objects look callable"
	}
	return string(c) + ": " + detail
}

// refByName finds a webhook of the inventory by its name; the API server's
// texts name the webhook but not its configuration.
func (a *Agent) refByName(name string) WebhookRef {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ref := range a.webhooks {
		if ref.Name == name {
			return ref
		}
	}
	return WebhookRef{Name: name}
}

// signalEvidence adds what the API server reported to the webhook's open
// findings; with none open, it opens one from the signal alone (kept, like
// the correlation findings, until the signals go quiet).
func (a *Agent) signalEvidence(ref WebhookRef, sf SignalFailure, detail string) {
	ev := Evidence{Source: "apiserver-" + sf.Source, At: sf.At, Detail: detail}
	a.mu.Lock()
	hasOpen := false
	for k, f := range a.open {
		if k.webhook == ref {
			hasOpen = true
			if len(f.Evidence) < 20 {
				f.Evidence = append(f.Evidence, ev)
			}
		}
	}
	key := signalKey(ref)
	if a.impacts == nil {
		a.impacts = map[string]*Finding{}
	}
	if f, ok := a.impacts[key]; ok && len(f.Evidence) < 20 {
		f.Evidence = append(f.Evidence, ev)
	}
	_, signalOpen := a.impacts[key]
	if hasOpen || signalOpen {
		a.mu.Unlock()
		return
	}
	w, known := a.webhooks[ref]
	if !known && sf.Source == "metrics" {
		// Counters outlive the webhook: a deleted webhook's last failures
		// are no finding.
		a.mu.Unlock()
		return
	}
	now := time.Now()
	f := &Finding{Class: sf.Class, Webhook: ref, FirstFailure: sf.At, FirstSeen: now, Evidence: []Evidence{ev}}
	if known {
		f.FailurePolicy, f.Effect, f.Service, f.Remediation = w.FailurePolicy, w.Effect(), w.Service, remediation(sf.Class, w)
	}
	switch {
	case sf.Class == SlowResponse:
		f.Effect = "writes slowed"
	case sf.FailOpen:
		f.Effect = "fails open"
	case !known:
		f.Effect = "writes rejected"
	}
	f.ID = findingID(f)
	a.impacts[key] = f
	a.mu.Unlock()
	a.log.Warn("finding", "webhook", ref.String(), "class", f.Class, "source", ev.Source, "detail", detail)
	a.report(*f)
}

// slowThreshold is the mean call latency above which webhook name is slow:
// Config.SlowThreshold, or half its timeoutSeconds if that is less (a
// webhook that uses half its budget times out under a little more load).
func (a *Agent) slowThreshold(name string) time.Duration {
	ref := a.refByName(name)
	a.mu.Lock()
	w, ok := a.webhooks[ref]
	a.mu.Unlock()
	if !ok {
		return a.cfg.SlowThreshold
	}
	return a.slowAfter(w)
}

func (a *Agent) slowAfter(w Webhook) time.Duration {
	return min(a.cfg.SlowThreshold, time.Duration(w.TimeoutSeconds)*time.Second/2)
}

// openClass is the class of the webhook's open finding about its objects
// or backends (the first, by key), or CallsFailing when it has none.
func (a *Agent) openClass(ref WebhookRef) FailureClass {
	a.mu.Lock()
	defer a.mu.Unlock()
	class, key := CallsFailing, ""
	for k, f := range a.open {
		if k.webhook != ref || f.Class == CertExpiringSoon || f.Class == SlowResponse {
			continue
		}
		if s := k.backend.String(); class == CallsFailing || s < key {
			class, key = f.Class, s
		}
	}
	return class
}

// signalKey is the key of a finding opened from the API server's signals alone.
func signalKey(ref WebhookRef) string { return "signal|" + ref.String() }

// openImpact opens a correlation finding, once per impact.
func (a *Agent) openImpact(ref WebhookRef, sf SignalFailure, imp Impact) {
	key := impactKey(ref, imp)
	a.mu.Lock()
	if a.impacts == nil {
		a.impacts = map[string]*Finding{}
	}
	if _, ok := a.impacts[key]; ok {
		a.mu.Unlock()
		return
	}
	w := a.webhooks[ref]
	now := time.Now()
	f := &Finding{Class: sf.Class, Webhook: ref, FailurePolicy: w.FailurePolicy, Effect: "writes rejected", Service: w.Service,
		FirstFailure: imp.Since, FirstSeen: now, Impact: &imp,
		Evidence:    []Evidence{{Source: "apiserver-" + sf.Source, At: sf.At, Detail: sf.Reason + " on " + sf.Object + ": " + sf.Detail}},
		Remediation: remediation(sf.Class, w)}
	if imp.Kind == ImpactNodeNotReady || imp.Kind == ImpactDeletionBlocked {
		f.Evidence = append(f.Evidence, Evidence{Source: "apiserver", At: now, Detail: imp.Detail})
	}
	f.ID = findingID(f)
	a.impacts[key] = f
	a.mu.Unlock()
	a.log.Warn("impact", "kind", imp.Kind, "node", imp.Node, "object", imp.Object, "webhook", ref.String(), "class", f.Class)
	a.report(*f)
}

// resolveImpacts resolves the correlation findings whose key is not in holding.
func (a *Agent) resolveImpacts(holding map[string]bool) {
	now := time.Now()
	var done []Finding
	a.mu.Lock()
	for k, f := range a.impacts {
		if holding[k] {
			continue
		}
		f.Resolved = &now
		done = append(done, *f)
		a.resolved = appendBounded(a.resolved, *f)
		delete(a.impacts, k)
	}
	a.mu.Unlock()
	for _, f := range done {
		if f.Impact != nil {
			a.log.Info("impact resolved", "kind", f.Impact.Kind, "node", f.Impact.Node, "object", f.Impact.Object, "id", f.ID)
		} else {
			a.log.Info("finding resolved: the API server's signals went quiet", "webhook", f.Webhook.String(), "class", f.Class, "id", f.ID)
		}
		a.report(f)
	}
}
