package otel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// DefaultServiceName is the service.name of the agent's spans unless
// Config.ServiceName says otherwise.
const DefaultServiceName = "hookscope-agent"

// instrumentationName is the tracer's scope: this package.
const instrumentationName = "github.com/hookscope/hookscope/otel"

// How spans leave the agent. Findings are rare, so the queue is generous
// and batches are sent almost at once; an unreachable collector costs at
// most a full queue, never a blocked caller.
const (
	batchTimeout           = 200 * time.Millisecond
	DefaultQueueSize       = 2048
	DefaultRetryFor        = 30 * time.Second // one batch, retries included
	DefaultMetricsInterval = 15 * time.Second
	requestTimeout         = 10 * time.Second // one OTLP request
	retryInitial           = time.Second
	retryMax               = 5 * time.Second
)

// Config says where an Exporter sends spans and how it names their source.
type Config struct {
	// Endpoint is the host:port of an OTLP gRPC collector.
	Endpoint string
	// Insecure sends without TLS (a collector on the node or in the
	// cluster network).
	Insecure bool
	// ServiceName is the resource's service.name; DefaultServiceName if
	// empty.
	ServiceName string
	// NodeName is the node the agent runs on (resource k8s.node.name);
	// left out if empty.
	NodeName string
	// Protocol is "grpc" (default, port 4317) or "http" (OTLP/HTTP
	// protobuf, port 4318: what an X-Ray-bound ADOT collector or a proxy
	// that only passes HTTP takes).
	Protocol string
	// QueueSize bounds the spans waiting for the collector (queued or in
	// an export being retried); DefaultQueueSize if 0. A span recorded
	// while it is full is dropped and counted (SpanStats.QueueFull).
	QueueSize int
	// RetryFor is how long one batch is retried while the collector is
	// down or unreachable before its spans are dropped and counted
	// (SpanStats.ExportFailed); DefaultRetryFor if 0.
	RetryFor time.Duration
	// XRayTraceIDs makes trace IDs start with the time, as AWS X-Ray
	// requires (see XRayIDs).
	XRayTraceIDs bool
	// MetricsInterval is how often WithOTLPMetrics pushes the metrics;
	// DefaultMetricsInterval if 0.
	MetricsInterval time.Duration
}

// withDefaults fills the zero fields that have a default.
func (cfg Config) withDefaults() Config {
	if cfg.ServiceName == "" {
		cfg.ServiceName = DefaultServiceName
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = DefaultRetryFor
	}
	if cfg.MetricsInterval <= 0 {
		cfg.MetricsInterval = DefaultMetricsInterval
	}
	return cfg
}

// newResource is the agent's resource: service.name, k8s.node.name, the
// SDK's telemetry.sdk.* and OTEL_RESOURCE_ATTRIBUTES (ours win).
func newResource(cfg Config) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{ServiceName.String(cfg.ServiceName)}
	if cfg.NodeName != "" {
		attrs = append(attrs, K8sNodeName.String(cfg.NodeName))
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(SchemaURL, attrs...))
	if err != nil && !errors.Is(err, resource.ErrSchemaURLConflict) {
		// A schema conflict still returns every attribute; anything else
		// does not.
		return nil, fmt.Errorf("building the resource: %w", err)
	}
	return res, nil
}

