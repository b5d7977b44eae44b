// Package agent wires hookscope's producers to its findings store on a node:
// the inventory's informers, the data plane's outputs, a rate-limited
// queue of probes, the object checks and risks of the agent that holds the
// cluster's Lease, and leader election. It holds little state of its own:
// the inventory it acts on (a snapshot swapped whole) and the queue.
package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/util/workqueue"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/dataplane"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/guard"
	"github.com/hookscope/hookscope/internal/pace"
	"github.com/hookscope/hookscope/inventory"
	"github.com/hookscope/hookscope/probe"
	"github.com/hookscope/hookscope/risk"
)

// DataPlane is the kernel's view as the agent uses it: it traces the
// backends it is given.
type DataPlane interface {
	// SetBackends replaces the traced backends; an error names those that
	// cannot be traced yet (the agent retries).
	SetBackends(bs []dataplane.Backend) error
	// Tracing says how the kernel traces a backend now (ok false: it
	// does not).
	Tracing(addr netip.AddrPort) (_ dataplane.Tracing, ok bool)
	// Arrivals is what reached a traced backend's interface: the kernel's
	// SYN ledger.
	Arrivals(addr netip.AddrPort) (dataplane.Arrivals, error)
	// OnNode reports whether ip is on this node: its own, or a pod's.
	OnNode(ip netip.Addr) bool
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
	// ReviewProbe makes each probe also send one AdmissionReview (dryRun)
	// and time the answer: SlowResponse before any write waits. Off by
	// default: without it a probe sends nothing the webhook sees.
	ReviewProbe bool
	// ObjectChecks turns on the cluster-wide checks of webhook objects
	// (Service, endpoints, backend pods) and the risks: they fail inside
	// the API server with no packet. One agent per cluster runs them (see
	// RunLeaderElection).
	ObjectChecks bool
	// Pods lists a Service's pods for the Pending check; nil skips it.
	Pods inventory.PodLister
	// AgentNodes says which nodes run an agent (ok false while unknown);
	// the agent holding the Lease probes the backends on other nodes. Nil:
	// this agent's node only (an agent that is not a pod of the DaemonSet).
	AgentNodes func() (nodes map[string]bool, ok bool)
	// PeerLedger reads the SYN ledger of the agent on another node, for
	// the backends there; nil: the Lease holder judges only its own node's.
	PeerLedger PeerLedger
	// APIServer says whether an address is one the API server connects
	// from (the kubernetes Service's endpoints), so that the SYN ledger
	// speaks of its connections alone; nil: every client's.
	APIServer func(netip.Addr) bool
	// Observer gets every probe's result, for metrics; nil for none.
	Observer ProbeObserver
	Logger   *slog.Logger
}

// ProbeObserver receives every probe's result.
type ProbeObserver interface {
	ObserveProbe(ref callout.Ref, backend netip.AddrPort, class findings.Class, handshake time.Duration, leaf *findings.Certificate)
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
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// maxConcurrentProbes bounds the probes in flight, so a node with many
// backends, or a burst of failures, never floods them.
const maxConcurrentProbes = 8

// Agent turns what the producers see into findings on one node.
type Agent struct {
	cfg   Config
	inv   *inventory.Inventory
	guard *guard.Guard         // nil unless opted in
	asm   *dataplane.Assembler // the wire's calls and latency (open connections)
	store *findings.Store
	own   *probe.Own
	// dp is the kernel's view, nil without one: probes and the API only.
	// dpDecided: it is attached, or none will be (the agent is ready only
	// then).
	dp        atomic.Pointer[dataPlaneOf]
	dpDecided atomic.Bool
	queue     workqueue.TypedRateLimitingInterface[task]
	view      atomic.Pointer[view]
	// viewMu orders the view's rebuilds: the inventory's, and the URL
	// loop's when a URL's name resolves elsewhere.
	viewMu sync.Mutex
	// urlNames are the addresses of the URLs webhooks call by name.
	urlNames atomic.Pointer[map[string]netip.AddrPort]
	// leading: this agent runs the cluster-wide checks (object checks,
	// risks) now.
	leading atomic.Bool
	objects chan struct{} // wakes the object checks
	// ticks paces tick: every second while a finding is open (or the
	// guard may act), else asleep until the store reports one.
	ticks *pace.Ticker
	// synced is closed once Synced is true.
	synced     chan struct{}
	syncedOnce sync.Once
	risks      atomic.Pointer[[]risk.Risk]
	// riskMem is what the risk analyses keep between them: backend pods
	// read for their budgets, the wake for the next CA expiry.
	riskMem riskMemory
}

// Parts are what an agent is built from.
type Parts struct {
	Inventory *inventory.Inventory
	Store     *findings.Store
	// DataPlane and Assembler are nil without eBPF. DataPlaneLater: the
	// programs are still loading; AttachDataPlane hands them over.
	DataPlane      DataPlane
	DataPlaneLater bool
	Assembler      *dataplane.Assembler
	// Own is the probes' connection registry the Assembler consults.
	Own *probe.Own
	// Guard, when set (opt-in), acts on the findings while this agent
	// holds the Lease.
	Guard *guard.Guard
}

// New makes an agent from its parts.
func New(cfg Config, p Parts) *Agent {
	cfg.defaults()
	if p.Own == nil {
		p.Own = probe.NewOwn()
	}
	if p.Assembler == nil {
		p.Assembler = dataplane.NewAssembler(dataplane.Config{IsOwn: p.Own.Is, Log: cfg.Logger})
	}
	limiter := workqueue.NewTypedItemExponentialFailureRateLimiter[task](5*time.Millisecond, cfg.ProbeInterval)
	a := &Agent{
		cfg: cfg, inv: p.Inventory, asm: p.Assembler, store: p.Store, own: p.Own, guard: p.Guard,
		queue:   workqueue.NewTypedRateLimitingQueueWithConfig(limiter, workqueue.TypedRateLimitingQueueConfig[task]{Name: "probes"}),
		objects: make(chan struct{}, 1),
		ticks:   pace.New(),
		synced:  make(chan struct{}),
	}
	if p.Store != nil {
		p.Store.AddSink(wakeOnReport{a.ticks})
	}
	a.view.Store(&view{})
	if p.DataPlane != nil {
		a.dp.Store(&dataPlaneOf{p.DataPlane})
	}
	a.dpDecided.Store(!p.DataPlaneLater)
	// Set here, not in Run: leader election may turn the checks on before
	// Run starts.
	a.leading.Store(cfg.ObjectChecks)
	return a
}

// WireOutput is what the data plane's Assembler should report to: failed
// calls and latency into the store, and the probes they call for.
func (a *Agent) WireOutput(o dataplane.Output) dataplane.Output {
	o.FailedCall = a.onFailedCall
	o.HandshakeDone = a.onHandshakeDone
	o.Latency = a.store.Observe
	return o
}

// Run runs the agent until ctx ends. It returns an error if the inventory
// cannot sync.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer a.queue.ShutDown()
	for range maxConcurrentProbes {
		go a.work(ctx)
	}
	go a.probeLoop(ctx)
	go a.objectLoop(ctx)
	go a.tick(ctx)
	return a.inv.Run(ctx, a.cfg.SyncTimeout, func(ws []callout.Webhook) { a.setWebhooks(ws) })
}

