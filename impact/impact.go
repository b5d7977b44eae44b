// Package impact correlates the API server's reports of failed webhook
// calls with what they break: a controller that cannot create its pods, a
// node that stays NotReady because its CNI DaemonSet pod (aws-node) cannot
// be created there, a Deployment whose deletion does not complete. It is
// cluster-wide work: the agent that holds the Lease runs it. It reads the
// cluster through listers (informers, slimmed to what it needs), never by
// polling the API.
package impact

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube"
)

// Store is what the correlation hands findings to.
type Store interface {
	Signal(w callout.Webhook, known bool, sig findings.Signal)
	OpenImpact(w callout.Webhook, class findings.Class, imp findings.Impact, evidence ...findings.Evidence)
	ResolveQuiet(holding func(findings.Key) bool)
	OpenClass(ref callout.Ref) findings.Class
}

// Webhooks finds the webhooks the API server's texts name.
type Webhooks interface {
	// WebhookByName is the webhook of that name (a Webhook with only the
	// name, and false, when the inventory has none).
	WebhookByName(name string) (callout.Webhook, bool)
}

// Windows.
const (
	// signalQuiet is how long after the last failing call a finding opened
	// from the API server's signals alone stays open.
	signalQuiet = time.Minute
	// impactWindow is how long a FailedCreate keeps a controller blocked
	// without a new one (controllers retry with backoff up to minutes).
	impactWindow = 5 * time.Minute
)

// Correlator links failed calls to what they break.
type Correlator struct {
	store    Store
	webhooks Webhooks
	cluster  *cluster
	clock    clock.WithTicker
	log      *slog.Logger
	poke     chan struct{} // evaluate now: a signal or a node changed

	mu         sync.Mutex
	blocked    map[string]blockedController // by object, "DaemonSet kube-system/aws-node"
	deleting   map[string]Signal            // by webhook name: its DELETE calls fail closed (last signal)
	lastSignal map[string]time.Time         // by webhook name
	slowOnly   map[string]bool              // by webhook name: its signals since it went quiet were SlowResponse only
}

// blockedController is a controller the API server refused pods for.
type blockedController struct {
	object  string
	webhook callout.Webhook // as resolved when first reported: keys stay stable if the webhook goes
	failure Signal
	first   time.Time
	last    time.Time
}

// New returns the correlation, which reads the cluster through api; Run
// starts it. clk may be nil (real time).
func New(api kube.API, store Store, webhooks Webhooks, clk clock.WithTicker, log *slog.Logger) *Correlator {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if log == nil {
		log = slog.Default()
	}
	c := &Correlator{store: store, webhooks: webhooks, clock: clk, log: log, poke: make(chan struct{}, 1),
		blocked: map[string]blockedController{}, deleting: map[string]Signal{},
		lastSignal: map[string]time.Time{}, slowOnly: map[string]bool{}}
	c.cluster = newCluster(api, c.wake)
	return c
}

// Signal is one failed (or slow) call the API server reported, as the
// correlation reads it.
type Signal struct {
	// Webhook is the webhook's name as the API server's text gives it.
	Webhook string
	// Class is why the call failed; empty when the signal does not say.
	Class    findings.Class
	FailOpen bool
	// Detail is the API server's cause.
	Detail string
	// Source is findings.Event or findings.Metrics.
	Source findings.Source
	At     time.Time
	// Since, for a signal from /metrics, is the previous scrape: the calls
	// failed between Since and At. Zero for an Event.
	Since time.Time
	// Object ("Kind namespace/name") and Reason are the Event's.
	Object, Reason string
	// Count is how many calls it stands for.
	Count int
	// Latency is, for SlowResponse, the calls' mean latency.
	Latency time.Duration
	// Deletes: DELETEs failed closed among them.
	Deletes bool
	// CallOut: a conversion webhook's or an APIService's failure, which
	// Detail says whole.
	CallOut bool
}

// Run watches the cluster objects until ctx ends, and evaluates the
// signals OnSignal receives against them.
func (c *Correlator) Run(ctx context.Context) error {
	c.cluster.start(ctx)
	t := c.clock.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		case <-c.poke:
		}
		c.Evaluate()
	}
}

