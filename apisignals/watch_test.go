package apisignals

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hookscope/hookscope/findings"
)

// recorder collects reports.
type recorder struct {
	mu  sync.Mutex
	got []Failure
	ch  chan Failure
}

func newRecorder() *recorder { return &recorder{ch: make(chan Failure, 1024)} }

func (r *recorder) report(f Failure) {
	r.mu.Lock()
	r.got = append(r.got, f)
	r.mu.Unlock()
	select {
	case r.ch <- f:
	default:
	}
}

func (r *recorder) all() []Failure {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Failure(nil), r.got...)
}

// logCounter counts log records by level.
type logCounter struct {
	mu     sync.Mutex
	counts map[slog.Level]int
}

func (c *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[r.Level]++
	return nil
}
func (c *logCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCounter) WithGroup(string) slog.Handler      { return c }
func (c *logCounter) count(l slog.Level) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[l]
}

func TestWatcherMetrics(t *testing.T) {
	const closedLine = `apiserver_admission_webhook_rejection_count{error_type="calling_webhook_error",name="vpod",operation="CREATE",rejection_code="503",type="validating"} %d` + "\n"
	const openLine = `apiserver_admission_webhook_fail_open_count{name="mpod",type="admit"} %d` + "\n"
	bodies := []string{
		fmt.Sprintf(closedLine, 5),                            // baseline: nothing
		fmt.Sprintf(closedLine, 5),                            // no change
		fmt.Sprintf(closedLine, 7) + fmt.Sprintf(openLine, 1), // vpod +2 closed, mpod appears with 1 (counts from 0)
		"error", // scrape fails
		"error", // still failing: not logged again
		fmt.Sprintf(closedLine, 7) + fmt.Sprintf(openLine, 4), // mpod +3 open
		fmt.Sprintf(closedLine, 1),                            // restart: a new baseline
		fmt.Sprintf(closedLine, 2) + fmt.Sprintf(openLine, 1), // vpod +1, mpod back from 0: +1
	}
	logs := &logCounter{counts: map[slog.Level]int{}}
	rec := newRecorder()
	w := NewWatcher(nil, time.Second, rec.report, slog.New(logs))
	i := 0
	w.fetch = func(context.Context) (io.ReadCloser, error) {
		b := bodies[i]
		i++
		if b == "error" {
			return nil, errors.New("the server has asked for the client to provide credentials")
		}
		return io.NopCloser(strings.NewReader(b)), nil
	}
	type rep struct {
		webhook  string
		count    int
		failOpen bool
	}
	want := [][]rep{
		nil,
		nil,
		{{"mpod", 1, true}, {"vpod", 2, false}},
		nil,
		nil,
		{{"mpod", 3, true}},
		nil,
		{{"mpod", 1, true}, {"vpod", 1, false}},
	}
	for step := range bodies {
		before := len(rec.all())
		w.scrape(context.Background())
		var got []rep
		for _, f := range rec.all()[before:] {
			if f.Source != FromMetrics || f.Class != "" || f.Object != "" || f.At.IsZero() {
				t.Errorf("step %d: bad report %+v", step, f)
			}
			got = append(got, rep{f.Webhook, f.Count, f.FailOpen})
		}
		// Reports come from a map: order them.
		if len(got) == 2 && got[0].webhook > got[1].webhook {
			got[0], got[1] = got[1], got[0]
		}
		if fmt.Sprint(got) != fmt.Sprint(want[step]) {
			t.Errorf("step %d: reports %v, want %v", step, got, want[step])
		}
	}
	if n := logs.count(slog.LevelWarn); n != 1 {
		t.Errorf("%d warnings for two failed scrapes in a row, want 1", n)
	}
	if n := logs.count(slog.LevelInfo); n != 2 {
		t.Errorf("%d infos, want 2 (first scrape, recovery)", n)
	}
}

// scriptedWatcher is a watcher whose scrapes read bodies, one each, and
// the recorder of its reports.
func scriptedWatcher(bodies []string) (*Watcher, *recorder) {
	rec := newRecorder()
	w := NewWatcher(nil, time.Second, rec.report, slog.New(slog.DiscardHandler))
	i := 0
	w.fetch = func(context.Context) (io.ReadCloser, error) {
		b := bodies[i]
		i++
		return io.NopCloser(strings.NewReader(b)), nil
	}
	return w, rec
}

