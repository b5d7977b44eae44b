package apisignals

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hookscope/hookscope/findings"
)

// WebhookCallCounts are one webhook's admission counters on the API
// server's /metrics, summed over their other labels. They count since the
// API server started.
type WebhookCallCounts struct {
	// Rejections is apiserver_admission_webhook_rejection_count: writes
	// rejected by or because of the webhook, for any error_type.
	Rejections float64
	// RejectedRequests is apiserver_admission_webhook_request_total with
	// rejected="true".
	RejectedRequests float64
	// FailOpen is apiserver_admission_webhook_fail_open_count: calls that
	// failed and were let through (failurePolicy Ignore).
	FailOpen float64
	// CallingErrors is the part of Rejections with
	// error_type="calling_webhook_error": calls that failed closed.
	CallingErrors float64
	// CallingErrorClasses are the parts of CallingErrors whose
	// rejection_code names a class (RejectionClass: 404 WrongPath, 500
	// ServerError).
	WrongPaths, ServerErrors float64
	// DeleteErrors is the part of CallingErrors with operation="DELETE":
	// deletions the webhook blocked (the garbage collector's among them).
	DeleteErrors float64
	// DurationCount and DurationSum are the count and sum (seconds) of
	// apiserver_admission_webhook_admission_duration_seconds.
	DurationCount, DurationSum float64
	// ConversionFailures, for a CRD (label crd_name), is the count of
	// apiserver_crd_conversion_webhook_duration_seconds with
	// succeeded="false": conversions its webhook failed, whoever asked
	// (a client, the garbage collector, the namespace controller).
	ConversionFailures float64
	// Unavailable, for an APIService (label name), is
	// aggregator_unavailable_apiservice at 1: the API server's own
	// availability check fails, and requests to the API fail.
	Unavailable bool
}

// The metric families ParseWebhookMetrics reads (k8s.io/apiserver/pkg/admission/metrics).
const (
	metricPrefix     = "apiserver_admission_webhook_"
	metricRejections = "apiserver_admission_webhook_rejection_count"
	metricRequests   = "apiserver_admission_webhook_request_total"
	metricFailOpen   = "apiserver_admission_webhook_fail_open_count"
	metricDuration   = "apiserver_admission_webhook_admission_duration_seconds"
	// The other call-outs' families (k8s.io/apiextensions-apiserver's
	// conversion metrics, k8s.io/kube-aggregator's availability).
	metricConversions = "apiserver_crd_conversion_webhook_duration_seconds"
	metricUnavailable = "aggregator_unavailable_apiservice"
	// maxMetricLine caps one line of the exposition.
	maxMetricLine = 1 << 20
)

// ParseWebhookMetrics reads the API server's /metrics in the Prometheus
// text format and returns the admission webhook counters per webhook name
// (label "name"). Only the apiserver_admission_webhook_* families are handed
// to the parser, so the work is a line scan of the rest; a line that is not
// a comment, a blank or a sample, or a malformed webhook family, is an error
// naming the line.
func ParseWebhookMetrics(r io.Reader) (map[string]WebhookCallCounts, error) {
	kept, keptLines, lines, err := keepWebhookFamilies(r)
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(kept)
	if err != nil {
		// Name the body's line, not the kept text's.
		if pe, ok := errors.AsType[expfmt.ParseError](err); ok {
			at := lines + 1
			if pe.Line >= 1 && pe.Line <= len(keptLines) {
				at = keptLines[pe.Line-1]
			}
			return nil, fmt.Errorf("parsing webhook metrics: line %d: %s", at, pe.Msg)
		}
		return nil, fmt.Errorf("parsing webhook metrics: %w", err)
	}
	return sumWebhookFamilies(families), nil
}

