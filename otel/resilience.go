package otel

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// SpanStats says what became of the spans an Exporter recorded. Every span
// is in exactly one of Exported, QueueFull, ExportFailed or Queued, so
// their sum is every span recorded so far.
type SpanStats struct {
	// Exported spans were accepted by the collector (on the first try or
	// after retries).
	Exported uint64
	// QueueFull spans were dropped when recorded: the queue already held
	// QueueSize spans waiting for the collector.
	QueueFull uint64
	// ExportFailed spans were dropped after their batch was retried for
	// Config.RetryFor, or refused by the collector.
	ExportFailed uint64
	// Queued spans wait in the queue or in an export being retried.
	Queued uint64
	// QueueSize is the queue's capacity (Config.QueueSize).
	QueueSize int
}

// Dropped is the number of spans that will never reach the collector.
func (s SpanStats) Dropped() uint64 { return s.QueueFull + s.ExportFailed }

// Recorded is the number of spans recorded: exported, dropped or queued.
func (s SpanStats) Recorded() uint64 { return s.Exported + s.Dropped() + s.Queued }

// spanAccounting sits in front of the SDK's BatchSpanProcessor and behind
// its exporter, and counts every span one way: it bounds the spans between
// the two (queued, or in an export being retried) to capacity and drops
// the next ones itself, so the batch processor's own queue, as large,
// never fills and never drops a span uncounted.
type spanAccounting struct {
	next     sdktrace.SpanProcessor // the batch processor
	capacity int64

	pending      atomic.Int64 // handed to next, not yet back from an export
	exported     atomic.Uint64
	queueFull    atomic.Uint64
	exportFailed atomic.Uint64
}

var _ sdktrace.SpanProcessor = (*spanAccounting)(nil)

// OnStart implements sdktrace.SpanProcessor.
func (a *spanAccounting) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) {
	a.next.OnStart(ctx, s)
}

// OnEnd queues s, or counts it as dropped when the queue is full. It never
// blocks.
func (a *spanAccounting) OnEnd(s sdktrace.ReadOnlySpan) {
	if a.pending.Add(1) > a.capacity {
		a.pending.Add(-1)
		a.queueFull.Add(1)
		return
	}
	a.next.OnEnd(s)
}

// Shutdown implements sdktrace.SpanProcessor.
func (a *spanAccounting) Shutdown(ctx context.Context) error { return a.next.Shutdown(ctx) }

// ForceFlush implements sdktrace.SpanProcessor.
func (a *spanAccounting) ForceFlush(ctx context.Context) error { return a.next.ForceFlush(ctx) }

// stats reads the counters.
func (a *spanAccounting) stats() SpanStats {
	return SpanStats{
		Exported:     a.exported.Load(),
		QueueFull:    a.queueFull.Load(),
		ExportFailed: a.exportFailed.Load(),
		Queued:       uint64(max(a.pending.Load(), 0)),
		QueueSize:    int(a.capacity),
	}
}

// countingExporter reports each batch's fate to its spanAccounting.
type countingExporter struct {
	next sdktrace.SpanExporter
	acct *spanAccounting
}

// ExportSpans implements sdktrace.SpanExporter. The batch processor does
// not retry a failed batch: an error here drops its spans.
func (c countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := c.next.ExportSpans(ctx, spans)
	n := uint64(len(spans))
	if err == nil {
		c.acct.exported.Add(n)
	} else {
		c.acct.exportFailed.Add(n)
	}
	c.acct.pending.Add(-int64(len(spans)))
	return err
}

// Shutdown implements sdktrace.SpanExporter.
func (c countingExporter) Shutdown(ctx context.Context) error { return c.next.Shutdown(ctx) }

// retryUnreachable retries a batch while the collector cannot be reached
// (connection refused, reset, no route), with backoff from initial to max,
// until ctx ends: the batch processor's export timeout, Config.RetryFor.
// The OTLP/HTTP exporter retries only HTTP 429/502/503/504 and returns a
// refused connection at once, which would drop every batch sent while the
// collector restarts; the gRPC exporter already retries Unavailable.
type retryUnreachable struct {
	next         sdktrace.SpanExporter
	initial, max time.Duration
}

// ExportSpans implements sdktrace.SpanExporter.
func (r retryUnreachable) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	var last error
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		last = r.next.ExportSpans(ctx, spans)
		if last != nil && !unreachable(last) {
			return struct{}{}, backoff.Permanent(last) // the collector answered: no retry
		}
		return struct{}{}, last
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: r.initial, Multiplier: 2, MaxInterval: r.max}),
		backoff.WithMaxElapsedTime(0)) // the export's deadline (RetryFor) bounds it
	if err != nil && ctx.Err() != nil && last != nil {
		return fmt.Errorf("collector unreachable until the export deadline: %w", last)
	}
	return err
}

// unreachable tells a collector that is down or went away (refused, reset,
// no route, a connection closed mid-request) from one that answered.
func unreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Shutdown implements sdktrace.SpanExporter.
func (r retryUnreachable) Shutdown(ctx context.Context) error { return r.next.Shutdown(ctx) }

// XRayIDs generates trace IDs that AWS X-Ray accepts (the OpenTelemetry
// contrib module that had one, propagators/aws, is deprecated and no longer
// supported): the first 4 bytes are
// the start time in Unix seconds (big-endian), the other 12 random. X-Ray
// (and the collector's awsxray exporter, which renders the ID as
// 1-<8 hex time>-<24 hex random>) refuses a trace whose ID does not start
// with a recent time; the SDK's default IDs are random throughout. The IDs
// are still valid W3C trace IDs for any other backend.
type XRayIDs struct {
	// now is the clock; time.Now when nil (tests set it).
	now func() time.Time
}

var _ sdktrace.IDGenerator = XRayIDs{}

// NewIDs implements sdktrace.IDGenerator.
func (g XRayIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	now := time.Now
	if g.now != nil {
		now = g.now
	}
	var tid trace.TraceID
	binary.BigEndian.PutUint32(tid[:4], uint32(now().Unix()))
	_, _ = rand.Read(tid[4:]) // crypto/rand.Read never fails (Go 1.24+)
	return tid, newSpanID()
}

// NewSpanID implements sdktrace.IDGenerator.
func (g XRayIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

func newSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		_, _ = rand.Read(sid[:])
	}
	return sid
}