// TestWatcherClassesFromRejectionCodes: calls that failed closed with the
// webhook's 404 or 500 (the rejection_code the API server counts) are
// WrongPath and ServerError from the metrics alone; other codes say only
// that calls fail.
func TestWatcherClassesFromRejectionCodes(t *testing.T) {
	const line = `apiserver_admission_webhook_rejection_count{error_type="calling_webhook_error",name="%s",operation="CREATE",rejection_code="%s",type="validating"} %d` + "\n"
	bodies := []string{
		fmt.Sprintf(line, "path", "404", 1) + fmt.Sprintf(line, "boom", "500", 1) + fmt.Sprintf(line, "down", "503", 1),
		fmt.Sprintf(line, "path", "404", 3) + fmt.Sprintf(line, "boom", "500", 2) + fmt.Sprintf(line, "down", "503", 4),
	}
	w, rec := scriptedWatcher(bodies)
	w.scrape(context.Background())
	w.scrape(context.Background())
	got := map[string]findings.Class{}
	for _, f := range rec.all() {
		got[f.Webhook] = f.Class
	}
	want := map[string]findings.Class{"path": findings.WrongPath, "boom": findings.ServerError, "down": ""}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("classes %v, want %v", got, want)
	}
}

// TestWatcherCallOutMetrics: a CRD's failed conversions are reported when
// they rise (not on a restart's drop), and an unavailable APIService on
// every scrape while the API server marks it so, and not after.
func TestWatcherCallOutMetrics(t *testing.T) {
	const conv = `apiserver_crd_conversion_webhook_duration_seconds_count{crd_name="widgets.x",from_version="v1",succeeded="false",to_version="v2"} %d` + "\n"
	const down = `aggregator_unavailable_apiservice{name="v1beta1.metrics.k8s.io"} %d` + "\n"
	bodies := []string{
		fmt.Sprintf(conv, 3) + fmt.Sprintf(down, 0), // baseline
		fmt.Sprintf(conv, 3) + fmt.Sprintf(down, 1), // the APIService goes down
		fmt.Sprintf(conv, 9) + fmt.Sprintf(down, 1), // 6 conversions fail; still down
		fmt.Sprintf(conv, 2) + fmt.Sprintf(down, 0), // restart: a new baseline; back up
	}
	want := []string{"", "v1beta1.metrics.k8s.io:1", "v1beta1.metrics.k8s.io:1 widgets.x:6", ""}
	w, rec := scriptedWatcher(bodies)
	var prevScrape time.Time
	for step := range bodies {
		before := len(rec.all())
		scraped := time.Now()
		w.scrape(context.Background())
		var got []string
		for _, f := range rec.all()[before:] {
			if f.Source != FromMetrics || f.Class != "" || f.Detail == "" || !f.CallOut {
				t.Errorf("step %d: bad report %+v", step, f)
			}
			// The calls failed between the previous scrape and this one.
			if e := f.Earliest(); e.Before(prevScrape) || !e.Before(scraped) {
				t.Errorf("step %d: the failure's earliest time %s is not between the previous scrape (%s) and this one (%s)",
					step, e.Format(time.StampMicro), prevScrape.Format(time.StampMicro), scraped.Format(time.StampMicro))
			}
			got = append(got, fmt.Sprintf("%s:%d", f.Webhook, f.Count))
		}
		slices.Sort(got)
		if strings.Join(got, " ") != want[step] {
			t.Errorf("step %d: reports %v, want %q", step, got, want[step])
		}
		prevScrape = scraped
	}
}

