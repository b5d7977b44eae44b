package agent

import (
	"context"
	"log/slog"

	"github.com/hookscope/hookscope/internal/kube"
)

// LeaseName is the Lease the agents elect the one that runs the
// cluster-wide checks with.
const LeaseName = "hookscope-cluster-checks"

// RunLeaderElection runs the cluster-wide object checks on exactly one agent
// of the cluster: the holder of the Lease hookscope-cluster-checks in
// namespace. It returns when ctx ends.
//
// A webhook that fails closed on leases in that namespace would stop the
// renewals: hookscope's namespace must be excluded from every webhook (see
// deploy/). Until a renewal fails, the leader keeps checking.
//
// lead runs the other cluster-wide work (the API server's signals, impact
// correlation) for as long as this agent leads.
func RunLeaderElection(ctx context.Context, api kube.API, namespace, identity string, a *Agent, log *slog.Logger, lead func(context.Context)) {
	e := &kube.Elector{API: api, Namespace: namespace, Name: LeaseName, Identity: identity, Log: log}
	e.Run(ctx, func(lctx context.Context) {
		log.Info("leading: running the cluster-wide checks", "lease", namespace+"/"+LeaseName)
		a.SetObjectChecks(true)
		if lead != nil {
			lead(lctx)
		}
	}, func() {
		log.Info("no longer holding the cluster-checks Lease (another agent took it, or the API server did not answer in time): its findings are held and go on if this agent leads again")
		a.SetObjectChecks(false)
	})
}
