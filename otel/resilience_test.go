//go:build linux

package otel

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/jaeger"
)

// TestCollectorOutage is the game day of the exporter: a real Jaeger takes
// findings, is killed while findings keep coming, and comes back on the
// same ports. The agent never waits for it; the spans that fit the queue
// are retried and arrive once it is back, the others are counted as
// dropped, and every span recorded is either in Jaeger or in that count.
func TestCollectorOutage(t *testing.T) {
	const (
		queue  = 8
		before = 5  // sent while Jaeger is up
		during = 20 // sent while it is down: queue are kept, the rest dropped
		after  = 5  // sent once it is back
	)
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			j := startJaeger(ctx, t)
			endpoint := j.OTLPGRPCEndpoint()
			if protocol == "http" {
				endpoint = j.OTLPHTTPEndpoint()
			}
			service := "hookscope-outage-" + protocol
			exp, err := NewExporter(ctx, Config{
				Endpoint: endpoint, Insecure: true, Protocol: protocol, ServiceName: service,
				QueueSize: queue,
				RetryFor:  90 * time.Second, // longer than Jaeger takes to come back
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer scancel()
				_ = exp.Shutdown(sctx)
			})
			metrics, err := NewMetrics(MetricsState{
				Webhooks: func() []Webhook { return nil },
				Findings: func() ([]findings.Finding, []findings.Finding) { return nil, nil },
				Spans:    exp.Stats,
			})
			if err != nil {
				t.Fatal(err)
			}
			emit := func(phase string, n int) []string {
				var ids []string
				start := time.Now()
				for i := range n {
					f := certExpiredFinding(time.Now())
					f.ID = fmt.Sprintf("%s-%02d", phase, i)
					exp.Report(f)
					ids = append(ids, f.ID)
				}
				// The caller never waits for the collector, up or down.
				d := time.Since(start)
				t.Logf("%s: %d findings reported in %v", phase, n, d)
				if d > 250*time.Millisecond {
					t.Errorf("%s: %d Reports took %v: Report waits for the collector", phase, n, d)
				}
				return ids
			}
			waitStats := func(what string, ok func(SpanStats) bool) SpanStats {
				t.Helper()
				deadline := time.Now().Add(2 * time.Minute)
				for {
					st := exp.Stats()
					if ok(st) {
						return st
					}
					if time.Now().After(deadline) || ctx.Err() != nil {
						t.Fatalf("waiting for %s: stats %+v (jaeger log: %s)", what, st, j.LogPath())
					}
					time.Sleep(100 * time.Millisecond)
				}
			}

			// Up: the first findings arrive.
			sentBefore := emit("before", before)
			waitStats("the first spans exported", func(s SpanStats) bool { return s.Exported == before })
			gotBefore := findingIDs(ctx, t, j, service, before)
			if !slices.Equal(gotBefore, sentBefore) {
				t.Fatalf("before the outage Jaeger has %v, want %v", gotBefore, sentBefore)
			}

			// Down: Jaeger crashes; findings keep coming.
			if err := j.Kill(); err != nil {
				t.Fatal(err)
			}
			downAt := time.Now()
			sentDuring := emit("during", during)
			st := exp.Stats()
			if st.Queued != queue || st.QueueFull != during-queue || st.Exported != before || st.ExportFailed != 0 {
				t.Errorf("right after the outage's findings: %+v, want %d queued, %d dropped (queue_full), %d exported", st, queue, during-queue, before)
			}
			// Let the exporter hit the dead collector and retry a while.
			time.Sleep(3 * time.Second)
			if st := exp.Stats(); st.Queued != queue || st.ExportFailed != 0 {
				t.Errorf("3s into the outage: %+v, want the %d queued spans still waiting for retry", st, queue)
			}
			scrape := scrapeMetrics(t, metrics)
			for _, want := range []string{
				fmt.Sprintf(`hookscope_exporter_spans_total{outcome="queue_full"} %d`, during-queue),
				fmt.Sprintf(`hookscope_exporter_spans_total{outcome="exported"} %d`, before),
				fmt.Sprintf(`hookscope_exporter_queue_length %d`, queue),
				fmt.Sprintf(`hookscope_exporter_queue_capacity %d`, queue),
			} {
				if !strings.Contains(scrape, want) {
					t.Errorf("during the outage the metrics lack %s:\n%s", want, grepLines(scrape, "hookscope_exporter"))
				}
			}

			// Back, on the same ports, with empty storage: the queue catches up.
			j, err = j.Restart(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := j.Stop(); err != nil {
					t.Error(err)
				}
			})
			t.Logf("jaeger was down for %v", time.Since(downAt))
			st = waitStats("the queued spans exported", func(s SpanStats) bool { return s.Queued == 0 })
			t.Logf("queue drained %v after jaeger went down", time.Since(downAt))
			sentAfter := emit("after", after)
			st = waitStats("the last spans exported", func(s SpanStats) bool { return s.Exported == before+queue+after })

			// What Jaeger has now (its storage started empty at the restart):
			// the first spans queued during the outage, and those sent after.
			wantAfter := append(slices.Clone(sentDuring[:queue]), sentAfter...)
			slices.Sort(wantAfter)
			gotAfter := findingIDs(ctx, t, j, service, len(wantAfter))
			if !slices.Equal(gotAfter, wantAfter) {
				t.Errorf("after the restart Jaeger has %v, want %v", gotAfter, wantAfter)
			}
			kept := len(gotBefore) + len(gotAfter)
			emitted := before + during + after
			t.Logf("%s outage: emitted %d, kept %d (%d before, %d after the restart), dropped %d; stats %+v",
				protocol, emitted, kept, len(gotBefore), len(gotAfter), st.Dropped(), st)
			if uint64(kept)+st.Dropped() != uint64(emitted) || st.Dropped() != during-queue || st.Exported != uint64(kept) || st.Queued != 0 {
				t.Errorf("accounting: kept %d + dropped %d != emitted %d, or exported %d != kept (stats %+v)", kept, st.Dropped(), emitted, st.Exported, st)
			}
			if st.Recorded() != uint64(emitted) {
				t.Errorf("stats account for %d spans, %d were recorded", st.Recorded(), emitted)
			}
		})
	}
}