// TestWatcherSlowResponse: calls that succeed but take longer than the
// threshold on average are SlowResponse; fast calls, failed calls and a
// scrape with no calls are not.
func TestWatcherSlowResponse(t *testing.T) {
	const hist = `# TYPE apiserver_admission_webhook_admission_duration_seconds histogram
apiserver_admission_webhook_admission_duration_seconds_bucket{name="slow.hookscope.dev",operation="CREATE",rejected="false",type="validating",le="+Inf"} %[1]d
apiserver_admission_webhook_admission_duration_seconds_sum{name="slow.hookscope.dev",operation="CREATE",rejected="false",type="validating"} %[2]g
apiserver_admission_webhook_admission_duration_seconds_count{name="slow.hookscope.dev",operation="CREATE",rejected="false",type="validating"} %[1]d
`
	const failed = `apiserver_admission_webhook_rejection_count{error_type="calling_webhook_error",name="slow.hookscope.dev",operation="CREATE",rejection_code="503",type="validating"} %d` + "\n"
	steps := []struct {
		body    string
		want    bool
		latency time.Duration
		count   int
	}{
		{fmt.Sprintf(hist, 10, 1.0), false, 0, 0},                           // baseline
		{fmt.Sprintf(hist, 14, 7.0), true, 1500 * time.Millisecond, 4},      // 4 calls, 6 s: 1.5 s each
		{fmt.Sprintf(hist, 14, 7.0), false, 0, 0},                           // no calls
		{fmt.Sprintf(hist, 24, 8.0), false, 0, 0},                           // 10 calls, 1 s: fast
		{fmt.Sprintf(hist, 26, 14.0) + fmt.Sprintf(failed, 1), false, 0, 0}, // slow, but a call failed: that is the finding
	}
	rec := newRecorder()
	w := NewWatcher(nil, time.Second, rec.report, slog.New(slog.DiscardHandler))
	var asked []string
	w.SetSlowThreshold(func(name string) time.Duration {
		asked = append(asked, name)
		return time.Second
	})
	i := 0
	w.fetch = func(context.Context) (io.ReadCloser, error) {
		b := steps[i].body
		i++
		return io.NopCloser(strings.NewReader(b)), nil
	}
	for n, st := range steps {
		before := len(rec.all())
		w.scrape(context.Background())
		var slow, healthy []Failure
		for _, f := range rec.all()[before:] {
			switch f.Class {
			case findings.SlowResponse:
				slow = append(slow, f)
			case findings.Healthy:
				healthy = append(healthy, f)
			}
		}
		if wantHealthy := n == 3; (len(healthy) == 1) != wantHealthy || len(healthy) > 1 {
			t.Errorf("step %d: %d Healthy reports %+v, want one only after the slow webhook is fast again", n, len(healthy), healthy)
		}
		if got := len(slow) == 1; got != st.want || len(slow) > 1 {
			t.Fatalf("step %d: %d SlowResponse reports %+v, want %v", n, len(slow), slow, st.want)
		}
		if !st.want {
			continue
		}
		f := slow[0]
		if f.Webhook != "slow.hookscope.dev" || f.Latency != st.latency || f.Count != st.count || f.Source != FromMetrics || f.FailOpen {
			t.Errorf("step %d: report %+v, want latency %s over %d calls", n, f, st.latency, st.count)
		}
		if !strings.Contains(f.Detail, "1.5s on average") {
			t.Errorf("step %d: detail %q does not give the mean latency", n, f.Detail)
		}
	}
	if len(asked) == 0 {
		t.Error("the threshold was never asked for")
	}
}