// newSpanExporter builds the OTLP exporter of cfg.Protocol, retrying with
// backoff within cfg.RetryFor.
func newSpanExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	switch cfg.Protocol {
	case "", "grpc":
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithEndpoint(cfg.Endpoint),
			// The gRPC exporter's timeout bounds a batch, its retries
			// included: RetryFor, not one request's time.
			otlptracegrpc.WithTimeout(cfg.RetryFor),
			otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{
				Enabled: true, InitialInterval: retryInitial, MaxInterval: retryMax, MaxElapsedTime: cfg.RetryFor,
			}),
			// Redial a collector that went away at least every retryMax:
			// gRPC's default backoff grows to minutes, so a batch could give
			// up before the first redial after a collector restart.
			otlptracegrpc.WithDialOption(grpc.WithConnectParams(reconnect)),
		}
		if cfg.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		return otlptracegrpc.New(ctx, opts...)
	case "http":
		opts := []otlptracehttp.Option{
			otlptracehttp.WithEndpoint(cfg.Endpoint),
			otlptracehttp.WithTimeout(requestTimeout),
			otlptracehttp.WithRetry(otlptracehttp.RetryConfig{
				Enabled: true, InitialInterval: retryInitial, MaxInterval: retryMax, MaxElapsedTime: cfg.RetryFor,
			}),
		}
		if cfg.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, err
		}
		return retryUnreachable{next: exp, initial: retryInitial, max: retryMax}, nil
	}
	return nil, fmt.Errorf("protocol %q: want grpc or http", cfg.Protocol)
}

// reconnect is how the gRPC exporters redial a collector that went away.
var reconnect = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: retryInitial / 4, Multiplier: 1.6, Jitter: 0.2, MaxDelay: retryMax},
	MinConnectTimeout: requestTimeout,
}

// Exporter turns findings into spans and sends them over OTLP (gRPC or HTTP). It is
// a findings.Sink and safe for concurrent use.
type Exporter struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	acct   *spanAccounting

	// The spans later spans link to: each webhook's open finding about its
	// objects or backends, and every open finding's own span, by ID.
	linksMu     sync.Mutex
	webhookSpan map[callout.Ref]trace.SpanContext
	findingSpan map[string]trace.SpanContext
}

// maxLinkedFindings bounds findingSpan: findings resolve and leave it, but
// a collector of links must not grow without end.
const maxLinkedFindings = 4096

// linkToWebhook is a link to the webhook's open finding span, if any.
func (e *Exporter) linkToWebhook(ref callout.Ref) []trace.Link {
	e.linksMu.Lock()
	defer e.linksMu.Unlock()
	sc, ok := e.webhookSpan[ref]
	if !ok {
		return nil
	}
	return []trace.Link{{SpanContext: sc, Attributes: []attribute.KeyValue{LinkReason.String("webhook finding")}}}
}

// remember records an open finding's span for the links of later spans.
func (e *Exporter) remember(f findings.Finding, sc trace.SpanContext) {
	e.linksMu.Lock()
	defer e.linksMu.Unlock()
	if e.webhookSpan == nil {
		e.webhookSpan, e.findingSpan = map[callout.Ref]trace.SpanContext{}, map[string]trace.SpanContext{}
	}
	if f.Impact == nil && f.Class != findings.CertExpiringSoon {
		e.webhookSpan[f.Webhook] = sc
	}
	if len(e.findingSpan) < maxLinkedFindings {
		e.findingSpan[f.ID] = sc
	}
}

// forget drops a resolved finding's span and returns a link to it.
func (e *Exporter) forget(f findings.Finding) []trace.Link {
	e.linksMu.Lock()
	defer e.linksMu.Unlock()
	sc, ok := e.findingSpan[f.ID]
	delete(e.findingSpan, f.ID)
	if w, has := e.webhookSpan[f.Webhook]; has && w.Equal(sc) {
		delete(e.webhookSpan, f.Webhook)
	}
	if !ok {
		return nil
	}
	return []trace.Link{{SpanContext: sc, Attributes: []attribute.KeyValue{LinkReason.String("opened by")}}}
}

var _ findings.Sink = (*Exporter)(nil)

