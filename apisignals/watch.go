package apisignals

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube"
)

// Source is which of the API server's signals reported a Failure.
type Source string

const (
	// FromEvent: a Warning Event whose message is a failed call.
	FromEvent Source = "event"
	// FromMetrics: a rise of the admission webhook counters on /metrics.
	FromMetrics Source = "metrics"
)

// EvidenceSource is the findings evidence source of a signal from s:
// findings.Event or findings.Metrics.
func (s Source) EvidenceSource() findings.Source {
	switch s {
	case FromEvent:
		return findings.Event
	case FromMetrics:
		return findings.Metrics
	}
	return findings.Source("apiserver-" + string(s))
}

// Failure is a failed webhook call the API server reported.
type Failure struct {
	WebhookFailure
	// Source is the signal that reported it.
	Source Source
	// At is when it happened: the Event's last occurrence, or the scrape
	// that saw the counters rise.
	At time.Time
	// Since, for a failure read from /metrics, is the previous scrape:
	// the calls failed between Since and At. Zero for an Event.
	Since time.Time
	// Object is the Event's involved object, "Kind namespace/name" (e.g.
	// "DaemonSet kube-system/aws-node"); empty for metrics.
	Object string
	// Reason is the Event's reason, e.g. FailedCreate; empty for metrics.
	Reason string
	// Count is the Event's count, or for metrics how many calls failed
	// (or, for SlowResponse, were made) since the previous scrape.
	Count int
	// Latency is, for SlowResponse, the calls' mean admission latency
	// since the previous scrape.
	Latency time.Duration
	// Deletes: some of the calls that failed closed were DELETEs (from
	// metrics only): objects, a Deployment's dependents among them, cannot
	// be deleted.
	Deletes bool
	// CallOut: the failure is a conversion webhook's or an APIService's,
	// and Detail says it whole.
	CallOut bool
}

// Earliest is the earliest the failure can have happened: the previous
// scrape for a failure read from /metrics, At for an Event.
func (f Failure) Earliest() time.Time {
	if f.Since.IsZero() || f.Since.After(f.At) {
		return f.At
	}
	return f.Since
}

const (
	defaultInterval = 15 * time.Second
	// syncWarnAfter is when Run says the Event cache has not synced.
	syncWarnAfter = 30 * time.Second
	// minScrapeTimeout is the least time one /metrics read may take;
	// otherwise a read may take the interval.
	minScrapeTimeout = 10 * time.Second
	// maxMetricsBody caps one /metrics read.
	maxMetricsBody = 512 << 20
)

// Watcher watches the API server's own signals of failed webhook calls:
// Warning Events whose message is a failed call, and the rise of the
// admission webhook counters on /metrics. It needs list and watch on Events
// and get on the /metrics non-resource URL; it reads, so it keeps working
// while the webhook makes the API server reject writes.
//
// The counters are one API server's: behind a load balancer, successive
// scrapes may reach different API servers; a counter that goes down is
// taken as a restart (a new baseline, nothing reported).
type Watcher struct {
	api      kube.API
	interval time.Duration
	report   func(Failure)
	log      *slog.Logger
	// fetch reads /metrics; tests replace it.
	fetch func(ctx context.Context) (io.ReadCloser, error)
	// slowAfter is the mean latency above which a webhook's calls are
	// slow; nil reports no SlowResponse.
	slowAfter func(webhook string) time.Duration

	reportMu sync.Mutex // report is never called concurrently

	mu       sync.Mutex
	reported map[types.UID]string // Event UID -> resourceVersion reported
	slowNow  map[string]bool      // webhooks last reported SlowResponse
	baseline map[string]WebhookCallCounts
	basedAt  time.Time // when the baseline was scraped; zero before the first
	scrapeOK *bool     // the last scrape's outcome; nil before the first

	synced atomic.Bool // the Event cache has synced

	denied func(DeniedCreate) // OnDenial's report (denials.go); nil: none
}

// NewWatcher returns a Watcher that reads the API server through api,
// scrapes /metrics every interval (15 s if not positive) and calls report
// for each failure; Run starts it. A nil log is slog.Default().
func NewWatcher(api kube.API, interval time.Duration, report func(Failure), log *slog.Logger) *Watcher {
	if interval <= 0 {
		interval = defaultInterval
	}
	if log == nil {
		log = slog.Default()
	}
	w := &Watcher{
		api:      api,
		interval: interval,
		report:   report,
		log:      log,
		reported: map[types.UID]string{},
		slowNow:  map[string]bool{},
	}
	w.fetch = w.fetchMetrics
	return w
}

// SetSlowThreshold makes the scrapes report SlowResponse for a webhook
// whose calls since the previous scrape took longer than after(name) on
// average, and failed neither closed nor open; and, once, Healthy when a
// slow webhook's calls are fast again. Call before Run.
func (w *Watcher) SetSlowThreshold(after func(webhook string) time.Duration) { w.slowAfter = after }