// tick lets the store resolve what it holds for a reason (a restart, a
// lost Lease) once its time is up, sees whether blocked paths carry the
// API server's packets again, and runs the guard. It sleeps while no
// finding is open and the guard cannot act.
func (a *Agent) tick(ctx context.Context) {
	a.ticks.Run(ctx, time.Second, func(time.Time) bool {
		more := a.store.Tick()
		a.pathRecovered()
		guarding := a.runGuard(ctx)
		return more || guarding
	})
}

// wakeOnReport wakes the agent's tick when a finding opens, changes or
// resolves.
type wakeOnReport struct{ t *pace.Ticker }

func (w wakeOnReport) Report(findings.Finding) { w.t.Wake() }

// runGuard lets the opt-in guard act on the open findings, on the agent
// that holds the Lease only: two agents never act twice. It reports
// whether the guard ran (it puts webhooks back once healthy, so it needs
// its ticks with no finding open too).
func (a *Agent) runGuard(ctx context.Context) (ran bool) {
	if a.guard == nil || a.inv == nil || !a.leading.Load() {
		return false
	}
	vwcs, mwcs := a.inv.Configurations()
	open, _ := a.store.Findings()
	a.guard.Tick(ctx, open, guard.Configurations{Validating: vwcs, Mutating: mwcs}, time.Now())
	return true
}

// InventoryStats is what the inventory caches and watches now.
func (a *Agent) InventoryStats() inventory.Stats {
	if a.inv == nil {
		return inventory.Stats{}
	}
	return a.inv.Stats()
}

// Synced reports whether the first inventory resolution happened and the
// data plane is attached (or none will be).
func (a *Agent) Synced() bool { return a.view.Load().synced && a.dpDecided.Load() }

// WhenSynced is closed once Synced is true.
func (a *Agent) WhenSynced() <-chan struct{} { return a.synced }

// noteSynced closes WhenSynced's channel once Synced is true.
func (a *Agent) noteSynced() {
	if a.Synced() {
		a.syncedOnce.Do(func() { close(a.synced) })
	}
}

// dataPlaneOf holds the data plane for the atomic pointer.
type dataPlaneOf struct{ DataPlane }

// dataPlane is the kernel's view, nil without one (or before it loads).
func (a *Agent) dataPlane() DataPlane {
	if d := a.dp.Load(); d != nil {
		return d.DataPlane
	}
	return nil
}

// AttachDataPlane hands over the data plane loaded after the agent was
// made (Parts.DataPlaneLater), or nil if it could not load: the programs
// load while the inventory lists, and trace the local backends from then
// on. Until it is called the agent is not ready.
func (a *Agent) AttachDataPlane(dp DataPlane) {
	if dp != nil {
		a.dp.Store(&dataPlaneOf{dp})
		// Under viewMu: a resolution in progress either finishes first
		// (and is rebuilt here) or starts after and sees dp.
		a.viewMu.Lock()
		v := a.view.Load()
		a.viewMu.Unlock()
		if v.synced {
			a.setWebhooks(v.list) // hands the backends over, a URL's on this node too
		}
	}
	a.dpDecided.Store(true)
	a.noteSynced()
}

// Findings returns the open findings and the recently resolved ones.
func (a *Agent) Findings() (open, resolved []findings.Finding) { return a.store.Findings() }

// Risks returns the last risk analysis (empty unless this agent runs the
// cluster-wide checks).
func (a *Agent) Risks() []risk.Risk {
	if r := a.risks.Load(); r != nil {
		return *r
	}
	return nil
}

// SetObjectChecks turns the cluster-wide checks on or off (leader election
// calls it). Turning them off hands their open findings to the store to
// hold: they go on if this agent leads again soon, and resolve, saying so,
// if not.
func (a *Agent) SetObjectChecks(on bool) {
	a.leading.Store(on)
	a.store.SetLeading(on)
	a.ticks.Wake() // the guard acts only while leading
	if on {
		a.wakeObjects()
	}
}

func (a *Agent) wakeObjects() {
	select {
	case a.objects <- struct{}{}:
	default:
	}
}
