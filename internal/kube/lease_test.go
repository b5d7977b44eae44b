package kube_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/internal/kube"
	"github.com/hookscope/hookscope/internal/kube/kubefake"
)

// candidate is one agent standing for the Lease: leading says whether it
// leads now, terms how many times it started.
type candidate struct {
	leading atomic.Bool
	terms   atomic.Int32
	stopped chan struct{} // closed when Run returns
}

// stand runs an elector for id on api with short periods until ctx ends.
func stand(ctx context.Context, api kube.API, id string) *candidate {
	return standLogged(ctx, api, id, nil)
}

// standLogged is stand with the elector's log going to log.
func standLogged(ctx context.Context, api kube.API, id string, log *slog.Logger) *candidate {
	c := &candidate{stopped: make(chan struct{})}
	e := &kube.Elector{API: api, Namespace: "hookscope", Name: "hookscope-cluster-checks", Identity: id,
		LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond, Log: log}
	go func() {
		defer close(c.stopped)
		e.Run(ctx, func(context.Context) { c.terms.Add(1); c.leading.Store(true) }, func() { c.leading.Store(false) })
	}()
	return c
}

// leader stands id on api and waits until it leads; stop ends its run
// (it releases the Lease), as does the end of the test.
func leader(t *testing.T, api kube.API, id string) (c *candidate, stop context.CancelFunc) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	c = stand(ctx, api, id)
	eventually(t, id+" leads", c.leading.Load)
	return c, stop
}

// eventually waits up to 20 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("after 20s: %s", what)
}

func holder(t *testing.T, api *kubefake.API) string {
	t.Helper()
	var l coordinationv1.Lease
	if err := api.Get(context.Background(), coordinationv1.SchemeGroupVersion.WithResource("leases"), "hookscope", "hookscope-cluster-checks", &l); err != nil {
		return ""
	}
	return ptr.Deref(l.Spec.HolderIdentity, "")
}

// TestOneAgentLeadsAndHandsOverOnExit: of two agents one leads; the other
// takes over as soon as the first stops (it released the Lease), not a
// lease duration later.
func TestOneAgentLeadsAndHandsOverOnExit(t *testing.T) {
	api := kubefake.New(nil)
	a, stopA := leader(t, api, "node-a")
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	b := stand(ctxB, api, "node-b")
	time.Sleep(500 * time.Millisecond) // five of a's renewals
	if b.leading.Load() || holder(t, api) != "node-a" {
		t.Fatalf("node-b leads (%v) or holds the Lease (%q) while node-a renews it", b.leading.Load(), holder(t, api))
	}
	stopA()
	<-a.stopped
	if a.leading.Load() {
		t.Error("node-a still leads after it stopped")
	}
	start := time.Now()
	eventually(t, "node-b leads after node-a stopped", b.leading.Load)
	if took := time.Since(start); took > time.Second {
		t.Errorf("node-b took %s to lead after node-a released the Lease (it sees the release in its watch; RetryPeriod 100ms, the lease 2s)", took)
	}
	if holder(t, api) != "node-b" {
		t.Errorf("the Lease is held by %q", holder(t, api))
	}
}

// TestLeaderStopsWhenItCannotRenew: an API server that stops answering
// ends the term within the renew deadline (before another agent could take
// the expired Lease), and the agent leads again once it answers.
func TestLeaderStopsWhenItCannotRenew(t *testing.T) {
	api := kubefake.New(nil)
	var down atomic.Bool
	api.Clientset.PrependReactor("*", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if down.Load() {
			return true, nil, apierrors.NewServiceUnavailable("the API server is down")
		}
		return false, nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := stand(ctx, api, "node-a")
	eventually(t, "node-a leads", a.leading.Load)
	down.Store(true)
	start := time.Now()
	eventually(t, "node-a stops leading", func() bool { return !a.leading.Load() })
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("node-a led for %s without renewing; the renew deadline is 1s, the lease 2s", took)
	}
	down.Store(false)
	eventually(t, "node-a leads again", a.leading.Load)
	if a.terms.Load() != 2 {
		t.Errorf("%d terms, want 2", a.terms.Load())
	}
}

// TestExpiredLeaseIsTaken: a Lease whose holder stopped renewing (a node
// gone without releasing it) is taken once it has not changed for its
// duration, measured on the candidate's clock.
func TestExpiredLeaseIsTaken(t *testing.T) {
	old := time.Now().Add(-time.Hour) // a skewed clock must not matter
	api := kubefake.New(nil, &coordinationv1.Lease{
		ObjectMeta: metav1ObjectMeta("hookscope", "hookscope-cluster-checks"),
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-gone"), LeaseDurationSeconds: ptr.To(int32(1)),
			RenewTime: microTime(old), AcquireTime: microTime(old), LeaseTransitions: ptr.To(int32(3))},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	b := stand(ctx, api, "node-b")
	eventually(t, "node-b takes the expired Lease", b.leading.Load)
	if took := time.Since(start); took < time.Second {
		t.Errorf("node-b took the Lease after %s: before it saw it unchanged for its 1s duration", took)
	}
	var l coordinationv1.Lease
	if err := api.Get(ctx, coordinationv1.SchemeGroupVersion.WithResource("leases"), "hookscope", "hookscope-cluster-checks", &l); err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(l.Spec.LeaseTransitions, 0); got != 4 {
		t.Errorf("lease transitions %d, want 4", got)
	}
}

func metav1ObjectMeta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name}
}