// keepWebhookFamilies scans the exposition in r and returns the lines of
// the webhook families, the body's line number of each, and the number of
// lines read. Every other line gets the cheap check of checkMetricLine.
func keepWebhookFamilies(r io.Reader) (kept *bytes.Buffer, keptLines []int, lines int, err error) {
	kept = &bytes.Buffer{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxMetricLine)
	for sc.Scan() {
		lines++
		text := sc.Bytes()
		if keepMetricLine(text) {
			kept.Write(text)
			kept.WriteByte('\n')
			keptLines = append(keptLines, lines)
		} else if err := checkMetricLine(text); err != nil {
			return nil, nil, lines, fmt.Errorf("parsing webhook metrics: line %d: %w", lines, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, lines, fmt.Errorf("parsing webhook metrics: line %d: %w", lines+1, err)
	}
	return kept, keptLines, lines, nil
}

// sumWebhookFamilies sums the webhook families' samples per webhook name.
func sumWebhookFamilies(families map[string]*dto.MetricFamily) map[string]WebhookCallCounts {
	out := map[string]WebhookCallCounts{}
	addBy := func(family, key string, f func(c *WebhookCallCounts, m *dto.Metric)) {
		mf := families[family]
		if mf == nil {
			return
		}
		for _, m := range mf.GetMetric() {
			name := label(m, key)
			if name == "" {
				continue
			}
			c := out[name]
			f(&c, m)
			out[name] = c
		}
	}
	add := func(family string, f func(c *WebhookCallCounts, m *dto.Metric)) { addBy(family, "name", f) }
	add(metricRejections, func(c *WebhookCallCounts, m *dto.Metric) {
		v := value(m)
		c.Rejections += v
		if label(m, "error_type") == "calling_webhook_error" {
			c.CallingErrors += v
			switch RejectionClass("calling_webhook_error", label(m, "rejection_code"), label(m, "type")) {
			case findings.WrongPath:
				c.WrongPaths += v
			case findings.ServerError:
				c.ServerErrors += v
			}
			if label(m, "operation") == "DELETE" {
				c.DeleteErrors += v
			}
		}
	})
	add(metricRequests, func(c *WebhookCallCounts, m *dto.Metric) {
		if label(m, "rejected") == "true" {
			c.RejectedRequests += value(m)
		}
	})
	add(metricFailOpen, func(c *WebhookCallCounts, m *dto.Metric) { c.FailOpen += value(m) })
	add(metricDuration, func(c *WebhookCallCounts, m *dto.Metric) {
		if h := m.GetHistogram(); h != nil {
			c.DurationCount += float64(h.GetSampleCount())
			c.DurationSum += h.GetSampleSum()
		} else if s := m.GetSummary(); s != nil {
			c.DurationCount += float64(s.GetSampleCount())
			c.DurationSum += s.GetSampleSum()
		}
	})
	// Without a TYPE line a histogram's _count and _sum are untyped families.
	add(metricDuration+"_count", func(c *WebhookCallCounts, m *dto.Metric) {
		if m.GetHistogram() == nil {
			c.DurationCount += value(m)
		}
	})
	add(metricDuration+"_sum", func(c *WebhookCallCounts, m *dto.Metric) {
		if m.GetHistogram() == nil {
			c.DurationSum += value(m)
		}
	})
	conversions := func(c *WebhookCallCounts, m *dto.Metric) {
		if label(m, "succeeded") != "false" {
			return
		}
		if h := m.GetHistogram(); h != nil {
			c.ConversionFailures += float64(h.GetSampleCount())
		} else {
			c.ConversionFailures += value(m)
		}
	}
	addBy(metricConversions, "crd_name", conversions)
	addBy(metricConversions+"_count", "crd_name", conversions)
	add(metricUnavailable, func(c *WebhookCallCounts, m *dto.Metric) { c.Unavailable = c.Unavailable || value(m) >= 1 })
	return out
}

// keepMetricLine reports whether a line belongs to a webhook family: a
// sample of one, or its HELP or TYPE comment.
func keepMetricLine(line []byte) bool {
	for _, p := range keepPrefixes {
		if bytes.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

var keepPrefixes = [][]byte{
	[]byte(metricPrefix),
	[]byte("# HELP " + metricPrefix),
	[]byte("# TYPE " + metricPrefix),
	[]byte(metricConversions + "_count"),
	[]byte("# HELP " + metricConversions + " "),
	[]byte("# TYPE " + metricConversions + " "),
	[]byte(metricUnavailable + "{"),
	[]byte("# HELP " + metricUnavailable + " "),
	[]byte("# TYPE " + metricUnavailable + " "),
}

// checkMetricLine is the cheap check of a line the parser does not see:
// a blank, a comment, or a metric name (or quoted name) followed by more.
func checkMetricLine(line []byte) error {
	t := bytes.TrimLeft(line, " \t")
	if len(t) == 0 || t[0] == '#' {
		return nil
	}
	c := t[0]
	nameStart := c == '_' || c == ':' || c == '{' || (c|0x20 >= 'a' && c|0x20 <= 'z')
	if !nameStart || !bytes.ContainsAny(t, " \t") {
		q := t
		if len(q) > 40 {
			q = q[:40]
		}
		return fmt.Errorf("not a comment or a metric sample: %q", q)
	}
	return nil
}

// label is the value of m's label name, or "".
func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// value is m's value when m is a counter, an untyped sample or a gauge.
func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return 0
}
