package otel

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// Metric names (OTel form; the Prometheus endpoint shows them with dots
// as underscores, the unit and, for counters, _total):
//
//	hookscope.webhook.health       gauge   1 per webhook for its current class and effect (Healthy/none when no finding is open)
//	hookscope.findings.open        gauge   open findings by class
//	hookscope.findings             counter findings opened, by class and effect
//	hookscope.probe.duration       histogram (s) probe handshake time, by result class
//	hookscope.cert.expiry          gauge (s) seconds until the served leaf expires, per webhook and backend (negative: expired)
//	hookscope.wire.events          counter kernel events, by kind
//	hookscope.bpf.events.dropped   counter events the kernel could not queue (ring buffer full)
//	hookscope.webhook.risks        gauge   1 per webhook and risk kind that could block the cluster (leader only)
//	hookscope.webhook.calls        counter handshakes to a webhook's backend the kernel saw, by webhook and outcome
//	hookscope.handshake.duration   histogram (s) connect to handshake end of those calls, by webhook and outcome
//	hookscope.backend.response.duration histogram (s) the API server's ClientHello to the backend's ServerHello, by webhook
//	hookscope.exporter.spans       counter spans by outcome: exported, queue_full, export_failed (the last two were dropped)
//	hookscope.exporter.queue.length   gauge spans waiting for the collector
//	hookscope.exporter.queue.capacity gauge what the queue holds before it drops
//	hookscope.inventory.objects    gauge   objects the inventory caches, by kind (webhookconfiguration, service, endpointslice)
//	hookscope.inventory.watches    gauge   watches the inventory keeps open on the API server
//
// Labels are bounded: webhook configuration and name, class, effect, kind,
// outcome, backend (local backends only).
//
// The same instruments go to the Prometheus endpoint (Handler) and, with
// WithOTLPMetrics, to an OTLP collector: one MeterProvider, two readers.
const (
	MetricWebhookHealth     = "hookscope.webhook.health"
	MetricFindingsOpen      = "hookscope.findings.open"
	MetricFindings          = "hookscope.findings"
	MetricProbeDuration     = "hookscope.probe.duration"
	MetricCertExpiry        = "hookscope.cert.expiry"
	MetricWireEvents        = "hookscope.wire.events"
	MetricBPFEventsDropped  = "hookscope.bpf.events.dropped"
	MetricBPFUnparsed       = "hookscope.bpf.unparsed"
	MetricWebhookRisks      = "hookscope.webhook.risks"
	MetricWebhookCalls      = "hookscope.webhook.calls"
	MetricHandshakeDuration = "hookscope.handshake.duration"
	MetricResponseDuration  = "hookscope.backend.response.duration"
	MetricExporterSpans     = "hookscope.exporter.spans"
	MetricExporterQueue     = "hookscope.exporter.queue.length"
	MetricExporterCapacity  = "hookscope.exporter.queue.capacity"
	MetricInventoryObjects  = "hookscope.inventory.objects"
	MetricInventoryWatches  = "hookscope.inventory.watches"
	labelOutcome            = attribute.Key("outcome")
	labelReason             = attribute.Key("reason")
	labelSeverity           = attribute.Key("severity")
	labelClass              = attribute.Key("class")
	labelEffect             = attribute.Key("effect")
	labelKind               = attribute.Key("kind")
	labelBackend            = attribute.Key("backend")
	labelWebhookName        = attribute.Key("webhook")
	labelWebhookConfigation = attribute.Key("configuration")
)

// MetricsState is what the agent knows now, read at each scrape.
type MetricsState struct {
	Webhooks      func() []Webhook
	Findings      func() (open, resolved []findings.Finding)
	EventsDropped func() (uint64, error)            // nil without a data plane
	Unparsed      func() (map[string]uint64, error) // by reason; nil without a data plane
	Risks         func() []Risk                     // nil: no risk metric
	Spans         func() SpanStats                  // nil without a span exporter (Exporter.Stats)
	Inventory     func() InventoryStats             // nil: no inventory metrics
}

// Webhook is a webhook and its backends on this agent's node.
type Webhook struct {
	Ref   callout.Ref
	Local []netip.AddrPort
}

// Risk is one risk a webhook carries (hookscope.webhook.risks).
type Risk struct {
	Webhook  callout.Ref
	Kind     string
	Severity string
}

// InventoryStats is what the inventory caches, by kind
// (webhookconfiguration, service, endpointslice), and its watches.
type InventoryStats struct {
	Objects map[string]int
	Watches int
}

// MetricsOption adds to what NewMetrics builds.
type MetricsOption func(*metricsOptions)

type metricsOptions struct {
	otlp *Config
}

