package otel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/hookscope/hookscope/callout"
)

// ReportGuard records one change of the opt-in guard as a span named after
// the webhook, linked to the finding that made the guard act: the trace
// backend draws the failure, then what the guard did about it.
func (e *Exporter) ReportGuard(ref callout.Ref, action, detail string, at time.Time) {
	_, span := e.tracer.Start(context.Background(), ref.Name,
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithTimestamp(at),
		trace.WithAttributes(WebhookKind.String(ref.Kind), WebhookConfiguration.String(ref.Configuration), WebhookName.String(ref.Name),
			GuardAction.String(action), EvidenceDetail.String(detail)),
		trace.WithLinks(e.linkToWebhook(ref)...),
	)
	span.End(trace.WithTimestamp(at))
}
