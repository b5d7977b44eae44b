package agent

// The API server's own signals: what it says when it cannot call a webhook.
// Two sources need nothing on the nodes and no access to the API server's
// logs: the Warning Events a controller records when its writes fail (the
// DaemonSet controller's FailedCreate, "Error creating: Internal error
// occurred: failed calling webhook ..."), and the admission webhook counters
// on the API server's /metrics. The same text parser also reads client
// errors and the API server's own log lines, e.g.
//
//	W1125 02:45:05.657908 23852 dispatcher.go:225] Failed calling webhook, failing closed NAME: failed calling webhook "NAME": failed to call webhook: Post "https://SVC.NS.svc:443/mutate?timeout=5s": service "SVC" not found
//
// which ParseWebhookFailure turns into {Webhook: NAME, URL: https://...,
// Class: ServiceNotFound, FailOpen: false}.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// WebhookFailure is one failed webhook call as the API server words it.
type WebhookFailure struct {
	// Webhook is the webhook's name, e.g. "mpod.elbv2.k8s.aws".
	Webhook string
	// URL is the URL the API server posted to, when the text has it.
	URL string
	// Class is why the call failed; empty when the text names no cause
	// hookscope knows (e.g. "received invalid webhook response").
	Class FailureClass
	// Detail is the API server's cause, after the URL, prefixed with what
	// it means when the class is known.
	Detail string
	// FailOpen is set when the text says the API server let the write
	// through (failurePolicy Ignore): its "failing open" log lines. Client
	// errors and Events always mean the write failed.
	FailOpen bool
}

const (
	// sigMaxScan caps the text ParseWebhookFailure looks at: Events and
	// log lines are short, and a hostile or broken input must not cost more.
	sigMaxScan = 64 << 10
	// sigMaxDetail caps WebhookFailure.Detail.
	sigMaxDetail = 1 << 10
	// sigMaxName caps a webhook name (a DNS subdomain: 253 characters).
	sigMaxName = 253
)

// The API server's markers (k8s.io/apiserver/pkg/util/webhook.ErrCallingWebhook
// and the admission dispatchers).
const (
	sigCalling        = `failed calling webhook "`
	sigCallingEscaped = `failed calling webhook \"` // inside a klog key="value"
	sigFailingOpen    = "failing open "
	sigUnhandledError = `"Unhandled Error" err="`
	sigCallPrefix     = "failed to call webhook: "
	sigDenied         = `" denied the request`
)

// sigCauses maps the API server's cause text to a failure class, most
// specific first: the first entry whose every substring is in the cause
// wins. Only the text after the URL is searched.
var sigCauses = []struct {
	all     []string
	class   FailureClass
	meaning string
}{
	{[]string{"x509: certificate has expired or is not yet valid", " is before "}, CertNotYetValid, "the serving certificate is not valid yet"},
	{[]string{"x509: certificate has expired or is not yet valid"}, CertExpired, "the serving certificate has expired"},
	{[]string{"x509: certificate signed by unknown authority"}, UnknownAuthority, "the caBundle does not verify the serving certificate"},
	{[]string{"x509: certificate is valid for "}, HostnameMismatch, "the serving certificate is for another name"},
	{[]string{"x509: certificate is not valid for any names"}, HostnameMismatch, "the serving certificate is for another name"},
	{[]string{"x509: certificate relies on legacy Common Name field"}, HostnameMismatch, "the serving certificate has no subject alternative names"},
	{[]string{"x509: cannot validate certificate for "}, HostnameMismatch, "the serving certificate has no IP subject alternative names"},
	{[]string{"no endpoints available for service "}, NoEndpoints, "the webhook's Service has no ready endpoints"},
	{[]string{`endpoints "`, `" not found`}, NoEndpoints, "the webhook's Service has no endpoints"},
	{[]string{`service "`, `" not found`}, ServiceNotFound, "the webhook's Service does not exist"},
	{[]string{`services "`, `" not found`}, ServiceNotFound, "the webhook's Service does not exist"},
	{[]string{"no service port "}, PortMismatch, "the webhook's port is not a port of its Service"},
	{[]string{"connection refused"}, ConnectionRefused, "nothing listens on the backend's port"},
	{[]string{"connection reset by peer"}, ConnectionRefused, "the backend reset the connection"},
	{[]string{"no route to host"}, ConnectionRefused, "the API server has no route to the backend"},
	{[]string{"TLS handshake timeout"}, HandshakeTimeout, "the TLS handshake did not complete in time"},
	{[]string{"context deadline exceeded"}, WebhookTimeout, "the call exceeded the webhook's timeoutSeconds"},
	{[]string{"Client.Timeout exceeded"}, WebhookTimeout, "the call exceeded the webhook's timeoutSeconds"},
	{[]string{"i/o timeout"}, WebhookTimeout, "the backend did not answer in time"},
	{[]string{"http: server gave HTTP response to HTTPS client"}, TLSHandshakeFailed, "the backend does not speak TLS"},
	{[]string{"tls: "}, TLSHandshakeFailed, "the TLS handshake failed"},
	{[]string{"x509: "}, TLSHandshakeFailed, "the serving certificate does not verify"},
}