// WithOTLPMetrics also pushes every instrument to cfg.Endpoint over
// cfg.Protocol every cfg.MetricsInterval, with the spans' resource
// (service.name, k8s.node.name). Counters are cumulative, so an export the
// collector missed while it was down is made up by the next one.
func WithOTLPMetrics(cfg Config) MetricsOption {
	return func(o *metricsOptions) { o.otlp = &cfg }
}

// Metrics is the agent's Prometheus endpoint, and optionally its OTLP
// metrics, built on the OTel metrics SDK. It observes probes, kernel events,
// the data plane's calls and the findings.
type Metrics struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler

	findings  metric.Int64Counter
	probes    metric.Float64Histogram
	wire      metric.Int64ObservableCounter
	calls     metric.Int64Counter
	handshake metric.Float64Histogram
	response  metric.Float64Histogram

	mu     sync.Mutex
	expiry map[expiryKey]time.Time

	wireKinds sync.Map                                  // event kind -> *wireCount
	callSets  map[callLabelKey]metric.MeasurementOption // under mu
}

// wireCount is one kind's kernel events, counted as they come and read by
// the metrics callback: an atomic add per event, where the SDK's counter
// resolved its attribute set every time (126 ns and an allocation).
type wireCount struct {
	n   atomic.Int64
	opt metric.ObserveOption
}

type expiryKey struct {
	webhook callout.Ref
	backend string
}

