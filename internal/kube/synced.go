package kube

import (
	"context"
	"sync"
	"time"

	"k8s.io/client-go/tools/cache"
)

// syncPoll is how often WaitSynced looks at the informers during
// syncPollFine, syncPollSlow after that. client-go's WaitForCacheSync
// looks every 100 ms, and an agent's start waits for informers several
// times in turn (the webhook configurations, then their Services), paying
// up to that much each time after the list had come. A list that has not
// come by then may never come (a namespace the agent may not read): that
// wait goes on at client-go's pace, not 200 times a second.
const (
	syncPoll     = 5 * time.Millisecond
	syncPollFine = 2 * time.Second
	syncPollSlow = 100 * time.Millisecond
)

// WaitSynced waits until every informer has synced, or ctx ends. It
// reports whether they all synced.
func WaitSynced(ctx context.Context, synced ...cache.InformerSynced) bool {
	start := time.Now()
	for !allSynced(synced) {
		poll := syncPoll
		if time.Since(start) >= syncPollFine {
			poll = syncPollSlow
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(poll):
		}
	}
	return true
}

func allSynced(synced []cache.InformerSynced) bool {
	for _, s := range synced {
		if !s() {
			return false
		}
	}
	return true
}

// Tried is an informer's first answer: it has listed, or its list or watch
// failed once (it goes on retrying). A start that would rather not wait
// for what the agent may not read waits for this.
type Tried struct {
	failed chan struct{}
	once   sync.Once
	synced cache.InformerSynced
}

// TrackTries makes i report its first failed list or watch to the Tried
// it returns, and logs the failure as client-go does. Call it before i
// runs.
func TrackTries(i cache.SharedIndexInformer) *Tried {
	t := &Tried{failed: make(chan struct{}), synced: i.HasSynced}
	_ = i.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		t.once.Do(func() { close(t.failed) })
		cache.DefaultWatchErrorHandler(ctx, r, err)
	})
	return t
}

// Done reports whether the informer has listed or failed to.
func (t *Tried) Done() bool {
	select {
	case <-t.failed:
		return true
	default:
		return t.synced()
	}
}
