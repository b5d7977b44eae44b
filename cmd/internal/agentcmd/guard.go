package agentcmd

import (
	"context"
	"log/slog"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"

	"github.com/hookscope/hookscope/events"
	"github.com/hookscope/hookscope/guard"
	"github.com/hookscope/hookscope/internal/kube"
	"github.com/hookscope/hookscope/otel"
)

// guardOptions turn on and bound the opt-in guard (off by default): it
// writes to the webhook configurations that carry its annotation only.
type guardOptions struct {
	on                      bool
	grace, revertAfter, ttl time.Duration
	window                  time.Duration
	max                     int
}

func (o *guardOptions) flags(f *pflag.FlagSet) {
	f.BoolVar(&o.on, "guard", false, "let the agent holding the Lease exclude a protected namespace (kube-system) from a webhook that fails closed and keeps its pods from being created, for webhook configurations annotated "+guard.OptIn+"=true only, and put it back once healthy (needs the chart's guard ClusterRole)")
	f.DurationVar(&o.grace, "guard-grace", time.Minute, "how long a protected target must stay blocked before the guard acts")
	f.DurationVar(&o.revertAfter, "guard-revert-after", 5*time.Minute, "how long the webhook must be healthy before the guard puts it back")
	f.DurationVar(&o.ttl, "guard-ttl", 6*time.Hour, "the longest a guard change stays, healthy or not")
	f.DurationVar(&o.window, "guard-window", 10*time.Minute, "at most one guard change per webhook in this window")
	f.IntVar(&o.max, "guard-max", 3, "the most webhooks the guard changes at once")
}

// newGuard is the guard, recording each action as an Event on the
// configuration, in the metrics and the log; nil when off.
func newGuard(ctx context.Context, o guardOptions, client kube.API, metrics *otel.Metrics, exp *otel.Exporter, log *slog.Logger) *guard.Guard {
	if !o.on {
		return nil
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(events.NewSink(client))
	recorder := broadcaster.NewRecorder(kube.Scheme, corev1.EventSource{Component: "hookscope-guard"})
	records := guard.Records{
		Count: metrics.ObserveGuard,
		Event: func(_ context.Context, cfg metav1.Object, _ string, warning bool, reason, msg string) {
			obj, ok := cfg.(runtime.Object)
			if !ok {
				return
			}
			kind := corev1.EventTypeNormal
			if warning {
				kind = corev1.EventTypeWarning
			}
			recorder.Event(obj, kind, reason, msg)
		},
	}
	if exp != nil {
		records.Span = exp.ReportGuard
	}
	log.Warn("guard on: the agent holding the Lease may exclude a protected namespace from webhooks that opt in", "annotation", guard.OptIn+"=true",
		"grace", o.grace, "revert_after", o.revertAfter, "ttl", o.ttl, "window", o.window, "max", o.max)
	return guard.New(client, guard.Config{Grace: o.grace, RevertAfter: o.revertAfter, TTL: o.ttl, Window: o.window, MaxGuarded: o.max}, records, log)
}