// latencyBuckets (s) suit a TLS handshake on a cluster network: from half
// a millisecond to the API server's 10 s webhook timeout ceiling.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// NewMetrics registers the instruments; Handler serves them.
func NewMetrics(state MetricsState, opts ...MetricsOption) (*Metrics, error) {
	var o metricsOptions
	for _, opt := range opts {
		opt(&o)
	}
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("creating the Prometheus exporter: %w", err)
	}
	providerOpts := []sdkmetric.Option{sdkmetric.WithReader(exp)}
	if o.otlp != nil {
		cfg := o.otlp.withDefaults()
		reader, err := newOTLPMetricReader(cfg)
		if err != nil {
			return nil, fmt.Errorf("creating the OTLP metrics exporter for %s: %w", cfg.Endpoint, err)
		}
		res, err := newResource(cfg)
		if err != nil {
			return nil, fmt.Errorf("creating the OTLP metrics exporter: %w", err)
		}
		providerOpts = append(providerOpts, sdkmetric.WithReader(reader), sdkmetric.WithResource(res))
	}
	m := &Metrics{
		provider: sdkmetric.NewMeterProvider(providerOpts...),
		handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		expiry:   map[expiryKey]time.Time{},
		callSets: map[callLabelKey]metric.MeasurementOption{},
	}
	meter := m.provider.Meter("github.com/hookscope/hookscope/otel")
	if m.findings, err = meter.Int64Counter(MetricFindings, metric.WithDescription("Findings opened, by class and effect.")); err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricFindings, err)
	}
	if m.probes, err = meter.Float64Histogram(MetricProbeDuration, metric.WithUnit("s"),
		metric.WithDescription("TLS handshake time of the API-server-style probe, by result."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricProbeDuration, err)
	}
	if m.calls, err = meter.Int64Counter(MetricWebhookCalls, metric.WithDescription("Handshakes to a webhook's backend seen by the kernel, by webhook and outcome (done, rejected, refused, reset, closed).")); err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricWebhookCalls, err)
	}
	if m.handshake, err = meter.Float64Histogram(MetricHandshakeDuration, metric.WithUnit("s"),
		metric.WithDescription("Time from connect to the end of the handshake of calls to a webhook's backend, by webhook and outcome."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricHandshakeDuration, err)
	}
	if m.response, err = meter.Float64Histogram(MetricResponseDuration, metric.WithUnit("s"),
		metric.WithDescription("Time from a request to the backend's answer, as the kernel sees it on the wire (the webhook's own latency), by webhook."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricResponseDuration, err)
	}
	if m.wire, err = meter.Int64ObservableCounter(MetricWireEvents, metric.WithDescription("Events the kernel reported on webhook backend connections, by kind.")); err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricWireEvents, err)
	}
	health, err := meter.Int64ObservableGauge(MetricWebhookHealth, metric.WithDescription("1 for each webhook's current failure class (Healthy when no finding is open)."))
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricWebhookHealth, err)
	}
	open, err := meter.Int64ObservableGauge(MetricFindingsOpen, metric.WithDescription("Open findings, by class."))
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricFindingsOpen, err)
	}
	expiry, err := meter.Float64ObservableGauge(MetricCertExpiry, metric.WithUnit("s"), metric.WithDescription("Seconds until the served certificate expires, as last probed; negative when expired."))
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricCertExpiry, err)
	}
	risks, err := meter.Int64ObservableGauge(MetricWebhookRisks, metric.WithDescription("1 for each webhook and kind of risk that could block the cluster."))
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricWebhookRisks, err)
	}
	instruments := []metric.Observable{health, open, expiry, risks, m.wire}
	var dropped metric.Int64ObservableCounter
	if state.EventsDropped != nil {
		if dropped, err = meter.Int64ObservableCounter(MetricBPFEventsDropped, metric.WithDescription("Events the kernel dropped because the ring buffer was full.")); err != nil {
			return nil, fmt.Errorf("creating %s: %w", MetricBPFEventsDropped, err)
		}
		instruments = append(instruments, dropped)
	}
	var unparsed metric.Int64ObservableCounter
	if state.Unparsed != nil {
		if unparsed, err = meter.Int64ObservableCounter(MetricBPFUnparsed, metric.WithDescription("What the TC program could not read, by reason: malformed_record, split_record, out_of_order (record parsing stopped for that direction), unparsed_packet (IP fragments, IPv6 extension headers).")); err != nil {
			return nil, fmt.Errorf("creating %s: %w", MetricBPFUnparsed, err)
		}
		instruments = append(instruments, unparsed)
	}
	var spans metric.Int64ObservableCounter
	var queue, capacity metric.Int64ObservableGauge
	if state.Spans != nil {
		if spans, err = meter.Int64ObservableCounter(MetricExporterSpans, metric.WithDescription("Spans by outcome: exported, or dropped because the queue was full (queue_full) or the collector stayed unreachable (export_failed).")); err != nil {
			return nil, fmt.Errorf("creating %s: %w", MetricExporterSpans, err)
		}
		if queue, err = meter.Int64ObservableGauge(MetricExporterQueue, metric.WithDescription("Spans waiting for the collector: queued or in an export being retried.")); err != nil {
			return nil, fmt.Errorf("creating %s: %w", MetricExporterQueue, err)
		}
		if capacity, err = meter.Int64ObservableGauge(MetricExporterCapacity, metric.WithDescription("Spans the queue holds before it drops new ones.")); err != nil {
			return nil, fmt.Errorf("creating %s: %w", MetricExporterCapacity, err)
		}
		instruments = append(instruments, spans, queue, capacity)
	}
	var invObjects, invWatches metric.Int64ObservableGauge
	if state.Inventory != nil {
		if invObjects, err = meter.Int64ObservableGauge(MetricInventoryObjects, metric.WithDescription("Objects the inventory caches, by kind: the cluster's webhook configurations, and only the Services and EndpointSlices that webhooks call.")); err != nil {
			return nil, fmt.Errorf("creating %s: %w", MetricInventoryObjects, err)
		}
		if invWatches, err = meter.Int64ObservableGauge(MetricInventoryWatches, metric.WithDescription("Watches the inventory keeps open on the API server.")); err != nil {
			return nil, fmt.Errorf("creating %s: %w", MetricInventoryWatches, err)
		}
		instruments = append(instruments, invObjects, invWatches)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		openFindings, _ := state.Findings()
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
		webhooks := state.Webhooks()
		local := map[expiryKey]bool{}
		for _, w := range webhooks {
			for _, b := range w.Local {
				local[expiryKey{w.Ref, b.String()}] = true
			}
		}
		for _, w := range webhooks {
			states := byWebhook[w.Ref]
			if len(states) == 0 {
				states = map[healthKey]bool{{string(findings.Healthy), string(findings.NoEffect)}: true}
			}
			for st := range states {
				o.ObserveInt64(health, 1, metric.WithAttributes(webhookLabels(w.Ref, labelClass.String(st.class), labelEffect.String(st.effect))...))
			}
		}
		for c, n := range byClass {
			o.ObserveInt64(open, n, metric.WithAttributes(labelClass.String(string(c))))
		}
		m.mu.Lock()
		for k, notAfter := range m.expiry {
			if !local[k] { // the backend is gone
				delete(m.expiry, k)
				continue
			}
			o.ObserveFloat64(expiry, time.Until(notAfter).Seconds(), metric.WithAttributes(webhookLabels(k.webhook, labelBackend.String(k.backend))...))
		}
		m.mu.Unlock()
		if state.Risks != nil {
			for _, r := range state.Risks() {
				o.ObserveInt64(risks, 1, metric.WithAttributes(webhookLabels(r.Webhook, labelKind.String(r.Kind), labelSeverity.String(r.Severity))...))
			}
		}
		m.wireKinds.Range(func(_, v any) bool {
			c := v.(*wireCount)
			o.ObserveInt64(m.wire, c.n.Load(), c.opt)
			return true
		})
		if state.EventsDropped != nil {
			if n, err := state.EventsDropped(); err == nil {
				o.ObserveInt64(dropped, int64(n))
			}
		}
		if state.Unparsed != nil {
			if byReason, err := state.Unparsed(); err == nil {
				for reason, n := range byReason {
					o.ObserveInt64(unparsed, int64(n), metric.WithAttributes(labelReason.String(reason)))
				}
			}
		}
		if state.Spans != nil {
			st := state.Spans()
			for outcome, n := range map[string]uint64{"exported": st.Exported, "queue_full": st.QueueFull, "export_failed": st.ExportFailed} {
				o.ObserveInt64(spans, int64(n), metric.WithAttributes(labelOutcome.String(outcome)))
			}
			o.ObserveInt64(queue, int64(st.Queued))
			o.ObserveInt64(capacity, int64(st.QueueSize))
		}
		if state.Inventory != nil {
			st := state.Inventory()
			for kind, n := range st.Objects {
				o.ObserveInt64(invObjects, int64(n), metric.WithAttributes(labelKind.String(kind)))
			}
			o.ObserveInt64(invWatches, int64(st.Watches))
		}
		return nil
	}, instruments...)
	if err != nil {
		return nil, fmt.Errorf("registering the metrics callback: %w", err)
	}
	return m, nil
}

