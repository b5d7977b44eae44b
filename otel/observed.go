package otel

import (
	"fmt"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// observed are the instruments read at each collection, and the state
// they are read from. An instrument whose state function is nil is not
// created.
type observed struct {
	state                    MetricsState
	health, open, risks      metric.Int64ObservableGauge
	expiry                   metric.Float64ObservableGauge
	wire                     metric.Int64ObservableCounter
	dropped, unparsed, spans metric.Int64ObservableCounter
	queue, capacity          metric.Int64ObservableGauge
	invObjects, invWatches   metric.Int64ObservableGauge
	programs                 metric.Int64ObservableGauge
	created                  []metric.Observable
	firstErr                 error
}

// instruments lists what the callback observes.
func (b *observed) instruments() []metric.Observable { return append(b.created, b.wire) }

func (b *observed) gauge(meter metric.Meter, name, desc string) metric.Int64ObservableGauge {
	g, err := meter.Int64ObservableGauge(name, metric.WithDescription(desc))
	b.keep(name, g, err)
	return g
}

func (b *observed) counter(meter metric.Meter, name, desc string) metric.Int64ObservableCounter {
	c, err := meter.Int64ObservableCounter(name, metric.WithDescription(desc))
	b.keep(name, c, err)
	return c
}

func (b *observed) keep(name string, o metric.Observable, err error) {
	if err != nil {
		if b.firstErr == nil {
			b.firstErr = fmt.Errorf("creating %s: %w", name, err)
		}
		return
	}
	b.created = append(b.created, o)
}

// newObserved creates the observable instruments state has data for.
func newObserved(meter metric.Meter, state MetricsState) (*observed, error) {
	b := &observed{state: state}
	b.health = b.gauge(meter, MetricWebhookHealth, "1 for each webhook's current failure class (Healthy when no finding is open).")
	b.open = b.gauge(meter, MetricFindingsOpen, "Open findings, by class.")
	expiry, err := meter.Float64ObservableGauge(MetricCertExpiry, metric.WithUnit("s"), metric.WithDescription("Seconds until the served certificate expires, as last probed; negative when expired."))
	b.keep(MetricCertExpiry, expiry, err)
	b.expiry = expiry
	b.risks = b.gauge(meter, MetricWebhookRisks, "1 for each webhook and kind of risk that could block the cluster.")
	if state.EventsDropped != nil {
		b.dropped = b.counter(meter, MetricBPFEventsDropped, "Events the kernel dropped because the ring buffer was full.")
	}
	if state.Unparsed != nil {
		b.unparsed = b.counter(meter, MetricBPFUnparsed, "What the TC program could not read, by reason: malformed_record, split_record, out_of_order (record parsing stopped for that direction), unparsed_packet (IP fragments, IPv6 extension headers).")
	}
	if state.Spans != nil {
		b.spans = b.counter(meter, MetricExporterSpans, "Spans by outcome: exported, or dropped because the queue was full (queue_full) or the collector stayed unreachable (export_failed).")
		b.queue = b.gauge(meter, MetricExporterQueue, "Spans waiting for the collector: queued or in an export being retried.")
		b.capacity = b.gauge(meter, MetricExporterCapacity, "Spans the queue holds before it drops new ones.")
	}
	if state.Inventory != nil {
		b.invObjects = b.gauge(meter, MetricInventoryObjects, "Objects the inventory caches, by kind: the cluster's webhook configurations, and only the Services and EndpointSlices that webhooks call.")
		b.invWatches = b.gauge(meter, MetricInventoryWatches, "Watches the inventory keeps open on the API server.")
	}
	if state.Programs != nil {
		b.programs = b.gauge(meter, MetricBPFProgram, "1 for each TCP tracepoint and the program loaded on it (the variant this kernel's BTF calls for); 0 when none could be loaded.")
	}
	return b, b.firstErr
}

// observe reads the state into the instruments, at each collection.
func (m *Metrics) observe(o metric.Observer, b *observed) {
	m.observeHealth(o, b)
	m.observeExpiry(o, b)
	st := b.state
	if st.Risks != nil {
		for _, r := range st.Risks() {
			o.ObserveInt64(b.risks, 1, metric.WithAttributes(webhookLabels(r.Webhook, labelKind.String(r.Kind), labelSeverity.String(r.Severity))...))
		}
	}
	m.observeWire(o, b)
	if st.EventsDropped != nil {
		if n, err := st.EventsDropped(); err == nil {
			o.ObserveInt64(b.dropped, int64(n))
		}
	}
	if st.Unparsed != nil {
		if byReason, err := st.Unparsed(); err == nil {
			for reason, n := range byReason {
				o.ObserveInt64(b.unparsed, int64(n), metric.WithAttributes(labelReason.String(reason)))
			}
		}
	}
	if st.Spans != nil {
		sp := st.Spans()
		for outcome, n := range map[string]uint64{"exported": sp.Exported, "queue_full": sp.QueueFull, "export_failed": sp.ExportFailed} {
			o.ObserveInt64(b.spans, int64(n), metric.WithAttributes(labelOutcome.String(outcome)))
		}
		o.ObserveInt64(b.queue, int64(sp.Queued))
		o.ObserveInt64(b.capacity, int64(sp.QueueSize))
	}
	if st.Programs != nil {
		for _, p := range st.Programs() {
			v := int64(0)
			if p.Loaded {
				v = 1
			}
			o.ObserveInt64(b.programs, v, metric.WithAttributes(labelTracepoint.String(p.Tracepoint), labelProgram.String(p.Program)))
		}
	}
	if st.Inventory != nil {
		inv := st.Inventory()
		for kind, n := range inv.Objects {
			o.ObserveInt64(b.invObjects, int64(n), metric.WithAttributes(labelKind.String(kind)))
		}
		o.ObserveInt64(b.invWatches, int64(inv.Watches))
	}
}

// observeHealth: one series per webhook and current (class, effect), and
// the open findings by class.
func (m *Metrics) observeHealth(o metric.Observer, b *observed) {
	openFindings, _ := b.state.Findings()
	type healthKey struct{ class, effect string }
	byWebhook := map[callout.Ref]map[healthKey]bool{}
	byClass := map[findings.Class]int64{}
	for _, f := range openFindings {
		if byWebhook[f.Webhook] == nil {
			byWebhook[f.Webhook] = map[healthKey]bool{}
		}
		byWebhook[f.Webhook][healthKey{string(f.Class), string(f.Effect)}] = true
		byClass[f.Class]++
	}
	for _, w := range b.state.Webhooks() {
		states := byWebhook[w.Ref]
		if len(states) == 0 {
			states = map[healthKey]bool{{string(findings.Healthy), string(findings.NoEffect)}: true}
		}
		for st := range states {
			o.ObserveInt64(b.health, 1, metric.WithAttributes(webhookLabels(w.Ref, labelClass.String(st.class), labelEffect.String(st.effect))...))
		}
	}
	for c, n := range byClass {
		o.ObserveInt64(b.open, n, metric.WithAttributes(labelClass.String(string(c))))
	}
}

// observeExpiry: seconds to each local backend's certificate expiry; a
// backend that is gone is forgotten.
func (m *Metrics) observeExpiry(o metric.Observer, b *observed) {
	local := map[expiryKey]bool{}
	for _, w := range b.state.Webhooks() {
		for _, addr := range w.Local {
			local[expiryKey{w.Ref, addr.String()}] = true
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, notAfter := range m.expiry {
		if !local[k] {
			delete(m.expiry, k)
			continue
		}
		o.ObserveFloat64(b.expiry, time.Until(notAfter).Seconds(), metric.WithAttributes(webhookLabels(k.webhook, labelBackend.String(k.backend))...))
	}
}

// observeWire reads the kernel events by kind: those sent, counted as
// they came, and those the kernel only counted.
func (m *Metrics) observeWire(o metric.Observer, b *observed) {
	var counted map[string]uint64
	if b.state.WireCounted != nil {
		counted, _ = b.state.WireCounted() // a failed read skips this collection's kernel counts
	}
	m.wireKinds.Range(func(k, v any) bool {
		c := v.(*wireCount)
		n := c.n.Load()
		if extra, ok := counted[k.(string)]; ok {
			n += int64(extra)
			delete(counted, k.(string))
		}
		o.ObserveInt64(b.wire, n, c.opt)
		return true
	})
	for kind, n := range counted {
		o.ObserveInt64(b.wire, int64(n), metric.WithAttributes(labelKind.String(kind)))
	}
}