func (c *Correlator) wake() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// OnSignal takes one of the API server's signals: it is evidence of the
// webhook's findings (or opens one), and a FailedCreate Event marks its
// controller blocked.
func (c *Correlator) OnSignal(sf Signal) {
	w, known := c.webhooks.WebhookByName(sf.Webhook)
	if sf.Class == "" {
		// The counters say that calls fail, not why: the webhook's open
		// finding does (the object checks, the probe).
		sf.Class = c.store.OpenClass(w.Ref)
	}
	if !c.noteSignal(sf) {
		return
	}
	c.store.Signal(w, known, findings.Signal{Class: sf.Class, FailOpen: sf.FailOpen, Started: sf.At, Since: sf.Since, Evidence: evidence(sf)})
	if sf.Source != findings.Event || sf.Reason != "FailedCreate" || sf.Object == "" {
		return
	}
	c.block(w, sf)
}

// block marks the controller a FailedCreate names blocked by webhook w,
// and opens that impact: its pods cannot be created.
func (c *Correlator) block(w callout.Webhook, sf Signal) {
	c.mu.Lock()
	b, ok := c.blocked[sf.Object]
	if !ok || b.webhook.Ref.Name != sf.Webhook {
		b = blockedController{object: sf.Object, webhook: w, first: sf.At}
	}
	b.failure, b.last = sf, sf.At
	c.blocked[sf.Object] = b
	c.mu.Unlock()
	c.store.OpenImpact(w, sf.Class, findings.Impact{Kind: findings.ImpactControllerBlocked, Object: sf.Object, Since: b.first,
		Detail: fmt.Sprintf("%s cannot create pods: %s", sf.Object, sf.Detail)}, eventEvidence(sf))
	c.wake()
}

// noteSignal keeps when the webhook last failed; it reports whether the
// signal is a failure (a Healthy one says a slow webhook is fast again).
func (c *Correlator) noteSignal(sf Signal) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sf.Class == findings.Healthy {
		// A slow webhook is fast again: its finding resolves now, unless
		// its calls also failed.
		if c.slowOnly[sf.Webhook] {
			delete(c.lastSignal, sf.Webhook)
			delete(c.slowOnly, sf.Webhook)
		}
		c.wake()
		return false
	}
	_, active := c.lastSignal[sf.Webhook]
	c.slowOnly[sf.Webhook] = sf.Class == findings.SlowResponse && (!active || c.slowOnly[sf.Webhook])
	c.lastSignal[sf.Webhook] = c.clock.Now()
	if sf.Deletes {
		c.deleting[sf.Webhook] = sf
		c.wake()
	}
	return true
}

// evidence is what a signal adds to a finding.
func evidence(sf Signal) findings.Evidence {
	if sf.Source == findings.Event {
		return eventEvidence(sf)
	}
	detail := fmt.Sprintf("API server metrics: %d more calls to %s failed", sf.Count, sf.Webhook)
	switch {
	case sf.CallOut:
		detail = "API server metrics: " + sf.Detail
	case sf.Class == findings.WrongPath:
		detail += " (rejection_code 404: the webhook answered HTTP 404 at its path)"
	case sf.Class == findings.ServerError:
		detail += " (rejection_code 500: the webhook answered HTTP 500)"
	case sf.Class == findings.SlowResponse:
		detail = fmt.Sprintf("API server metrics: %d calls to %s took %s on average", sf.Count, sf.Webhook, sf.Latency.Round(time.Millisecond))
	case sf.FailOpen:
		detail = fmt.Sprintf("API server metrics: %d more calls to %s failed open", sf.Count, sf.Webhook)
	}
	return findings.Evidence{Source: findings.Metrics, At: sf.At, Detail: detail, Calls: sf.Count}
}

// eventEvidence is a signal as "Reason on Object: detail".
func eventEvidence(sf Signal) findings.Evidence {
	return findings.Evidence{Source: sf.Source, At: sf.At, Calls: sf.Count,
		Detail: fmt.Sprintf("Event %s on %s: %s", sf.Reason, sf.Object, sf.Detail)}
}