func webhookLabels(r callout.Ref, extra ...attribute.KeyValue) []attribute.KeyValue {
	return append([]attribute.KeyValue{labelWebhookConfigation.String(r.Configuration), labelWebhookName.String(r.Name)}, extra...)
}

// Handler serves the Prometheus text format.
func (m *Metrics) Handler() http.Handler { return m.handler }

// ObserveProbe records one probe of a webhook's backend: its handshake
// time by class, and the served certificate's expiry.
func (m *Metrics) ObserveProbe(w callout.Ref, backend netip.AddrPort, class findings.Class, handshake time.Duration, leaf *findings.Certificate) {
	m.probes.Record(context.Background(), handshake.Seconds(), metric.WithAttributes(labelClass.String(string(class))))
	if leaf != nil {
		m.mu.Lock()
		m.expiry[expiryKey{w, backend.String()}] = leaf.NotAfter
		m.mu.Unlock()
	}
}

// ReportCall counts one handshake to a webhook's backend and records its
// latencies. A backend serving several
// webhooks is counted under the first, as its call span is named.
func (m *Metrics) ReportCall(c callout.Call) {
	var ref callout.Ref
	if len(c.Webhooks) > 0 {
		ref = c.Webhooks[0]
	}
	ctx := context.Background()
	withOutcome := m.callLabels(ref, c.Outcome)
	m.calls.Add(ctx, 1, withOutcome)
	if !c.Start.IsZero() && !c.End.Before(c.Start) {
		m.handshake.Record(ctx, c.End.Sub(c.Start).Seconds(), withOutcome)
	}
}

// callLabels is the attribute set of a webhook's calls with an outcome,
// built once (a call can come a thousand times a second). The cache is
// emptied when it outgrows maxCallLabelSets, so webhooks that come and go
// do not pile up in it.
func (m *Metrics) callLabels(ref callout.Ref, outcome string) metric.MeasurementOption {
	key := callLabelKey{ref, outcome}
	m.mu.Lock()
	defer m.mu.Unlock()
	if opt, ok := m.callSets[key]; ok {
		return opt
	}
	if len(m.callSets) >= maxCallLabelSets {
		clear(m.callSets)
	}
	opt := metric.WithAttributeSet(attribute.NewSet(webhookLabels(ref, labelOutcome.String(outcome))...))
	m.callSets[key] = opt
	return opt
}

type callLabelKey struct {
	ref     callout.Ref
	outcome string
}

const maxCallLabelSets = 4096

// ObserveResponse records a webhook's time to answer a request, as the
// kernel saw it on the wire.
func (m *Metrics) ObserveResponse(ref callout.Ref, d time.Duration) {
	m.response.Record(context.Background(), d.Seconds(), metric.WithAttributes(webhookLabels(ref)...))
}

// ObserveWire counts one kernel event of kind.
func (m *Metrics) ObserveWire(kind string) {
	// Once per kernel event: an atomic add; the attribute set is built once
	// per kind (a handful) and the total read at collection.
	c, ok := m.wireKinds.Load(kind)
	if !ok {
		c, _ = m.wireKinds.LoadOrStore(kind, &wireCount{opt: metric.WithAttributeSet(attribute.NewSet(labelKind.String(kind)))})
	}
	c.(*wireCount).n.Add(1)
}

// Report counts a finding when it opens (a findings.Sink).
func (m *Metrics) Report(f findings.Finding) {
	if f.Resolved != nil {
		return
	}
	m.findings.Add(context.Background(), 1, metric.WithAttributes(labelClass.String(string(f.Class)), labelEffect.String(string(f.Effect))))
}

// Shutdown stops the meter provider, pushing the OTLP metrics one last
// time when they are on.
func (m *Metrics) Shutdown(ctx context.Context) error { return m.provider.Shutdown(ctx) }