func microTime(t time.Time) *metav1.MicroTime { m := metav1.NewMicroTime(t); return &m }

// reads counts one candidate's reads of the Lease (its GETs), and can
// refuse its list and watch (a Role without them) or its updates (a node
// cut off from the API server's writes).
type reads struct {
	kube.API
	gets       atomic.Int32
	lists      atomic.Int32 // refused lists, with noWatch
	noWatch    bool
	noUpdates  atomic.Bool
	refuseNext atomic.Bool  // refuse the next update, once
	updates    atomic.Int32 // updates written
	updated    atomic.Int64 // when the last was written (UnixNano)
	refused    atomic.Int64 // when refuseNext was refused (UnixNano)
}

func (r *reads) Get(ctx context.Context, res schema.GroupVersionResource, namespace, name string, into runtime.Object) error {
	r.gets.Add(1)
	return r.API.Get(ctx, res, namespace, name, into)
}

func (r *reads) Update(ctx context.Context, res schema.GroupVersionResource, namespace string, obj, into runtime.Object) error {
	if r.noUpdates.Load() {
		return apierrors.NewServiceUnavailable("cut off")
	}
	if r.refuseNext.CompareAndSwap(true, false) {
		r.refused.Store(time.Now().UnixNano())
		return apierrors.NewServiceUnavailable("cut off")
	}
	err := r.API.Update(ctx, res, namespace, obj, into)
	if err == nil {
		r.updates.Add(1)
		r.updated.Store(time.Now().UnixNano())
	}
	return err
}

func (r *reads) ListWatch(res schema.GroupVersionResource, namespace string, tweak func(*metav1.ListOptions)) cache.ListerWatcher {
	if !r.noWatch {
		return r.API.ListWatch(res, namespace, tweak)
	}
	forbidden := apierrors.NewForbidden(res.GroupResource(), "", errors.New("no list or watch"))
	return &cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			r.lists.Add(1)
			return nil, forbidden
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return nil, forbidden },
	}
}

// TestCandidateFollowsTheLeaseWithoutReadingIt: a candidate learns of the
// holder's renewals from its watch and reads the Lease no more while they
// come; when they stop (the holder is cut off without releasing it), it
// takes the Lease once it has seen none for the Lease's duration.
func TestCandidateFollowsTheLeaseWithoutReadingIt(t *testing.T) {
	api := kubefake.New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &reads{API: api}
	ca := stand(ctx, a, "node-a")
	eventually(t, "node-a leads", ca.leading.Load)
	b := &reads{API: api}
	cb := stand(ctx, b, "node-b")
	eventually(t, "node-b has read the Lease", func() bool { return b.gets.Load() > 0 })
	time.Sleep(200 * time.Millisecond) // its watch lists the Lease
	before := b.gets.Load()
	time.Sleep(1500 * time.Millisecond) // two renewals, 15 of a polling candidate's tries
	if n := b.gets.Load() - before; n != 0 || cb.leading.Load() {
		t.Errorf("node-b read the Lease %d times in 1.5s while node-a renewed it (leading: %v)", n, cb.leading.Load())
	}
	a.noUpdates.Store(true)
	eventually(t, "node-b leads after node-a stopped renewing", cb.leading.Load)
	// node-a stops leading within its 1s renew deadline; node-b waits for
	// the 2s lease duration from the last renewal it saw.
	if took := time.Since(time.Unix(0, a.updated.Load())); took < 2*time.Second || took > 4*time.Second {
		t.Errorf("node-b led %s after node-a's last renewal; the lease duration is 2s", took)
	}
	eventually(t, "node-a no longer leads", func() bool { return !ca.leading.Load() })
}