func TestWatcherEvents(t *testing.T) {
	rec := newRecorder()
	w := NewWatcher(nil, time.Second, rec.report, slog.New(slog.DiscardHandler))
	last := metav1.NewTime(time.Date(2026, 11, 25, 2, 45, 5, 0, time.UTC))
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "kube-system", Name: "aws-node.1879", UID: types.UID("u1"), ResourceVersion: "10",
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}},
		},
		InvolvedObject: corev1.ObjectReference{Kind: "DaemonSet", Namespace: "kube-system", Name: "aws-node", UID: "ds"},
		Type:           corev1.EventTypeWarning,
		Reason:         "FailedCreate",
		Message:        caseMsg(t, "the article's DaemonSet FailedCreate, service not found"),
		Count:          3,
		LastTimestamp:  last,
		Source:         corev1.EventSource{Component: "daemonset-controller"},
	}
	slim, err := slimEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	se := slim.(*corev1.Event)
	if se.Message != ev.Message || se.ManagedFields != nil || se.Source.Component != "" {
		t.Errorf("slim event kept the wrong fields: %+v", se)
	}
	w.onEvent(se)
	w.onEvent(se) // a relist: same resourceVersion
	got := rec.all()
	if len(got) != 1 {
		t.Fatalf("got %d reports, want 1: %+v", len(got), got)
	}
	f := got[0]
	if f.Source != FromEvent || f.Object != "DaemonSet kube-system/aws-node" || f.Reason != "FailedCreate" ||
		f.Count != 3 || !f.At.Equal(last.Time) || f.Class != findings.ServiceNotFound || f.Webhook != "mpod.elbv2.k8s.aws" {
		t.Errorf("report %+v", f)
	}

	// The recorder counted it again: a new resourceVersion.
	up := se.DeepCopy()
	up.ResourceVersion, up.Count = "11", 4
	w.onEvent(up)
	if got := rec.all(); len(got) != 2 || got[1].Count != 4 {
		t.Errorf("update: %+v", got)
	}

	// An events.k8s.io series, a Normal event and an unrelated Warning.
	series := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: "apps", Name: "web.1", UID: "u2", ResourceVersion: "12"},
		InvolvedObject: corev1.ObjectReference{Kind: "ReplicaSet", Namespace: "apps", Name: "web-5d8"},
		Type:           corev1.EventTypeWarning,
		Reason:         "FailedCreate",
		Message:        caseMsg(t, "unknown authority"),
		EventTime:      metav1.NewMicroTime(last.Add(-time.Minute)),
		Series:         &corev1.EventSeries{Count: 7, LastObservedTime: metav1.NewMicroTime(last.Time)},
	}
	normal := series.DeepCopy()
	normal.UID, normal.Type = "u3", corev1.EventTypeNormal
	unrelated := series.DeepCopy()
	unrelated.UID, unrelated.Message = "u4", "Back-off restarting failed container"
	for _, e := range []*corev1.Event{series, normal, unrelated} {
		o, _ := slimEvent(e)
		w.onEvent(o)
	}
	got = rec.all()
	if len(got) != 3 {
		t.Fatalf("got %d reports, want 3: %+v", len(got), got)
	}
	if f := got[2]; f.Count != 7 || !f.At.Equal(last.Time) || f.Class != findings.UnknownAuthority || f.Object != "ReplicaSet apps/web-5d8" {
		t.Errorf("series report %+v", f)
	}

	// Deleted, then recreated with the same name: reported again.
	w.forgetEvent(se)
	w.onEvent(se)
	if n := len(rec.all()); n != 4 {
		t.Errorf("%d reports after the Event came back, want 4", n)
	}
}

// TestWatcherDeletes: a rise of failed-closed DELETE calls is flagged
// (a deletion may not complete); a rise of CREATEs alone is not.
func TestWatcherDeletes(t *testing.T) {
	const line = `apiserver_admission_webhook_rejection_count{error_type="calling_webhook_error",name="vdel",operation="%s",rejection_code="503",type="validating"} %d` + "\n"
	bodies := []string{
		fmt.Sprintf(line, "CREATE", 1) + fmt.Sprintf(line, "DELETE", 1),
		fmt.Sprintf(line, "CREATE", 3) + fmt.Sprintf(line, "DELETE", 1),
		fmt.Sprintf(line, "CREATE", 3) + fmt.Sprintf(line, "DELETE", 4),
	}
	want := []string{"", "vdel deletes=false", "vdel deletes=true"}
	w, rec := scriptedWatcher(bodies)
	for step := range bodies {
		before := len(rec.all())
		w.scrape(context.Background())
		var got []string
		for _, f := range rec.all()[before:] {
			got = append(got, fmt.Sprintf("%s deletes=%v", f.Webhook, f.Deletes))
		}
		if strings.Join(got, ",") != want[step] {
			t.Errorf("step %d: %v, want %q", step, got, want[step])
		}
	}
}

// TestSourceEvidenceSource: a signal's source names the findings evidence
// source the agent records it under.
func TestSourceEvidenceSource(t *testing.T) {
	for src, want := range map[Source]findings.Source{FromEvent: findings.Event, FromMetrics: findings.Metrics} {
		if got := src.EvidenceSource(); got != want {
			t.Errorf("%s: %q, want %q", src, got, want)
		}
	}
}
