package apisignals

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/hookscope/hookscope/findings"
)

// fetchMetrics GETs /metrics from the API server.
func (w *Watcher) fetchMetrics(ctx context.Context) (io.ReadCloser, error) {
	body, err := w.api.Raw(ctx, "/metrics", "text/plain;version=0.0.4")
	if err != nil {
		return nil, fmt.Errorf("reading the API server's /metrics: %w", err)
	}
	return body, nil
}

// scrape reads /metrics and reports every webhook whose failed calls rose
// since the previous scrape. The first good scrape is the baseline.
func (w *Watcher) scrape(ctx context.Context) {
	counts, err := w.readMetrics(ctx)
	if ctx.Err() != nil {
		return
	}
	w.mu.Lock()
	changed := w.scrapeOK == nil || *w.scrapeOK != (err == nil)
	ok := err == nil
	w.scrapeOK = &ok
	w.mu.Unlock()
	if err != nil {
		if changed {
			w.log.Warn("API server metrics unreadable: failed webhook calls are seen in Events only (check RBAC: get /metrics)", "err", err)
		}
		return
	}
	if changed {
		w.log.Info("reading the API server's webhook metrics", "interval", w.interval)
	}
	now := time.Now()
	for _, f := range w.rises(counts, now) {
		w.emit(f)
	}
}

// readMetrics fetches and parses one /metrics body, bounded in time and
// size.
func (w *Watcher) readMetrics(ctx context.Context) (map[string]WebhookCallCounts, error) {
	// The request's Timeout is only a hint to the server: bound the read.
	ctx, cancel := context.WithTimeout(ctx, max(w.interval, minScrapeTimeout))
	defer cancel()
	body, err := w.fetch(ctx)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	counts, err := ParseWebhookMetrics(io.LimitReader(body, maxMetricsBody))
	if err != nil {
		return nil, fmt.Errorf("reading the API server's /metrics: %w", err)
	}
	return counts, nil
}

// rises sets counts as the new baseline and returns a failure for every
// webhook whose calling errors or fail-open calls rose. A webhook absent
// from the baseline counts from zero: its series appear with its first
// failure.
func (w *Watcher) rises(counts map[string]WebhookCallCounts, now time.Time) []Failure {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev, basedAt := w.baseline, w.basedAt
	w.baseline, w.basedAt = counts, now
	if basedAt.IsZero() {
		return nil
	}
	var out []Failure
	for name, c := range counts {
		p := prev[name]
		out = append(out, callOutFailures(name, c, p, now)...)
		closed, open := c.CallingErrors-p.CallingErrors, c.FailOpen-p.FailOpen
		// A counter that went down is an API server restart or another
		// API server: a new baseline, not failures.
		if c.CallingErrors < p.CallingErrors || c.FailOpen < p.FailOpen {
			continue
		}
		if !(closed > 0 || open > 0) {
			if slow, ok := w.slow(name, c, p, now); ok {
				out = append(out, slow)
			}
			continue
		}
		closed, open = max(closed, 0), max(open, 0)
		out = append(out, Failure{
			WebhookFailure: WebhookFailure{
				Webhook:  name,
				Class:    codeClass(c, p),
				FailOpen: closed == 0,
				Detail: fmt.Sprintf("%g calls failed closed and %g failed open since the previous scrape (apiserver_admission_webhook_rejection_count{error_type=\"calling_webhook_error\"}, apiserver_admission_webhook_fail_open_count)",
					closed, open),
			},
			Source:  FromMetrics,
			At:      now,
			Count:   callCount(closed + open),
			Deletes: c.DeleteErrors > p.DeleteErrors,
		})
	}
	for i := range out {
		out[i].Since = basedAt
	}
	return out
}

// codeClass is the class the rejection codes of the calls that failed
// since p name, when they name one: the webhook answered 404 (a wrong
// path) or 500. Empty: only that calls fail.
func codeClass(c, p WebhookCallCounts) findings.Class {
	notFound, server := c.WrongPaths-p.WrongPaths, c.ServerErrors-p.ServerErrors
	switch {
	case notFound > 0 && notFound >= server:
		return findings.WrongPath
	case server > 0:
		return findings.ServerError
	}
	return ""
}

// callOutFailures are the failures the API server's metrics report for
// the call-outs that are not admission webhooks: a CRD whose conversions
// failed since the previous scrape, and an APIService the API server
// marks unavailable now (a gauge: said on every scrape while it lasts).
func callOutFailures(name string, c, p WebhookCallCounts, now time.Time) []Failure {
	var out []Failure
	if failed := c.ConversionFailures - p.ConversionFailures; failed > 0 {
		out = append(out, Failure{
			WebhookFailure: WebhookFailure{Webhook: name,
				Detail: fmt.Sprintf("%g conversions of CRD %s's custom resources failed since the previous scrape (apiserver_crd_conversion_webhook_duration_seconds{succeeded=\"false\"})", failed, name)},
			Source: FromMetrics, At: now, Count: callCount(failed), CallOut: true,
		})
	}
	if c.Unavailable {
		out = append(out, Failure{
			WebhookFailure: WebhookFailure{Webhook: name,
				Detail: fmt.Sprintf("the API server marks APIService %s unavailable: its availability check fails (aggregator_unavailable_apiservice)", name)},
			Source: FromMetrics, At: now, Count: 1, CallOut: true,
		})
	}
	return out
}

// slow reports a webhook whose calls since the previous scrape, none of
// them failed, took longer than its threshold on average: the API
// server's admission duration (sum over count) is the webhook's latency as
// every write sees it.
func (w *Watcher) slow(name string, c, p WebhookCallCounts, now time.Time) (Failure, bool) {
	calls, sum := c.DurationCount-p.DurationCount, c.DurationSum-p.DurationSum
	if w.slowAfter == nil || !(calls >= 1) || !(sum >= 0) || math.IsInf(sum, 0) {
		return Failure{}, false
	}
	mean := time.Duration(sum / calls * float64(time.Second))
	after := w.slowAfter(name)
	if after <= 0 || mean < after {
		if !w.slowNow[name] {
			return Failure{}, false
		}
		// Fast again: say so once, so the finding resolves now rather
		// than when the signals go quiet.
		delete(w.slowNow, name)
		return Failure{
			WebhookFailure: WebhookFailure{Webhook: name, Class: findings.Healthy,
				Detail: fmt.Sprintf("%g calls took %s on average since the previous scrape, under the %s threshold", calls, mean.Round(time.Millisecond), after)},
			Source: FromMetrics, At: now, Count: callCount(calls), Latency: mean,
		}, true
	}
	w.slowNow[name] = true
	return Failure{
		WebhookFailure: WebhookFailure{
			Webhook: name,
			Class:   findings.SlowResponse,
			Detail: fmt.Sprintf("%g calls took %s on average since the previous scrape, above the %s threshold (apiserver_admission_webhook_admission_duration_seconds)",
				calls, mean.Round(time.Millisecond), after),
		},
		Source:  FromMetrics,
		At:      now,
		Count:   callCount(calls),
		Latency: mean,
	}, true
}

// callCount converts a counter increase to an int, bounded.
func callCount(v float64) int {
	switch {
	case math.IsNaN(v) || v < 1:
		return 1 // rose, by less than one call: counters are whole
	case v > math.MaxInt32:
		return math.MaxInt32
	}
	return int(math.Round(v))
}

// baselined reports whether a scrape has set the baseline.
func (w *Watcher) baselined() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.basedAt.IsZero()
}