// ParseWebhookFailure finds the API server's report of a failed webhook
// call in msg: an Event message, a client error or an API server log line
// (plain or klog structured). It returns false when msg has none, and for
// an explicit denial ("admission webhook "x" denied the request"), which is
// the webhook working. Only the first 64 KiB of msg are read.
//
// A fail-open call writes two log lines, "Failed calling webhook, failing
// open NAME: ..." and `"Unhandled Error" err="failed calling webhook ...`;
// both parse with FailOpen set, so count one of them, not both.
func ParseWebhookFailure(msg string) (WebhookFailure, bool) {
	if len(msg) > sigMaxScan {
		msg = msg[:sigMaxScan]
	}
	var wf WebhookFailure
	i := strings.Index(msg, sigCalling)
	escaped := false
	if j := strings.Index(msg, sigCallingEscaped); j >= 0 && (i < 0 || j < i) {
		i, escaped = j, true
	}
	if i < 0 {
		return WebhookFailure{}, false
	}
	before, tail := msg[:i], msg[i:]
	// A denial whose message quotes a failed call is still a denial.
	if d := strings.Index(before, sigDenied); d >= 0 && strings.Contains(before[:d], `admission webhook "`) {
		return WebhookFailure{}, false
	}
	// One line only: a log file handed over whole parses as its first hit.
	if nl := strings.IndexByte(tail, '\n'); nl >= 0 {
		tail = tail[:nl]
	}
	if escaped {
		tail = sigUnescapeKlogValue(tail)
		wf.FailOpen = strings.HasSuffix(before, sigUnhandledError)
	}
	if k := strings.LastIndex(before, "Failed calling webhook, "); k >= 0 && strings.HasPrefix(before[k+len("Failed calling webhook, "):], sigFailingOpen) {
		wf.FailOpen = true
	}

	tail = strings.TrimPrefix(tail, `failed calling webhook "`)
	end := strings.IndexByte(tail, '"')
	if end <= 0 || end > sigMaxName {
		return WebhookFailure{}, false
	}
	wf.Webhook = tail[:end]
	if strings.ContainsAny(wf.Webhook, " \t\\") {
		return WebhookFailure{}, false
	}
	rest := tail[end+1:]
	switch {
	case strings.HasPrefix(rest, ": "):
		rest = rest[2:]
	case strings.HasPrefix(rest, "; "):
		rest = rest[2:] // "; no further details available"
	default:
		return WebhookFailure{}, false
	}
	rest = strings.TrimPrefix(rest, sigCallPrefix)
	// Post "URL": cause
	if sp := strings.IndexByte(rest, ' '); sp > 0 && sp < 8 && strings.HasPrefix(rest[sp:], ` "`) {
		u := rest[sp+2:]
		if q := strings.Index(u, `": `); q >= 0 {
			wf.URL, rest = u[:q], u[q+3:]
		}
	}
	cause := strings.TrimSpace(rest)
	wf.Detail = cause
	for _, c := range sigCauses {
		if sigContainsAll(cause, c.all) {
			wf.Class = c.class
			wf.Detail = c.meaning + ": " + cause
			break
		}
	}
	if len(wf.Detail) > sigMaxDetail {
		cut := sigMaxDetail
		for cut > 0 && !utf8.RuneStart(wf.Detail[cut]) {
			cut--
		}
		wf.Detail = wf.Detail[:cut]
	}
	return wf, true
}

func sigContainsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// sigUnescapeKlogValue returns the quoted klog value s starts in, up to its
// closing quote, with \" and \\ unescaped.
func sigUnescapeKlogValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(s[i])
			}
		case c == '"':
			return b.String() // end of the value
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

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
	// DeleteErrors is the part of CallingErrors with operation="DELETE":
	// deletions the webhook blocked (the garbage collector's among them).
	DeleteErrors float64
	// DurationCount and DurationSum are the count and sum (seconds) of
	// apiserver_admission_webhook_admission_duration_seconds.
	DurationCount, DurationSum float64
}

// The metric families ParseWebhookMetrics reads (k8s.io/apiserver/pkg/admission/metrics).
const (
	sigMetricPrefix     = "apiserver_admission_webhook_"
	sigMetricRejections = "apiserver_admission_webhook_rejection_count"
	sigMetricRequests   = "apiserver_admission_webhook_request_total"
	sigMetricFailOpen   = "apiserver_admission_webhook_fail_open_count"
	sigMetricDuration   = "apiserver_admission_webhook_admission_duration_seconds"
	// sigMaxMetricLine caps one line of the exposition.
	sigMaxMetricLine = 1 << 20
)

// ParseWebhookMetrics reads the API server's /metrics in the Prometheus
// text format and returns the admission webhook counters per webhook name
// (label "name"). Only the apiserver_admission_webhook_* families are handed
// to the parser, so the work is a line scan of the rest; a line that is not
// a comment, a blank or a sample, or a malformed webhook family, is an error
// naming the line.
func ParseWebhookMetrics(r io.Reader) (map[string]WebhookCallCounts, error) {
	var kept bytes.Buffer
	var keptLines []int // the body's line number of each kept line
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), sigMaxMetricLine)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Bytes()
		if sigKeepMetricLine(text) {
			kept.Write(text)
			kept.WriteByte('\n')
			keptLines = append(keptLines, line)
		} else if err := sigCheckMetricLine(text); err != nil {
			return nil, fmt.Errorf("parsing webhook metrics: line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parsing webhook metrics: line %d: %w", line+1, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(&kept)
	if err != nil {
		// Name the body's line, not the kept text's.
		if pe, ok := errors.AsType[expfmt.ParseError](err); ok {
			at := line + 1
			if pe.Line >= 1 && pe.Line <= len(keptLines) {
				at = keptLines[pe.Line-1]
			}
			return nil, fmt.Errorf("parsing webhook metrics: line %d: %s", at, pe.Msg)
		}
		return nil, fmt.Errorf("parsing webhook metrics: %w", err)
	}
	out := map[string]WebhookCallCounts{}
	add := func(family string, f func(c *WebhookCallCounts, m *dto.Metric)) {
		mf := families[family]
		if mf == nil {
			return
		}
		for _, m := range mf.GetMetric() {
			name := sigLabel(m, "name")
			if name == "" {
				continue
			}
			c := out[name]
			f(&c, m)
			out[name] = c
		}
	}
	add(sigMetricRejections, func(c *WebhookCallCounts, m *dto.Metric) {
		v := sigValue(m)
		c.Rejections += v
		if sigLabel(m, "error_type") == "calling_webhook_error" {
			c.CallingErrors += v
			if sigLabel(m, "operation") == "DELETE" {
				c.DeleteErrors += v
			}
		}
	})
	add(sigMetricRequests, func(c *WebhookCallCounts, m *dto.Metric) {
		if sigLabel(m, "rejected") == "true" {
			c.RejectedRequests += sigValue(m)
		}
	})
	add(sigMetricFailOpen, func(c *WebhookCallCounts, m *dto.Metric) { c.FailOpen += sigValue(m) })
	add(sigMetricDuration, func(c *WebhookCallCounts, m *dto.Metric) {
		if h := m.GetHistogram(); h != nil {
			c.DurationCount += float64(h.GetSampleCount())
			c.DurationSum += h.GetSampleSum()
		} else if s := m.GetSummary(); s != nil {
			c.DurationCount += float64(s.GetSampleCount())
			c.DurationSum += s.GetSampleSum()
		}
	})
	// Without a TYPE line a histogram's _count and _sum are untyped families.
	add(sigMetricDuration+"_count", func(c *WebhookCallCounts, m *dto.Metric) {
		if m.GetHistogram() == nil {
			c.DurationCount += sigValue(m)
		}
	})
	add(sigMetricDuration+"_sum", func(c *WebhookCallCounts, m *dto.Metric) {
		if m.GetHistogram() == nil {
			c.DurationSum += sigValue(m)
		}
	})
	return out, nil
}

// sigKeepMetricLine reports whether a line belongs to a webhook family: a
// sample of one, or its HELP or TYPE comment.
func sigKeepMetricLine(line []byte) bool {
	for _, p := range sigKeepPrefixes {
		if bytes.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

var sigKeepPrefixes = [][]byte{
	[]byte(sigMetricPrefix),
	[]byte("# HELP " + sigMetricPrefix),
	[]byte("# TYPE " + sigMetricPrefix),
}

// sigCheckMetricLine is the cheap check of a line the parser does not see:
// a blank, a comment, or a metric name (or quoted name) followed by more.
func sigCheckMetricLine(line []byte) error {
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

func sigLabel(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func sigValue(m *dto.Metric) float64 {
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

// SignalFailure is a failed webhook call the API server reported.
type SignalFailure struct {
	WebhookFailure
	// Source is "event" or "metrics".
	Source string
	// At is when it happened: the Event's last occurrence, or the scrape
	// that saw the counters rise.
	At time.Time
	// Object is the Event's involved object, "Kind namespace/name" (e.g.
	// "DaemonSet kube-system/aws-node"); empty for metrics.
	Object string
	// Reason is the Event's reason, e.g. FailedCreate; empty for metrics.
	Reason string
	// Count is the Event's count, or for metrics how many calls failed
	// (or, for SlowResponse, were made) since the previous scrape.
	Count int
	// Latency is, for SlowResponse, the calls' mean admission latency
	// since the previous scrape.
	Latency time.Duration
	// Deletes: some of the calls that failed closed were DELETEs (from
	// metrics only): objects, a Deployment's dependents among them, cannot
	// be deleted.
	Deletes bool
}

const (
	sigDefaultInterval = 15 * time.Second
	// sigSyncWarnAfter is when Run says the Event cache has not synced.
	sigSyncWarnAfter = 30 * time.Second
	// sigMinScrapeTimeout is the least time one /metrics read may take;
	// otherwise a read may take the interval.
	sigMinScrapeTimeout = 10 * time.Second
	// sigMaxMetricsBody caps one /metrics read.
	sigMaxMetricsBody = 512 << 20
)

// APISignals watches the API server's own signals of failed webhook calls:
// Warning Events whose message is a failed call, and the rise of the
// admission webhook counters on /metrics. It needs list and watch on Events
// and get on the /metrics non-resource URL; it reads, so it keeps working
// while the webhook makes the API server reject writes.
//
// The counters are one API server's: behind a load balancer, successive
// scrapes may reach different API servers; a counter that goes down is
// taken as a restart (a new baseline, nothing reported).
type APISignals struct {
	client   kubernetes.Interface
	interval time.Duration
	report   func(SignalFailure)
	log      *slog.Logger
	// fetch reads /metrics; tests replace it.
	fetch func(ctx context.Context) (io.ReadCloser, error)
	// slowAfter is the mean latency above which a webhook's calls are
	// slow; nil reports no SlowResponse.
	slowAfter func(webhook string) time.Duration

	reportMu sync.Mutex // report is never called concurrently

	mu       sync.Mutex
	reported map[types.UID]string // Event UID -> resourceVersion reported
	slowNow  map[string]bool      // webhooks last reported SlowResponse
	baseline map[string]WebhookCallCounts
	based    bool  // baseline holds a scrape
	scrapeOK *bool // the last scrape's outcome; nil before the first

	synced atomic.Bool // the Event cache has synced
}

// SetSlowThreshold makes the scrapes report SlowResponse for a webhook
// whose calls since the previous scrape took longer than after(name) on
// average, and failed neither closed nor open; and, once, Healthy when a
// slow webhook's calls are fast again. Call before Run.
func (s *APISignals) SetSlowThreshold(after func(webhook string) time.Duration) { s.slowAfter = after }

// NewAPISignals returns signals that scrape /metrics every interval (15 s
// if not positive) and call report for each failure; Run starts them.
func NewAPISignals(client kubernetes.Interface, interval time.Duration, report func(SignalFailure), log *slog.Logger) *APISignals {
	if interval <= 0 {
		interval = sigDefaultInterval
	}
	if log == nil {
		log = slog.Default()
	}
	s := &APISignals{
		client:   client,
		interval: interval,
		report:   report,
		log:      log,
		reported: map[types.UID]string{},
		slowNow:  map[string]bool{},
	}
	s.fetch = s.fetchMetrics
	return s
}

// Run watches Events and scrapes /metrics until ctx ends, then returns nil.
// Neither an unreadable /metrics nor Events the agent may not list stop it:
// each is logged when it starts and when it ends.
func (s *APISignals) Run(ctx context.Context) error {
	f := informers.NewSharedInformerFactoryWithOptions(s.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("type", corev1.EventTypeWarning).String()
		}),
		informers.WithTransform(sigSlimEvent))
	inf := f.Core().V1().Events().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.onEvent,
		UpdateFunc: func(_, obj any) { s.onEvent(obj) },
		DeleteFunc: s.forgetEvent,
	})
	if err != nil {
		return fmt.Errorf("watching Events: %w", err)
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	go func() {
		sctx, cancel := context.WithTimeout(ctx, sigSyncWarnAfter)
		defer cancel()
		if cache.WaitForCacheSync(sctx.Done(), inf.HasSynced) {
			s.synced.Store(true)
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("Warning Events not listed yet: failed webhook calls are seen on /metrics only (check RBAC: list, watch events)", "after", sigSyncWarnAfter)
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			s.synced.Store(true)
			s.log.Info("Warning Events listed")
		}
	}()

	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.scrape(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sigSlimEvent keeps only what onEvent reads, and the message only when it
// may be a failed call: a busy cluster has many Warning Events.
func sigSlimEvent(obj any) (any, error) {
	e, ok := obj.(*corev1.Event)
	if !ok {
		return obj, nil // a tombstone
	}
	msg := e.Message
	if !strings.Contains(msg, "failed calling webhook") {
		msg = ""
	} else if len(msg) > sigMaxScan {
		msg = msg[:sigMaxScan]
	}
	slim := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:              e.Name,
			Namespace:         e.Namespace,
			UID:               e.UID,
			ResourceVersion:   e.ResourceVersion,
			CreationTimestamp: e.CreationTimestamp,
		},
		InvolvedObject: corev1.ObjectReference{
			Kind:      e.InvolvedObject.Kind,
			Namespace: e.InvolvedObject.Namespace,
			Name:      e.InvolvedObject.Name,
		},
		Type:           e.Type,
		Reason:         e.Reason,
		Message:        msg,
		Count:          e.Count,
		FirstTimestamp: e.FirstTimestamp,
		LastTimestamp:  e.LastTimestamp,
		EventTime:      e.EventTime,
	}
	if e.Series != nil {
		slim.Series = &corev1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	return slim, nil
}

// onEvent reports an Event that is a failed webhook call, once per
// resourceVersion: a relist delivers unchanged Events again.
func (s *APISignals) onEvent(obj any) {
	e, ok := obj.(*corev1.Event)
	if !ok || e.Type != corev1.EventTypeWarning {
		return
	}
	wf, ok := ParseWebhookFailure(e.Message)
	if !ok {
		return
	}
	s.mu.Lock()
	if rv, seen := s.reported[e.UID]; seen && rv == e.ResourceVersion {
		s.mu.Unlock()
		return
	}
	s.reported[e.UID] = e.ResourceVersion
	s.mu.Unlock()

	obj2 := e.InvolvedObject.Kind + " " + e.InvolvedObject.Name
	if e.InvolvedObject.Namespace != "" {
		obj2 = e.InvolvedObject.Kind + " " + e.InvolvedObject.Namespace + "/" + e.InvolvedObject.Name
	}
	count := int(e.Count)
	if e.Series != nil && int(e.Series.Count) > count {
		count = int(e.Series.Count)
	}
	if count < 1 {
		count = 1
	}
	s.emit(SignalFailure{
		WebhookFailure: wf,
		Source:         "event",
		At:             sigEventTime(e),
		Object:         obj2,
		Reason:         e.Reason,
		Count:          count,
	})
}

// sigEventTime is the Event's last occurrence, from whichever field its
// recorder filled (core/v1 recorders: lastTimestamp; events.k8s.io ones:
// series or eventTime).
func sigEventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

func (s *APISignals) forgetEvent(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if e, ok := obj.(*corev1.Event); ok {
		s.mu.Lock()
		delete(s.reported, e.UID)
		s.mu.Unlock()
	}
}

func (s *APISignals) emit(f SignalFailure) {
	s.reportMu.Lock()
	defer s.reportMu.Unlock()
	s.report(f)
}

// fetchMetrics GETs /metrics from the API server.
func (s *APISignals) fetchMetrics(ctx context.Context) (io.ReadCloser, error) {
	body, err := s.client.CoreV1().RESTClient().Get().AbsPath("/metrics").
		SetHeader("Accept", "text/plain;version=0.0.4").Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's /metrics: %w", err)
	}
	return body, nil
}

// scrape reads /metrics and reports every webhook whose failed calls rose
// since the previous scrape. The first good scrape is the baseline.
func (s *APISignals) scrape(ctx context.Context) {
	counts, err := s.readMetrics(ctx)
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	changed := s.scrapeOK == nil || *s.scrapeOK != (err == nil)
	ok := err == nil
	s.scrapeOK = &ok
	s.mu.Unlock()
	if err != nil {
		if changed {
			s.log.Warn("API server metrics unreadable: failed webhook calls are seen in Events only (check RBAC: get /metrics)", "err", err)
		}
		return
	}
	if changed {
		s.log.Info("reading the API server's webhook metrics", "interval", s.interval)
	}
	now := time.Now()
	for _, f := range s.rises(counts, now) {
		s.emit(f)
	}
}

func (s *APISignals) readMetrics(ctx context.Context) (map[string]WebhookCallCounts, error) {
	// The request's Timeout is only a hint to the server: bound the read.
	ctx, cancel := context.WithTimeout(ctx, max(s.interval, sigMinScrapeTimeout))
	defer cancel()
	body, err := s.fetch(ctx)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	counts, err := ParseWebhookMetrics(io.LimitReader(body, sigMaxMetricsBody))
	if err != nil {
		return nil, fmt.Errorf("reading the API server's /metrics: %w", err)
	}
	return counts, nil
}

// rises sets counts as the new baseline and returns a failure for every
// webhook whose calling errors or fail-open calls rose. A webhook absent
// from the baseline counts from zero: its series appear with its first
// failure.
func (s *APISignals) rises(counts map[string]WebhookCallCounts, now time.Time) []SignalFailure {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, based := s.baseline, s.based
	s.baseline, s.based = counts, true
	if !based {
		return nil
	}
	var out []SignalFailure
	for name, c := range counts {
		p := prev[name]
		closed, open := c.CallingErrors-p.CallingErrors, c.FailOpen-p.FailOpen
		// A counter that went down is an API server restart or another
		// API server: a new baseline, not failures.
		if c.CallingErrors < p.CallingErrors || c.FailOpen < p.FailOpen {
			continue
		}
		if !(closed > 0 || open > 0) {
			if slow, ok := s.slow(name, c, p, now); ok {
				out = append(out, slow)
			}
			continue
		}
		closed, open = max(closed, 0), max(open, 0)
		out = append(out, SignalFailure{
			WebhookFailure: WebhookFailure{
				Webhook:  name,
				FailOpen: closed == 0,
				Detail: fmt.Sprintf("%g calls failed closed and %g failed open since the previous scrape (apiserver_admission_webhook_rejection_count{error_type=\"calling_webhook_error\"}, apiserver_admission_webhook_fail_open_count)",
					closed, open),
			},
			Source:  "metrics",
			At:      now,
			Count:   sigCount(closed + open),
			Deletes: c.DeleteErrors > p.DeleteErrors,
		})
	}
	return out
}

// slow reports a webhook whose calls since the previous scrape, none of
// them failed, took longer than its threshold on average: the API
// server's admission duration (sum over count) is the webhook's latency as
// every write sees it.
func (s *APISignals) slow(name string, c, p WebhookCallCounts, now time.Time) (SignalFailure, bool) {
	calls, sum := c.DurationCount-p.DurationCount, c.DurationSum-p.DurationSum
	if s.slowAfter == nil || !(calls >= 1) || !(sum >= 0) || math.IsInf(sum, 0) {
		return SignalFailure{}, false
	}
	mean := time.Duration(sum / calls * float64(time.Second))
	after := s.slowAfter(name)
	if after <= 0 || mean < after {
		if !s.slowNow[name] {
			return SignalFailure{}, false
		}
		// Fast again: say so once, so the finding resolves now rather
		// than when the signals go quiet.
		delete(s.slowNow, name)
		return SignalFailure{
			WebhookFailure: WebhookFailure{Webhook: name, Class: Healthy,
				Detail: fmt.Sprintf("%g calls took %s on average since the previous scrape, under the %s threshold", calls, mean.Round(time.Millisecond), after)},
			Source: "metrics", At: now, Count: sigCount(calls), Latency: mean,
		}, true
	}
	s.slowNow[name] = true
	return SignalFailure{
		WebhookFailure: WebhookFailure{
			Webhook: name,
			Class:   SlowResponse,
			Detail: fmt.Sprintf("%g calls took %s on average since the previous scrape, above the %s threshold (apiserver_admission_webhook_admission_duration_seconds)",
				calls, mean.Round(time.Millisecond), after),
		},
		Source:  "metrics",
		At:      now,
		Count:   sigCount(calls),
		Latency: mean,
	}, true
}

// sigCount converts a counter increase to an int, bounded.
func sigCount(v float64) int {
	switch {
	case math.IsNaN(v) || v < 1:
		return 1 // rose, by less than one call: counters are whole
	case v > math.MaxInt32:
		return math.MaxInt32
	}
	return int(math.Round(v))
}

// sigBaselined reports whether a scrape has set the baseline.
func (s *APISignals) sigBaselined() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.based
}