// NewExporter returns an Exporter sending to cfg.Endpoint. It does not
// wait for the collector: while one is down or unreachable, spans wait in
// a queue of cfg.QueueSize and their batch is retried for cfg.RetryFor;
// what does not fit or outlasts that is dropped and counted (Stats). The
// queue catches up when the collector returns.
func NewExporter(ctx context.Context, cfg Config) (*Exporter, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("creating the OTLP exporter: no collector endpoint")
	}
	cfg = cfg.withDefaults()
	res, err := newResource(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP exporter: %w", err)
	}
	exp, err := newSpanExporter(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP exporter for %s: %w", cfg.Endpoint, err)
	}

	acct := &spanAccounting{capacity: int64(cfg.QueueSize)}
	// Non-blocking (no WithBlocking): a span that finds the queue full is
	// dropped, never waited for. spanAccounting bounds the queue first and
	// counts the drop; the batch processor's queue is as large so it
	// never drops one itself.
	acct.next = sdktrace.NewBatchSpanProcessor(countingExporter{next: exp, acct: acct},
		sdktrace.WithBatchTimeout(batchTimeout),
		sdktrace.WithMaxQueueSize(cfg.QueueSize),
		sdktrace.WithExportTimeout(cfg.RetryFor),
	)
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		// Every finding matters and there are few: sample them all,
		// whatever OTEL_TRACES_SAMPLER says.
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(acct),
	}
	if cfg.XRayTraceIDs {
		opts = append(opts, sdktrace.WithIDGenerator(XRayIDs{}))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	return &Exporter{
		tp:     tp,
		tracer: tp.Tracer(instrumentationName, trace.WithSchemaURL(SchemaURL)),
		acct:   acct,
	}, nil
}

// Stats says how many spans were exported, dropped and are queued. It is
// what the hookscope_exporter_* metrics show (MetricsState.Spans).
func (e *Exporter) Stats() SpanStats { return e.acct.stats() }

// Report records f as one span: an open finding as an Error span from the
// first failure to detection with one event per evidence entry, a resolved
// one as a short Ok span at the resolution time. It never blocks on the
// collector.
func (e *Exporter) Report(f findings.Finding) {
	if f.Resolved != nil {
		e.reportResolved(f)
		return
	}
	end := f.FirstSeen
	if end.IsZero() {
		end = time.Now()
	}
	start := f.FirstFailure
	if start.IsZero() || start.After(end) {
		start = end
	}
	attrs := append(findingAttributes(f, FindingOpen), ErrorType.String(string(f.Class)))
	var links []trace.Link
	if f.Impact != nil {
		// A correlation: link to the finding that says why the webhook fails.
		links = e.linkToWebhook(f.Webhook)
	}
	_, span := e.tracer.Start(context.Background(), spanName(f),
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithTimestamp(start),
		trace.WithAttributes(attrs...),
		trace.WithLinks(links...),
	)
	e.remember(f, span.SpanContext())
	for _, ev := range f.Evidence {
		at := ev.At
		if at.IsZero() {
			at = end
		}
		source := string(ev.Source)
		if source == "" {
			source = "unknown"
		}
		attrs := []attribute.KeyValue{EvidenceSource.String(string(ev.Source)), EvidenceDetail.String(ev.Detail)}
		if ev.Calls > 0 {
			attrs = append(attrs, EvidenceCalls.Int(ev.Calls))
		}
		span.AddEvent(EvidenceEventPrefix+source, trace.WithTimestamp(at), trace.WithAttributes(attrs...))
	}
	span.SetStatus(codes.Error, fmt.Sprintf("%s: %s", f.Class, effect(f)))
	span.End(trace.WithTimestamp(end))
}

// reportResolved records the span that closes a finding.
func (e *Exporter) reportResolved(f findings.Finding) {
	at := *f.Resolved
	if at.IsZero() {
		at = time.Now()
	}
	_, span := e.tracer.Start(context.Background(), spanName(f),
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithTimestamp(at),
		trace.WithAttributes(findingAttributes(f, FindingResolved)...),
		trace.WithLinks(e.forget(f)...),
	)
	span.SetStatus(codes.Ok, "")
	span.End(trace.WithTimestamp(at))
}

// Shutdown sends the spans still queued and stops the exporter. It returns
// when they are sent or when ctx ends, whichever is first; spans not sent
// by then are lost. Report after Shutdown records nothing.
func (e *Exporter) Shutdown(ctx context.Context) error {
	if err := e.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutting down the OTLP exporter: %w", err)
	}
	return nil
}

