package otel

import (
	"context"
	"errors"
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
//	hookscope.inventory.objects    gauge   objects the inventory caches, by kind (webhookconfiguration, service, endpointslice, apiservice, customresourcedefinition, networkpolicy, poddisruptionbudget)
//	hookscope.inventory.watches    gauge   watches the inventory keeps open on the API server
//	hookscope.guard.actions        counter changes the opt-in guard made to webhook configurations, by action (exclude, revert)
//	hookscope.bpf.program          gauge   1 per TCP tracepoint and the program loaded on it (this kernel's variant), 0 when none could be
//
// Labels are bounded: webhook configuration and name, webhook_kind (the
// call-out's kind: Validating, Mutating, APIService, Conversion; for an
// APIService or a CRD, configuration and webhook are its name), class,
// effect, kind (a risk's), outcome, backend (local backends only).
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
	MetricBPFProgram        = "hookscope.bpf.program"
	MetricGuardActions      = "hookscope.guard.actions"
	labelOutcome            = attribute.Key("outcome")
	labelAction             = attribute.Key("action")
	labelReason             = attribute.Key("reason")
	labelSeverity           = attribute.Key("severity")
	labelClass              = attribute.Key("class")
	labelEffect             = attribute.Key("effect")
	labelKind               = attribute.Key("kind")
	labelBackend            = attribute.Key("backend")
	labelWebhookName        = attribute.Key("webhook")
	labelWebhookConfigation = attribute.Key("configuration")
	labelWebhookKind        = attribute.Key("webhook_kind")
	labelTracepoint         = attribute.Key("tracepoint")
	labelProgram            = attribute.Key("program")
)

// MetricsState is what the agent knows now, read at each scrape.
type MetricsState struct {
	Webhooks      func() []Webhook
	Findings      func() (open, resolved []findings.Finding)
	EventsDropped func() (uint64, error) // nil without a data plane
	// WireCounted: kernel events the kernel counts and does not send, by
	// kind; added to the counts of hookscope.wire.events. Nil without a
	// data plane.
	WireCounted func() (map[string]uint64, error)
	Unparsed    func() (map[string]uint64, error) // by reason; nil without a data plane
	Risks       func() []Risk                     // nil: no risk metric
	Spans       func() SpanStats                  // nil without a span exporter (Exporter.Stats)
	Inventory   func() InventoryStats             // nil: no inventory metrics
	Programs    func() []BPFProgram               // nil without a data plane
}

// BPFProgram is one tracepoint's program as loaded on this kernel
// (hookscope.bpf.program): which variant, or none.
type BPFProgram struct {
	Tracepoint, Program string
	Loaded              bool
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
	guard     metric.Int64Counter

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
	provider, handler, err := newMeterProvider(o)
	if err != nil {
		return nil, err
	}
	m := &Metrics{
		provider: provider,
		handler:  handler,
		expiry:   map[expiryKey]time.Time{},
		callSets: map[callLabelKey]metric.MeasurementOption{},
	}
	meter := m.provider.Meter("github.com/hookscope/hookscope/otel")
	if err := m.syncInstruments(meter); err != nil {
		return nil, err
	}
	obs, err := newObserved(meter, state)
	if err != nil {
		return nil, err
	}
	obs.wire = m.wire
	if _, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.observe(o, obs)
		return nil
	}, obs.instruments()...); err != nil {
		return nil, fmt.Errorf("registering the metrics callback: %w", err)
	}
	return m, nil
}

// newMeterProvider is one MeterProvider with two readers: the Prometheus
// endpoint, and with WithOTLPMetrics an OTLP push.
func newMeterProvider(o metricsOptions) (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, nil, fmt.Errorf("creating the Prometheus exporter: %w", err)
	}
	providerOpts := []sdkmetric.Option{sdkmetric.WithReader(exp)}
	if o.otlp != nil {
		cfg := o.otlp.withDefaults()
		reader, err := newOTLPMetricReader(cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("creating the OTLP metrics exporter for %s: %w", cfg.Endpoint, err)
		}
		res, err := newResource(cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("creating the OTLP metrics exporter: %w", err)
		}
		providerOpts = append(providerOpts, sdkmetric.WithReader(reader), sdkmetric.WithResource(res))
	}
	return sdkmetric.NewMeterProvider(providerOpts...), promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

// syncInstruments creates the instruments recorded as things happen.
func (m *Metrics) syncInstruments(meter metric.Meter) error {
	var errs []error
	wrap := func(name string, e error) {
		if e != nil {
			errs = append(errs, fmt.Errorf("creating %s: %w", name, e))
		}
	}
	var e error
	m.findings, e = meter.Int64Counter(MetricFindings, metric.WithDescription("Findings opened, by class and effect."))
	wrap(MetricFindings, e)
	m.probes, e = meter.Float64Histogram(MetricProbeDuration, metric.WithUnit("s"),
		metric.WithDescription("TLS handshake time of the API-server-style probe, by result."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	wrap(MetricProbeDuration, e)
	m.calls, e = meter.Int64Counter(MetricWebhookCalls, metric.WithDescription("Handshakes to a webhook's backend seen by the kernel, by webhook and outcome (done, rejected, refused, reset, closed)."))
	wrap(MetricWebhookCalls, e)
	m.handshake, e = meter.Float64Histogram(MetricHandshakeDuration, metric.WithUnit("s"),
		metric.WithDescription("Time from connect to the end of the handshake of calls to a webhook's backend, by webhook and outcome."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	wrap(MetricHandshakeDuration, e)
	m.response, e = meter.Float64Histogram(MetricResponseDuration, metric.WithUnit("s"),
		metric.WithDescription("Time from a request to the backend's answer, as the kernel sees it on the wire (the webhook's own latency), by webhook."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	wrap(MetricResponseDuration, e)
	m.guard, e = meter.Int64Counter(MetricGuardActions, metric.WithDescription("Changes the opt-in guard made to webhook configurations, by action (exclude, revert)."))
	wrap(MetricGuardActions, e)
	m.wire, e = meter.Int64ObservableCounter(MetricWireEvents, metric.WithDescription("Events the kernel reported on webhook backend connections, by kind."))
	wrap(MetricWireEvents, e)
	return errors.Join(errs...)
}

func webhookLabels(r callout.Ref, extra ...attribute.KeyValue) []attribute.KeyValue {
	return append([]attribute.KeyValue{labelWebhookConfigation.String(r.Configuration), labelWebhookName.String(r.Name), labelWebhookKind.String(r.Kind)}, extra...)
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

// callLabels is the attribute set of a webhook's calls with an outcome
// (none when outcome is empty: the answers' latency), built once (a call
// can come a thousand times a second). The cache is
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
	labels := webhookLabels(ref)
	if outcome != "" {
		labels = append(labels, labelOutcome.String(outcome))
	}
	opt := metric.WithAttributeSet(attribute.NewSet(labels...))
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
	m.response.Record(context.Background(), d.Seconds(), m.callLabels(ref, ""))
}

// ObserveGuard counts one action of the guard ("exclude", "revert").
func (m *Metrics) ObserveGuard(action string) {
	m.guard.Add(context.Background(), 1, metric.WithAttributes(labelAction.String(action)))
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
