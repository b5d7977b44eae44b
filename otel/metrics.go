package otel

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/hookscope/hookscope/agent"
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
//
// Labels are bounded: webhook configuration and name, class, effect, kind,
// backend (local backends only).
const (
	MetricWebhookHealth     = "hookscope.webhook.health"
	MetricFindingsOpen      = "hookscope.findings.open"
	MetricFindings          = "hookscope.findings"
	MetricProbeDuration     = "hookscope.probe.duration"
	MetricCertExpiry        = "hookscope.cert.expiry"
	MetricWireEvents        = "hookscope.wire.events"
	MetricBPFEventsDropped  = "hookscope.bpf.events.dropped"
	MetricWebhookRisks      = "hookscope.webhook.risks"
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
	Webhooks      func() []agent.WebhookStatus
	Findings      func() (open, resolved []agent.Finding)
	EventsDropped func() (uint64, error) // nil without a data plane
	Risks         func() []agent.Risk    // nil: no risk metric
}

// Metrics is the agent's Prometheus endpoint, built on the OTel metrics SDK.
// It implements agent.Observer.
type Metrics struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler

	findings metric.Int64Counter
	probes   metric.Float64Histogram
	wire     metric.Int64Counter

	mu     sync.Mutex
	expiry map[expiryKey]time.Time
}

type expiryKey struct {
	webhook agent.WebhookRef
	backend string
}

// NewMetrics registers the instruments; Handler serves them.
func NewMetrics(state MetricsState) (*Metrics, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("creating the Prometheus exporter: %w", err)
	}
	m := &Metrics{
		provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		expiry:   map[expiryKey]time.Time{},
	}
	meter := m.provider.Meter("github.com/hookscope/hookscope/otel")
	if m.findings, err = meter.Int64Counter(MetricFindings, metric.WithDescription("Findings opened, by class and effect.")); err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricFindings, err)
	}
	if m.probes, err = meter.Float64Histogram(MetricProbeDuration, metric.WithUnit("s"),
		metric.WithDescription("TLS handshake time of the API-server-style probe, by result."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)); err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricProbeDuration, err)
	}
	if m.wire, err = meter.Int64Counter(MetricWireEvents, metric.WithDescription("Events the kernel reported on webhook backend connections, by kind.")); err != nil {
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
	instruments := []metric.Observable{health, open, expiry, risks}
	var dropped metric.Int64ObservableCounter
	if state.EventsDropped != nil {
		if dropped, err = meter.Int64ObservableCounter(MetricBPFEventsDropped, metric.WithDescription("Events the kernel dropped because the ring buffer was full.")); err != nil {
			return nil, fmt.Errorf("creating %s: %w", MetricBPFEventsDropped, err)
		}
		instruments = append(instruments, dropped)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		openFindings, _ := state.Findings()
		type healthKey struct{ class, effect string }
		byWebhook := map[agent.WebhookRef]map[healthKey]bool{}
		byClass := map[agent.FailureClass]int64{}
		for _, f := range openFindings {
			if byWebhook[f.Webhook] == nil {
				byWebhook[f.Webhook] = map[healthKey]bool{}
			}
			byWebhook[f.Webhook][healthKey{string(f.Class), f.Effect}] = true
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
				states = map[healthKey]bool{{string(agent.Healthy), "none"}: true}
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
				o.ObserveInt64(risks, 1, metric.WithAttributes(webhookLabels(r.Webhook, labelKind.String(string(r.Kind)), labelSeverity.String(r.Severity))...))
			}
		}
		if state.EventsDropped != nil {
			if n, err := state.EventsDropped(); err == nil {
				o.ObserveInt64(dropped, int64(n))
			}
		}
		return nil
	}, instruments...)
	if err != nil {
		return nil, fmt.Errorf("registering the metrics callback: %w", err)
	}
	return m, nil
}

func webhookLabels(r agent.WebhookRef, extra ...attribute.KeyValue) []attribute.KeyValue {
	return append([]attribute.KeyValue{labelWebhookConfigation.String(r.Configuration), labelWebhookName.String(r.Name)}, extra...)
}

// Handler serves the Prometheus text format.
func (m *Metrics) Handler() http.Handler { return m.handler }

// ObserveProbe implements agent.Observer.
func (m *Metrics) ObserveProbe(w agent.WebhookRef, r agent.ProbeResult) {
	m.probes.Record(context.Background(), r.Handshake.Seconds(), metric.WithAttributes(labelClass.String(string(r.Class))))
	if r.Leaf != nil {
		m.mu.Lock()
		m.expiry[expiryKey{w, r.Target.String()}] = r.Leaf.NotAfter
		m.mu.Unlock()
	}
}

// ObserveWire implements agent.Observer.
func (m *Metrics) ObserveWire(kind string) {
	m.wire.Add(context.Background(), 1, metric.WithAttributes(labelKind.String(kind)))
}

// ObserveFinding implements agent.Observer.
func (m *Metrics) ObserveFinding(f agent.Finding) {
	if f.Resolved != nil {
		return
	}
	m.findings.Add(context.Background(), 1, metric.WithAttributes(labelClass.String(string(f.Class)), labelEffect.String(f.Effect)))
}

// Shutdown stops the meter provider.
func (m *Metrics) Shutdown(ctx context.Context) error { return m.provider.Shutdown(ctx) }
