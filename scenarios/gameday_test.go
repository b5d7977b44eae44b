//go:build linux

package scenarios

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"
	"sigs.k8s.io/e2e-framework/pkg/types"

	"github.com/hookscope/hookscope/chaos"
)

// gameDay is one documented failure, scripted the way an SRE runs it:
// deploy a healthy webhook, inject the failure, watch a write, check that
// hookscope named the webhook and the reason (and that the span reached the
// trace backend), apply the documented fix, check that writes recover and
// the finding resolves.
type gameDay struct {
	name          string // as in the article
	expectedClass string
	spec          chaos.WebhookSpec
	// inject breaks the webhook; it may return state for remediate.
	inject func(ctx context.Context, wh *chaos.Webhook) (any, error)
	// firstWriteDelay is when the workload's first write arrives after the
	// injection. 0 writes at once (the wire sees the failing call); the
	// failures that send no packet are measured against a write 1 s later.
	firstWriteDelay time.Duration
	// wantError is a substring of the API server's answer to the write;
	// empty means the write succeeds (the webhook fails open).
	wantError string
	// orError is the API server's other words for the same failure, when
	// which it answers depends on timing: an aggregated API's reads fail
	// at the proxy until the API server's availability check (every 30 s)
	// fails too, and from then on its discovery says the group is stale.
	orError string
	// unnamed: the API server's answer names no webhook (a patch that
	// does not apply), so only wantError is looked for in it.
	unnamed bool
	effect  string // the finding's effect
	// callOutcome, when set, is how the kernel saw the failing handshake:
	// its call span (one per handshake) must be in Jaeger with the steps.
	callOutcome string
	remediation string
	remediate   func(ctx context.Context, wh *chaos.Webhook, state any) error
	// spanTags are what the kernel saw of the failed call, on the
	// finding's span: a value of "*" asks only that the tag be there.
	spanTags map[string]string
	// evidence, when set, is a substring one of the finding's pieces of
	// evidence must hold.
	evidence string
	// fix, when set, is a substring the finding's remediation must hold.
	fix string
	// namedWithin is how long the agent has to name the failure (15 s when
	// zero): longer only where the API server itself learns late.
	namedWithin time.Duration
	// beforeFailure: the agent must name the failure before the API
	// server fails the write (a stall, named while it stalls).
	beforeFailure bool
	// whileOpen, when set, is one more step while the failure is open,
	// before the fix.
	whileOpen *openStep
	// events: the agent's Events on the configuration are checked, a
	// Warning once it names the failure and a Normal one after the fix.
	events bool
}

// openStep is a step a game day runs while its failure is open.
type openStep struct {
	name string
	fn   func(ctx context.Context, t *testing.T, wh *chaos.Webhook, finding chaos.AgentFinding)
}

// answered reports whether the API server's answer to the write is the
// failure's: wantError, or orError.
func (g gameDay) answered(answer string) bool {
	return strings.Contains(answer, g.wantError) || (g.orError != "" && strings.Contains(answer, g.orError))
}