// spanName is the webhook's name: what an SRE searches for.
func spanName(f findings.Finding) string {
	if f.Webhook.Name != "" {
		return f.Webhook.Name
	}
	return "hookscope.finding"
}

// effect is what the API server does with writes the webhook cannot answer.
func effect(f findings.Finding) string {
	if f.Effect != "" || f.FailurePolicy == "" {
		return string(f.Effect)
	}
	return string(findings.EffectOf(callout.Webhook{FailurePolicy: f.FailurePolicy}, f.Class))
}

// findingAttributes are the span attributes of f that do not depend on
// whether it is open: the schema in the package comment, in that order.
func findingAttributes(f findings.Finding, state string) []attribute.KeyValue {
	a := make([]attribute.KeyValue, 0, 20)
	add := func(k attribute.Key, v string) {
		if v != "" {
			a = append(a, k.String(v))
		}
	}
	if f.Pod != nil {
		add(K8sNamespaceName, f.Pod.Namespace)
		add(K8sPodName, f.Pod.Name)
		add(K8sNodeName, f.Pod.Node)
	}
	if f.Backend.IsValid() {
		// Unmap: an IPv4 backend reads 10.0.1.5, not ::ffff:10.0.1.5.
		a = append(a, ServerAddress.String(f.Backend.Addr().Unmap().String()))
		if f.Backend.Port() != 0 {
			a = append(a, ServerPort.Int(int(f.Backend.Port())))
		}
	}
	add(WebhookKind, f.Webhook.Kind)
	add(WebhookConfiguration, f.Webhook.Configuration)
	add(WebhookName, f.Webhook.Name)
	add(WebhookFailurePolicy, f.FailurePolicy)
	add(WebhookEffect, effect(f))
	if f.Service != nil {
		add(WebhookServiceNamespace, f.Service.Namespace)
		add(WebhookServiceName, f.Service.Name)
	}
	add(FailureClass, string(f.Class))
	add(FindingID, f.ID)
	if f.Impact != nil {
		add(ImpactKind, f.Impact.Kind)
		add(ImpactNode, f.Impact.Node)
		add(ImpactObject, f.Impact.Object)
	}
	add(URLFull, f.URL)
	add(BackendUntraced, f.Untraced)
	add(FindingState, state)
	add(Remediation, f.Remediation)
	a = append(a, wireAttributes(f.Wire())...)
	if c := f.Certificate; c != nil {
		add(CertSubject, c.Subject)
		if !c.NotBefore.IsZero() {
			add(CertNotBefore, c.NotBefore.UTC().Format(time.RFC3339))
		}
		if !c.NotAfter.IsZero() {
			add(CertNotAfter, c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return a
}

// wireAttributes are the kernel's facts of a finding's latest failed (or
// slow) call: the TLS version, the alert, where the handshake stopped, the
// answer's latency and who called.
func wireAttributes(w *findings.WireFacts) []attribute.KeyValue {
	if w == nil {
		return nil
	}
	var a []attribute.KeyValue
	if w.Client.IsValid() {
		a = append(a, ClientAddress.String(w.Client.Addr().Unmap().String()), ClientPort.Int(int(w.Client.Port())))
	}
	if w.TLSVersion != "" {
		a = append(a, TLSProtocolVersion.String(w.TLSVersion))
	}
	if w.Phase != "" {
		a = append(a, HandshakePhase.String(string(w.Phase)))
	}
	if w.Alert != nil {
		a = append(a, TLSAlertLevel.String(w.Alert.LevelName()), TLSAlertDescription.String(w.Alert.DescriptionName()))
	}
	if w.EncryptedAlert {
		a = append(a, TLSEncryptedAlert.Bool(true))
	}
	if w.Latency > 0 {
		a = append(a, WireLatency.Float64(w.Latency.Seconds()))
	}
	return a
}