// TestHolderRenewsEveryRenewPeriod: the holder writes the Lease
// RenewPeriod apart, not every RetryPeriod (each write wakes every
// candidate's watch), and a renewal that fails is tried again after
// RetryPeriod, not a whole RenewPeriod later, and the term goes on.
func TestHolderRenewsEveryRenewPeriod(t *testing.T) {
	a := &reads{API: kubefake.New(nil)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &candidate{stopped: make(chan struct{})}
	e := &kube.Elector{API: a, Namespace: "hookscope", Name: "hookscope-cluster-checks", Identity: "node-a",
		LeaseDuration: 3 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 100 * time.Millisecond, RenewPeriod: time.Second}
	go func() {
		defer close(c.stopped)
		e.Run(ctx, func(context.Context) { c.terms.Add(1); c.leading.Store(true) }, func() { c.leading.Store(false) })
	}()
	eventually(t, "node-a leads", c.leading.Load)
	before := a.updates.Load()
	time.Sleep(2500 * time.Millisecond)
	if n := a.updates.Load() - before; n < 2 || n > 3 {
		t.Errorf("node-a renewed the Lease %d times in 2.5s; its renew period is 1s", n)
	}
	written := a.updates.Load()
	a.refuseNext.Store(true)
	eventually(t, "the refused renewal and the next one", func() bool { return !a.refuseNext.Load() && a.updates.Load() > written })
	if gap := time.Duration(a.updated.Load() - a.refused.Load()); gap > 500*time.Millisecond {
		t.Errorf("the refused renewal was tried again %s later; RetryPeriod is 100ms", gap)
	}
	time.Sleep(1500 * time.Millisecond)
	if !c.leading.Load() || c.terms.Load() != 1 {
		t.Errorf("after one refused renewal node-a leads %v in term %d; want the first term, still leading", c.leading.Load(), c.terms.Load())
	}
}

// TestCandidateWithoutWatchPolls: a candidate that may not list or watch
// the Lease (a Role from before it needed to) still takes it over,
// reading it every RetryPeriod.
func TestCandidateWithoutWatchPolls(t *testing.T) {
	api := kubefake.New(nil)
	_, stopA := leader(t, api, "node-a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := &reads{API: api, noWatch: true}
	var log bytes.Buffer
	var logMu sync.Mutex
	cb := standLogged(ctx, b, "node-b", slog.New(slog.NewTextHandler(&lockedWriter{&logMu, &log}, nil)))
	time.Sleep(time.Second)
	if n := b.gets.Load(); n < 5 || cb.leading.Load() {
		t.Errorf("node-b without a watch read the Lease %d times in 1s (RetryPeriod 100ms), leading %v", n, cb.leading.Load())
	}
	logMu.Lock()
	said := strings.Count(log.String(), "cannot follow the Lease in a watch")
	logMu.Unlock()
	if said != 1 || b.lists.Load() != 1 {
		t.Errorf("the refused watch was said %d times and tried %d times; want once each:\n%s", said, b.lists.Load(), log.String())
	}
	stopA()
	eventually(t, "node-b leads after node-a released the Lease", cb.leading.Load)
}

// TestHolderRenewsWithoutReadingTheLease: the holder renews the Lease as
// it last wrote it, one write per renewal and no read; when the Lease
// changed since (someone labelled it), the write conflicts, and the holder
// reads it and goes on holding it.
func TestHolderRenewsWithoutReadingTheLease(t *testing.T) {
	api := kubefake.New(nil)
	optimisticConcurrency(api)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &reads{API: api}
	ca := stand(ctx, a, "node-a")
	eventually(t, "node-a leads", ca.leading.Load)
	before := a.gets.Load()
	time.Sleep(time.Second) // ten renewals
	if n := a.gets.Load() - before; n != 0 {
		t.Errorf("node-a read the Lease %d times in ten renewals", n)
	}
	leases := coordinationv1.SchemeGroupVersion.WithResource("leases")
	var l coordinationv1.Lease
	if err := api.Get(ctx, leases, "hookscope", "hookscope-cluster-checks", &l); err != nil {
		t.Fatal(err)
	}
	renewed := l.Spec.RenewTime
	l.Labels = map[string]string{"team": "platform"}
	if err := api.Update(ctx, leases, "hookscope", &l, &l); err != nil {
		t.Fatal(err)
	}
	before = a.gets.Load()
	eventually(t, "node-a renews the labelled Lease", func() bool {
		var now coordinationv1.Lease
		return api.Get(ctx, leases, "hookscope", "hookscope-cluster-checks", &now) == nil &&
			now.Labels["team"] == "platform" && now.Spec.RenewTime.After(renewed.Time) && ptr.Deref(now.Spec.HolderIdentity, "") == "node-a"
	})
	if n := a.gets.Load() - before; n < 1 || ca.terms.Load() != 1 || !ca.leading.Load() {
		t.Errorf("after the Lease changed: %d reads (want at least one), %d terms, leading %v", n, ca.terms.Load(), ca.leading.Load())
	}
}

// optimisticConcurrency makes api's Lease updates what the API server's
// are (client-go's fake tracker takes any): a write must carry the Lease's
// resourceVersion, else it conflicts, and each write changes it.
func optimisticConcurrency(api *kubefake.API) {
	leases := coordinationv1.SchemeGroupVersion.WithResource("leases")
	var mu sync.Mutex
	bump := func(l *coordinationv1.Lease) {
		n, _ := strconv.Atoi(l.ResourceVersion)
		l.ResourceVersion = strconv.Itoa(n + 1)
	}
	api.Clientset.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		bump(a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease))
		return false, nil, nil
	})
	api.Clientset.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		cur, err := api.Clientset.Tracker().Get(leases, l.Namespace, l.Name)
		if err != nil {
			return true, nil, err
		}
		if have := cur.(*coordinationv1.Lease).ResourceVersion; l.ResourceVersion != have {
			return true, nil, apierrors.NewConflict(leases.GroupResource(), l.Name, fmt.Errorf("resourceVersion %q, stored %q", l.ResourceVersion, have))
		}
		bump(l)
		return false, nil, nil
	})
}

// lockedWriter serialises writes to w (the elector logs from its
// informer's goroutine too).
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
