package otel

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookscope/hookscope/callout"
)

// ReportCall records one span per handshake to a webhook backend, named
// after the webhook it serves, with one event per kernel event (connect,
// client_hello, server_hello, handshake_rejected, ...). Implements
// the data plane's calls.
func (e *Exporter) ReportCall(c callout.Call) {
	name := "webhook backend " + c.Server.String()
	attrs := []attribute.KeyValue{
		CallOutcome.String(c.Outcome),
		ServerAddress.String(c.Server.Addr().Unmap().String()), ServerPort.Int(int(c.Server.Port())),
		ClientAddress.String(c.Client.Addr().Unmap().String()), ClientPort.Int(int(c.Client.Port())),
	}
	if len(c.Webhooks) > 0 {
		w := c.Webhooks[0]
		name = w.Name
		attrs = append(attrs, WebhookKind.String(w.Kind), WebhookConfiguration.String(w.Configuration), WebhookName.String(w.Name))
	}
	if c.Pod != nil {
		attrs = append(attrs, K8sNamespaceName.String(c.Pod.Namespace), K8sPodName.String(c.Pod.Name))
		if c.Pod.Node != "" {
			attrs = append(attrs, K8sNodeName.String(c.Pod.Node))
		}
	}
	if c.TLSVersion != "" {
		attrs = append(attrs, TLSProtocolVersion.String(c.TLSVersion))
	}
	end := c.End
	if end.IsZero() || end.Before(c.Start) {
		end = c.Start
	}
	var links []trace.Link
	if c.Failed() && len(c.Webhooks) > 0 {
		links = e.linkToWebhook(c.Webhooks[0]) // the finding that says why
	}
	_, span := e.tracer.Start(context.Background(), name,
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithTimestamp(c.Start),
		trace.WithAttributes(attrs...),
		trace.WithLinks(links...),
	)
	for _, ev := range c.Events {
		at := ev.At
		if at.IsZero() {
			at = end
		}
		opts := []trace.EventOption{trace.WithTimestamp(at)}
		if ev.Detail != "" {
			opts = append(opts, trace.WithAttributes(EvidenceDetail.String(ev.Detail)))
		}
		span.AddEvent(CallEventPrefix+ev.Name, opts...)
	}
	if c.Failed() {
		span.SetAttributes(ErrorType.String(c.Outcome))
		span.SetStatus(codes.Error, "handshake "+c.Outcome)
	}
	span.End(trace.WithTimestamp(end))
}