func (g gameDay) feature() types.Feature {
	var (
		wh      *chaos.Webhook
		state   any
		finding chaos.AgentFinding
		result  = lab.Report.Scenario(g.name, g.expectedClass)
	)
	fail := failer(result)
	b := features.New(g.name).
		Setup(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if wh, err = lab.DeployWebhook(ctx, g.spec); err != nil {
				fail(t, "deploying the webhook: %v", err)
			}
			result.Webhook = wh.WebhookName
			return ctx
		}).
		Assess("inject: "+g.name, func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			result.InjectedAt = time.Now()
			var err error
			if state, err = g.inject(ctx, wh); err != nil {
				fail(t, "injecting: %v", err)
			}
			return ctx
		}).
		Assess("observe: the write the webhook intercepts", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if d := time.Until(result.InjectedAt.Add(g.firstWriteDelay)); d > 0 {
				time.Sleep(d)
			}
			start, err := wh.Write(ctx)
			result.WriteAnsweredAt = time.Now()
			result.FirstWriteDelaySeconds = start.Sub(result.InjectedAt).Seconds()
			result.FirstFailedCallAt = start
			if err != nil {
				result.WriteFailed = true
				result.FailedCallError = err.Error()
			}
			switch {
			case g.wantError == "" && err != nil:
				fail(t, "the write failed (%v); a fail-open webhook lets it through", err)
			case g.wantError != "" && err == nil:
				fail(t, "the write succeeded; want the API server to reject it with %q", g.wantError)
			case g.wantError != "" && (!g.answered(err.Error()) || (!g.unnamed && !strings.Contains(err.Error(), wh.ErrorName()))):
				fail(t, "the write failed with %q; want the webhook's name and %q", err, g.wantError)
			}
			return ctx
		}).
		Assess("detect: the agent names the webhook, the reason and the effect", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var err error
			if finding, err = lab.Agent.WaitForFinding(ctx, wh.WebhookName, g.expectedClass, cmp.Or(g.namedWithin, 15*time.Second)); err != nil {
				fail(t, "%v", err)
			}
			recordDetection(result, finding)
			if finding.Webhook.Configuration != wh.Configuration() || finding.Effect != g.effect {
				fail(t, "finding names %+v with effect %q; want configuration %s, effect %q", finding.Webhook, finding.Effect, wh.Configuration(), g.effect)
			}
			if g.beforeFailure && !finding.FirstSeen.Before(result.WriteAnsweredAt) {
				fail(t, "the agent named the failure at %s, after the API server failed the write at %s", finding.FirstSeen.Format("15:04:05.000"), result.WriteAnsweredAt.Format("15:04:05.000"))
			}
			if g.evidence != "" && !slices.ContainsFunc(finding.Evidence, func(e chaos.AgentEvidence) bool { return strings.Contains(e.Detail, g.evidence) }) {
				fail(t, "no evidence of the finding says %q: %+v", g.evidence, finding.Evidence)
			}
			if g.fix != "" && !strings.Contains(finding.Remediation, g.fix) {
				fail(t, "the finding's remediation %q does not say %q", finding.Remediation, g.fix)
			}
			return ctx
		}).
		Assess("detect: the agent's metrics show the webhook's class", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			want := fmt.Sprintf(`hookscope_webhook_health{class=%q,configuration=%q,effect=%q,webhook=%q,webhook_kind=%q} 1`, g.expectedClass, wh.Configuration(), g.effect, wh.WebhookName, wh.Kind())
			var scrape string
			err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
				scrape, _ = lab.Agent.Metrics(ctx)
				return strings.Contains(scrape, want), nil
			})
			if err != nil {
				fail(t, "the agent's /metrics lacks %s", want)
			}
			return ctx
		}).
		Assess("detect: the finding's span is in Jaeger", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			traces, err := lab.Jaeger.WaitForTraces(wctx, chaos.AgentServiceName,
				map[string]string{"hookscope.finding.id": finding.ID, "hookscope.failure.class": g.expectedClass}, 1)
			if err != nil {
				fail(t, "reading the finding's span from Jaeger: %v", err)
			}
			span := traces[0].Spans[0]
			want := map[string]string{
				"hookscope.webhook.configuration":  wh.Configuration(),
				"hookscope.webhook.name":           wh.WebhookName,
				"hookscope.webhook.failure_policy": string(g.spec.FailurePolicy),
				"hookscope.service.name":           wh.Service,
				"hookscope.service.namespace":      wh.Namespace,
				"error.type":                       g.expectedClass,
			}
			if g.spec.URL { // no Service: the URL it calls
				delete(want, "hookscope.service.name")
				delete(want, "hookscope.service.namespace")
				want["url.full"] = wh.URL()
			}
			for k, v := range want {
				if span.Tags[k] != v {
					fail(t, "span %s: %s = %q, want %q (tags %v)", span.OperationName, k, span.Tags[k], v, span.Tags)
				}
			}
			result.SpanTraceID = traces[0].TraceID
			return ctx
		})
	if len(g.spanTags) > 0 {
		b = b.Assess("detect: the finding's span carries what the kernel saw", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if err := kernelFactsOnSpan(ctx, finding.ID, g.spanTags); err != nil {
				fail(t, "%v", err)
			}
			return ctx
		})
	}
	if g.whileOpen != nil {
		b = b.Assess(g.whileOpen.name, func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			g.whileOpen.fn(ctx, t, wh, finding)
			return ctx
		})
	}
	if g.events {
		b = b.Assess("detect: a Warning Event on the configuration names the failure", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			ev, err := failingEvent(ctx, wh, g.expectedClass, result.InjectedAt)
			if err != nil {
				fail(t, "%v", err)
			}
			t.Log(ev)
			return ctx
		})
	}
	b = b.
		Assess("detect: the failed handshake's call span is in Jaeger", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if g.callOutcome == "" {
				t.Skip("the failure sends no packet, or no handshake fails")
			}
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			traces, err := lab.Jaeger.WaitForTraces(wctx, chaos.AgentServiceName,
				map[string]string{"hookscope.webhook.name": wh.WebhookName, "hookscope.call.outcome": g.callOutcome}, 1)
			if err != nil {
				fail(t, "reading the call span from Jaeger: %v", err)
			}
			span := traces[0].Spans[0]
			var steps []string
			for _, e := range span.Events {
				steps = append(steps, e.Name)
			}
			want := "hookscope.call." + map[string]string{"rejected": "handshake_rejected", "refused": "refused"}[g.callOutcome]
			// A URL's address names no pod: the span names the address.
			located := span.Tags["k8s.pod.name"] != "" || (g.spec.URL && span.Tags["server.address"] == wh.PodIP.String())
			if !slices.Contains(steps, want) || !located {
				fail(t, "call span steps %v (want %s), tags %v", steps, want, span.Tags)
			}
			return ctx
		}).
		Assess("remediate: "+g.remediation, func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if err := g.remediate(ctx, wh, state); err != nil {
				fail(t, "remediating: %v", err)
			}
			result.Remediation = g.remediation
			return ctx
		}).
		Assess("recover: writes succeed and the finding resolves", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			var lastErr error
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
				_, lastErr = wh.Write(ctx)
				return lastErr == nil, nil
			})
			if err != nil {
				fail(t, "the write still fails after the fix: %v", lastErr)
			}
			result.RecoveredAt = time.Now()
			// A finding only the API server's signals opened (on kind, the
			// Lease holder's, when it named the failure first) resolves
			// after a minute without failed calls; the others as soon as
			// the agent sees the backend work.
			within := 30 * time.Second
			if !slices.ContainsFunc(finding.Sources(), func(s string) bool { return !strings.HasPrefix(s, "apiserver") }) {
				within = 90 * time.Second
			}
			resolved, err := lab.Agent.WaitForResolved(ctx, finding.ID, within)
			if err != nil {
				fail(t, "%v", err)
				return ctx
			}
			result.ResolvedAt = *resolved.Resolved
			result.Recovered = true
			return ctx
		})
	if g.events {
		b = b.Assess("recover: a Normal Event on the configuration says it recovered", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			ev, err := recoveredEvent(ctx, wh, g.expectedClass, result.InjectedAt)
			if err != nil {
				fail(t, "%v", err)
			}
			t.Log(ev)
			return ctx
		})
	}
	return b.
		Teardown(func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			finish(t, result, wh)
			return ctx
		}).
		Feature()
}

