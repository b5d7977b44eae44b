package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
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
func RunLeaderElection(ctx context.Context, client kubernetes.Interface, namespace, identity string, a *Agent, log *slog.Logger, lead func(context.Context)) error {
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, namespace, LeaseName,
		client.CoreV1(), client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: identity})
	if err != nil {
		return fmt.Errorf("setting up leader election in %s: %w", namespace, err)
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		ReleaseOnCancel: true,
		Name:            LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				log.Info("leading: running the cluster-wide checks", "lease", namespace+"/"+LeaseName)
				a.SetObjectChecks(true)
				if lead != nil {
					go lead(lctx)
				}
			},
			OnStoppedLeading: func() {
				log.Info("no longer holding the cluster-checks Lease (another agent took it, or the API server did not answer in time): its findings are held and go on if this agent leads again")
				a.SetObjectChecks(false)
			},
		},
	})
	if err != nil {
		return fmt.Errorf("setting up leader election in %s: %w", namespace, err)
	}
	for ctx.Err() == nil {
		le.Run(ctx) // returns when leadership is lost; stand again
	}
	return nil
}
