package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/hookscope/hookscope/apisignals"
	"github.com/hookscope/hookscope/impact"
	"github.com/hookscope/hookscope/internal/kube"
)

// ClusterSignals is the cluster-wide work besides the object checks: the
// API server's signals (Events, /metrics) and what their failures break.
// The agent that holds the Lease runs it.
type ClusterSignals struct {
	API             kube.API
	MetricsInterval time.Duration
	Log             *slog.Logger
}

// RunClusterSignals watches the API server's signals and correlates
// them until ctx ends.
func (a *Agent) RunClusterSignals(ctx context.Context, cs ClusterSignals) error {
	corr := impact.New(cs.API, a.store, a, nil, cs.Log)
	w := apisignals.NewWatcher(cs.API, cs.MetricsInterval, func(f apisignals.Failure) {
		a.judgePath(f)
		corr.OnSignal(signalOf(f))
	}, cs.Log)
	w.SetSlowThreshold(a.SlowAfter)
	w.OnDenial(func(d apisignals.DeniedCreate) { corr.OnDenial(denialOf(d)) })
	go func() { _ = w.Run(ctx) }()
	return corr.Run(ctx)
}

// signalOf is what the correlation reads of a signal.
func signalOf(f apisignals.Failure) impact.Signal {
	return impact.Signal{Webhook: f.Webhook, Class: f.Class, FailOpen: f.FailOpen, Detail: f.Detail,
		Source: f.Source.EvidenceSource(), At: f.At, Since: f.Since, Object: f.Object, Reason: f.Reason, Count: f.Count,
		Latency: f.Latency, Deletes: f.Deletes, CallOut: f.CallOut}
}