// recordDetection writes the agent's finding into the scenario's result.
func recordDetection(result *chaos.ScenarioResult, finding chaos.AgentFinding) {
	result.DetectedClass = finding.Class
	result.DetectedAt = finding.FirstSeen
	result.DetectedBy = finding.Sources()
	for _, e := range finding.Evidence {
		result.Evidence = append(result.Evidence, e.Source+": "+e.Detail)
	}
	result.DetectLatencySeconds = finding.FirstSeen.Sub(result.FirstFailedCallAt).Seconds()
}

// finish decides whether the scenario passed and removes its webhook.
func finish(t *testing.T, result *chaos.ScenarioResult, wh *chaos.Webhook) {
	result.Passed = !t.Failed() && len(result.Failures) == 0 && result.Recovered
	removeWebhooks(t, wh)
}

// removeWebhooks removes the webhooks a test made (nil: never made) and
// their backends; a failure is logged, as the test's verdict is already in.
func removeWebhooks(t *testing.T, whs ...*chaos.Webhook) {
	for _, wh := range whs {
		if wh == nil {
			continue
		}
		if err := wh.Remove(context.Background()); err != nil {
			t.Logf("removing %s: %v", wh.WebhookName, err)
		}
	}
}

// failer records a failed check in the result and stops the step.
func failer(result *chaos.ScenarioResult) func(t *testing.T, format string, args ...any) {
	return func(t *testing.T, format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		result.Failures = append(result.Failures, msg)
		if result.Webhook != "" {
			// What the agent did about the webhook: CI keeps only this output.
			if said := lab.Agent.Said(result.Webhook, 20); said != "" {
				t.Logf("the agent's log on %s:\n%s", result.Webhook, said)
			}
		}
		t.Fatal(msg)
	}
}

// kernelFactsOnSpan waits for a span of finding id in Jaeger with want's
// tags (a "*" value: any).
func kernelFactsOnSpan(ctx context.Context, id string, want map[string]string) error {
	exact := map[string]string{"hookscope.finding.id": id}
	for k, v := range want {
		if v != "*" {
			exact[k] = v
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	traces, err := lab.Jaeger.WaitForTraces(wctx, chaos.AgentServiceName, exact, 1)
	if err != nil {
		return fmt.Errorf("no span of finding %s with %v in Jaeger: %w", id, exact, err)
	}
	span := traces[0].Spans[0]
	for k, v := range want {
		if v == "*" && span.Tags[k] == "" {
			return fmt.Errorf("span of finding %s lacks %s (tags %v)", id, k, span.Tags)
		}
	}
	return nil
}