// Run watches Events and scrapes /metrics until ctx ends, then returns nil.
// Neither an unreadable /metrics nor Events the agent may not list stop it:
// each is logged when it starts and when it ends.
func (w *Watcher) Run(ctx context.Context) error {
	warnings := func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("type", corev1.EventTypeWarning).String()
	}
	inf := kube.NewInformer(w.api, corev1.SchemeGroupVersion.WithResource("events"), "", warnings,
		&corev1.Event{}, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := inf.SetTransform(slimEvent); err != nil {
		return fmt.Errorf("watching Events: %w", err)
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.onEvent,
		UpdateFunc: func(_, obj any) { w.onEvent(obj) },
		DeleteFunc: w.forgetEvent,
	})
	if err != nil {
		return fmt.Errorf("watching Events: %w", err)
	}
	var running sync.WaitGroup
	running.Go(func() { inf.RunWithContext(ctx) })
	defer running.Wait()
	go w.awaitSync(ctx, inf.HasSynced)

	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		w.scrape(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// awaitSync marks the Event cache synced once hasSynced says so, and warns
// when that takes longer than syncWarnAfter (and says when it ends).
func (w *Watcher) awaitSync(ctx context.Context, hasSynced cache.InformerSynced) {
	sctx, cancel := context.WithTimeout(ctx, syncWarnAfter)
	defer cancel()
	if cache.WaitForCacheSync(sctx.Done(), hasSynced) {
		w.synced.Store(true)
		return
	}
	if ctx.Err() != nil {
		return
	}
	w.log.Warn("Warning Events not listed yet: failed webhook calls are seen on /metrics only (check RBAC: list, watch events)", "after", syncWarnAfter)
	if cache.WaitForCacheSync(ctx.Done(), hasSynced) {
		w.synced.Store(true)
		w.log.Info("Warning Events listed")
	}
}

// slimEvent keeps only what onEvent reads, and the message only when it
// may be a failed call: a busy cluster has many Warning Events.
func slimEvent(obj any) (any, error) {
	e, ok := obj.(*corev1.Event)
	if !ok {
		return obj, nil // a tombstone
	}
	msg := e.Message
	if !strings.Contains(msg, "failed calling webhook") && !mayBeDenial(msg) {
		msg = ""
	} else if len(msg) > maxScan {
		msg = msg[:maxScan]
	}
	slim := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:              e.Name,
			Namespace:         e.Namespace,
			UID:               e.UID,
			ResourceVersion:   e.ResourceVersion,
			CreationTimestamp: e.CreationTimestamp,
		},
		InvolvedObject: corev1.ObjectReference{
			Kind:      e.InvolvedObject.Kind,
			Namespace: e.InvolvedObject.Namespace,
			Name:      e.InvolvedObject.Name,
		},
		Type:           e.Type,
		Reason:         e.Reason,
		Message:        msg,
		Count:          e.Count,
		FirstTimestamp: e.FirstTimestamp,
		LastTimestamp:  e.LastTimestamp,
		EventTime:      e.EventTime,
	}
	if e.Series != nil {
		slim.Series = &corev1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	return slim, nil
}

// onEvent reports an Event that is a failed webhook call, once per
// resourceVersion: a relist delivers unchanged Events again.
func (w *Watcher) onEvent(obj any) {
	e, ok := obj.(*corev1.Event)
	if !ok || e.Type != corev1.EventTypeWarning {
		return
	}
	wf, ok := ParseWebhookFailure(e.Message)
	if !ok {
		w.onDenialEvent(e)
		return
	}
	w.mu.Lock()
	if rv, seen := w.reported[e.UID]; seen && rv == e.ResourceVersion {
		w.mu.Unlock()
		return
	}
	w.reported[e.UID] = e.ResourceVersion
	w.mu.Unlock()

	involved := e.InvolvedObject.Kind + " " + e.InvolvedObject.Name
	if e.InvolvedObject.Namespace != "" {
		involved = e.InvolvedObject.Kind + " " + e.InvolvedObject.Namespace + "/" + e.InvolvedObject.Name
	}
	count := int(e.Count)
	if e.Series != nil && int(e.Series.Count) > count {
		count = int(e.Series.Count)
	}
	if count < 1 {
		count = 1
	}
	w.emit(Failure{
		WebhookFailure: wf,
		Source:         FromEvent,
		At:             eventTime(e),
		Object:         involved,
		Reason:         e.Reason,
		Count:          count,
	})
}

// eventTime is the Event's last occurrence, from whichever field its
// recorder filled (core/v1 recorders: lastTimestamp; events.k8s.io ones:
// series or eventTime).
func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

// forgetEvent forgets a deleted Event: if it is delivered again, it is
// reported again.
func (w *Watcher) forgetEvent(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if e, ok := obj.(*corev1.Event); ok {
		w.mu.Lock()
		delete(w.reported, e.UID)
		w.mu.Unlock()
	}
}

// emit calls report, one call at a time: Events and scrapes report from
// different goroutines.
func (w *Watcher) emit(f Failure) {
	w.reportMu.Lock()
	defer w.reportMu.Unlock()
	w.report(f)
}