// findingIDs waits until Jaeger holds at least n traces of service (and a
// moment more, so extra ones show) and returns their finding IDs, sorted.
func findingIDs(ctx context.Context, t *testing.T, j *jaeger.Server, service string, n int) []string {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := j.WaitForTraces(wctx, service, nil, n); err != nil {
		t.Fatalf("%v (jaeger log: %s)", err, j.LogPath())
	}
	time.Sleep(500 * time.Millisecond)
	traces, err := j.FindTraces(ctx, service, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tr := range traces {
		for _, sp := range tr.Spans {
			ids = append(ids, sp.Tags["hookscope.finding.id"])
		}
	}
	slices.Sort(ids)
	return ids
}

// TestRetryGivesUp checks the other way a span is dropped: the collector
// stays away longer than RetryFor, so the queued batch is given up and
// counted as export_failed, for both protocols.
func TestRetryGivesUp(t *testing.T) {
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			endpoint := l.Addr().String()
			l.Close() // nobody listens: connection refused

			exp, err := NewExporter(t.Context(), Config{Endpoint: endpoint, Insecure: true, Protocol: protocol, RetryFor: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer exp.Shutdown(context.Background())
			for range 3 {
				exp.Report(certExpiredFinding(time.Now()))
			}
			deadline := time.Now().Add(15 * time.Second)
			for exp.Stats().ExportFailed != 3 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			st := exp.Stats()
			if st.ExportFailed != 3 || st.Queued != 0 || st.Exported != 0 || st.QueueFull != 0 {
				t.Errorf("stats %+v, want 3 export_failed and nothing else", st)
			}
		})
	}
}

func scrapeMetrics(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
