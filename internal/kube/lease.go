package kube

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

var leasesResource = coordinationv1.SchemeGroupVersion.WithResource("leases")

// Elector makes one of several agents the holder of a Lease, the way
// client-go's leader election does with its Lease lock (whose package imports
// every API group: see the package's doc). A holder renews the Lease every
// RenewPeriod, writing it as it last wrote it (no read first), and after a
// renewal that failed tries again every RetryPeriod; a candidate
// follows it in a watch and takes it when it is released, or when it has
// seen no renewal for LeaseDuration, measured on its own clock from when it
// saw the Lease change, so clock skew between nodes does not matter. A
// holder that could not renew for RenewDeadline stops leading before any
// candidate can take the Lease.
type Elector struct {
	API             API
	Namespace, Name string
	Identity        string
	LeaseDuration   time.Duration // 15s when zero
	RenewDeadline   time.Duration // 10s when zero
	RetryPeriod     time.Duration // 2s when zero
	// RenewPeriod is how often the holder renews the Lease: a third of
	// LeaseDuration when zero (at most half of RenewDeadline). Each renewal
	// is a write to etcd and wakes every candidate's watch, so it is not
	// RetryPeriod as in client-go (every 2s); three renewals still fall in
	// each LeaseDuration.
	RenewPeriod time.Duration
	Log         *slog.Logger

	observed     coordinationv1.LeaseSpec // the Lease as last seen
	observedTime time.Time                // when it was seen to change
	// held is the Lease as this agent last wrote it, while it holds it: a
	// renewal updates it without reading it first, and reads it only when
	// the API server says it changed since (a conflict).
	held *coordinationv1.Lease
}

func (e *Elector) defaults() {
	if e.LeaseDuration == 0 {
		e.LeaseDuration = 15 * time.Second
	}
	if e.RenewDeadline == 0 {
		e.RenewDeadline = 10 * time.Second
	}
	if e.RetryPeriod == 0 {
		e.RetryPeriod = 2 * time.Second
	}
	if e.RenewPeriod == 0 {
		e.RenewPeriod = min(e.LeaseDuration/3, e.RenewDeadline/2)
	}
	if e.Log == nil {
		e.Log = slog.New(slog.DiscardHandler)
	}
}

// Run stands for the Lease until ctx ends. While this agent holds it, lead
// runs with a context that ends when the Lease is lost; stopped is called
// after each term. When ctx ends, a holder releases the Lease so another
// agent takes it at once.
func (e *Elector) Run(ctx context.Context, lead func(context.Context), stopped func()) {
	e.defaults()
	for ctx.Err() == nil {
		if !e.acquire(ctx) {
			return
		}
		lctx, cancel := context.WithCancel(ctx)
		go lead(lctx)
		e.renew(ctx)
		e.held = nil
		cancel()
		if ctx.Err() != nil {
			e.release()
		}
		stopped()
	}
}

// acquire tries to take the Lease until this agent holds it; false when
// ctx ended first. Between tries it follows the Lease with a watch: while
// another agent renews it, each renewal arrives as a watch event (served
// from the API server's cache: a read of the Lease is a read of etcd, and a
// thousand nodes' candidates reading it every RetryPeriod would be 500 of
// them a second), and the candidate tries again only when the Lease is
// released or deleted, or once it has seen no renewal for the Lease's
// duration. Until the watch has listed the Lease (or if it cannot: a Role
// without list and watch on it), it tries every RetryPeriod, as client-go's
// leader election does.
func (e *Elector) acquire(ctx context.Context) bool {
	w := e.follow(ctx)
	defer w.stop()
	for {
		if e.tryAcquireOrRenew(ctx) {
			return true
		}
		if !e.waitFree(ctx, w) {
			return false
		}
	}
}

// leaseWatch is what follow sees of the Lease: its spec at each change
// (the latest only, never a backlog; an empty spec once deleted), and
// whether the watch has listed it yet; stop ends the watch.
type leaseWatch struct {
	changes chan coordinationv1.LeaseSpec
	synced  func() bool
	stop    context.CancelFunc
}

// follow watches the Lease until ctx ends or w.stop.
func (e *Elector) follow(ctx context.Context) (w leaseWatch) {
	ctx, w.stop = context.WithCancel(ctx)
	w.changes = make(chan coordinationv1.LeaseSpec, 1)
	send := func(spec coordinationv1.LeaseSpec) {
		for {
			select {
			case w.changes <- spec:
				return
			default:
			}
			select { // full: the spec waiting there is older, drop it
			case <-w.changes:
			default:
			}
		}
	}
	byName := func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + e.Name }
	inf := NewInformer(e.API, leasesResource, e.Namespace, byName, &coordinationv1.Lease{}, nil)
	specOf := func(obj any) {
		if l, ok := obj.(*coordinationv1.Lease); ok && l.Name == e.Name {
			send(l.Spec)
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{ // fails only once started
		AddFunc:    specOf,
		UpdateFunc: func(_, obj any) { specOf(obj) },
		DeleteFunc: func(any) { send(coordinationv1.LeaseSpec{}) },
	})
	w.synced = inf.HasSynced
	// A Role without list and watch on the Lease (one from before this
	// agent followed it) is said once, and the watch stopped: the
	// candidate reads the Lease every RetryPeriod, where the informer would
	// retry and log the refusal for as long as it runs.
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		if apierrors.IsForbidden(err) {
			e.Log.Info("cannot follow the Lease in a watch: reading it every "+e.RetryPeriod.String()+" instead (the agent's Role lets it list and watch that Lease)",
				"lease", e.Namespace+"/"+e.Name, "err", err)
			w.stop()
			return
		}
		cache.DefaultWatchErrorHandler(ctx, r, err)
	})
	go inf.RunWithContext(ctx)
	return w
}

// waitFree waits after a try that did not take the Lease until this agent
// may take it: it was released or deleted, or this agent saw no renewal of
// it for its duration. A Lease the watch shows released is tried after a
// random part of RetryPeriod, so that of many candidates one takes it and
// the others see that in the watch before they try. Without a listed watch,
// and after a try that failed though the Lease looked free, it waits
// RetryPeriod (with jitter). False when ctx ended first.
func (e *Elector) waitFree(ctx context.Context, w leaseWatch) bool {
	jitter := func() time.Duration { return time.Duration(rand.Float64() * 0.2 * float64(e.RetryPeriod)) }
	wait := e.RetryPeriod + jitter()
	for {
		if w.synced() && !e.free(time.Now()) {
			wait = time.Until(e.expiry()) + jitter()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case spec := <-w.changes:
			t.Stop()
			e.observe(spec, time.Now())
			if e.free(time.Now()) {
				wait = time.Duration(rand.Float64() * float64(e.RetryPeriod) / 2)
			}
			continue
		case <-t.C:
		}
		if !w.synced() || e.free(time.Now()) {
			return true
		}
	}
}

// free says whether the Lease as last seen may be taken at now: no holder,
// this agent, or no renewal seen for its duration.
func (e *Elector) free(now time.Time) bool {
	holder := ptr.Deref(e.observed.HolderIdentity, "")
	return holder == "" || holder == e.Identity || !now.Before(e.expiry())
}

// expiry is when the Lease as last seen expires on this agent's clock.
func (e *Elector) expiry() time.Time {
	return e.observedTime.Add(time.Duration(ptr.Deref(e.observed.LeaseDurationSeconds, 0)) * time.Second)
}

// renew renews the Lease every RenewPeriod, and every RetryPeriod after a
// renewal that failed; it returns when ctx ends or when no renewal
// succeeded for RenewDeadline.
func (e *Elector) renew(ctx context.Context) {
	last, wait := time.Now(), e.RenewPeriod
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, e.RenewDeadline-time.Since(last))
		ok := e.tryAcquireOrRenew(rctx)
		cancel()
		switch {
		case ok:
			last, wait = time.Now(), e.RenewPeriod
		case ctx.Err() != nil:
			return
		case time.Since(last) >= e.RenewDeadline:
			e.Log.Warn("could not renew the Lease in time", "lease", e.Namespace+"/"+e.Name, "deadline", e.RenewDeadline)
			return
		default:
			wait = e.RetryPeriod
		}
	}
}

// tryAcquireOrRenew takes or renews the Lease if it is free, expired or
// this agent's; false when another agent holds it or the API server said no.
func (e *Elector) tryAcquireOrRenew(ctx context.Context) bool {
	now := time.Now()
	if e.held != nil {
		lease := e.held.DeepCopy()
		e.held = nil
		e.hold(&lease.Spec, now)
		err := e.API.Update(ctx, leasesResource, e.Namespace, lease, lease)
		if err == nil {
			e.wrote(lease, now)
			return true
		}
		if !apierrors.IsConflict(err) {
			e.Log.Debug("renewing the Lease", "lease", e.Namespace+"/"+e.Name, "err", err)
			return false
		}
		// Changed since this agent wrote it: read it, and judge again.
	}
	var lease coordinationv1.Lease
	err := e.API.Get(ctx, leasesResource, e.Namespace, e.Name, &lease)
	if apierrors.IsNotFound(err) {
		lease = coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Name}}
		e.hold(&lease.Spec, now)
		if err := e.API.Create(ctx, leasesResource, e.Namespace, &lease, &lease); err != nil {
			e.Log.Debug("creating the Lease", "lease", e.Namespace+"/"+e.Name, "err", err)
			return false
		}
		e.wrote(&lease, now)
		return true
	}
	if err != nil {
		e.Log.Debug("reading the Lease", "lease", e.Namespace+"/"+e.Name, "err", err)
		return false
	}
	holder := ptr.Deref(lease.Spec.HolderIdentity, "")
	e.observe(lease.Spec, now)
	held := time.Duration(ptr.Deref(lease.Spec.LeaseDurationSeconds, 0)) * time.Second
	if holder != "" && holder != e.Identity && now.Before(e.observedTime.Add(held)) {
		return false // held by another agent, and renewed
	}
	e.hold(&lease.Spec, now)
	if err := e.API.Update(ctx, leasesResource, e.Namespace, &lease, &lease); err != nil {
		e.Log.Debug("updating the Lease", "lease", e.Namespace+"/"+e.Name, "err", err)
		return false
	}
	e.wrote(&lease, now)
	return true
}

// wrote notes the Lease as this agent wrote it at now, holding it.
func (e *Elector) wrote(lease *coordinationv1.Lease, now time.Time) {
	e.observe(lease.Spec, now)
	e.held = lease
}

// hold writes this agent into spec as holder, renewed at now.
func (e *Elector) hold(spec *coordinationv1.LeaseSpec, now time.Time) {
	t := metav1.NewMicroTime(now)
	if ptr.Deref(spec.HolderIdentity, "") != e.Identity {
		spec.AcquireTime = &t
		if spec.RenewTime != nil { // the Lease changes hands
			spec.LeaseTransitions = ptr.To(ptr.Deref(spec.LeaseTransitions, 0) + 1)
		}
	}
	spec.HolderIdentity = ptr.To(e.Identity)
	spec.LeaseDurationSeconds = ptr.To(int32(e.LeaseDuration / time.Second))
	spec.RenewTime = &t
}

// observe notes spec, and when it changed, the time it was seen to.
func (e *Elector) observe(spec coordinationv1.LeaseSpec, now time.Time) {
	if ptr.Deref(spec.HolderIdentity, "") != ptr.Deref(e.observed.HolderIdentity, "") ||
		!spec.RenewTime.Equal(e.observed.RenewTime) || e.observedTime.IsZero() {
		e.observed, e.observedTime = spec, now
	}
}

// release gives the Lease up (a one-second lease held by no one), so
// another agent takes it at its next try.
func (e *Elector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), e.RenewDeadline)
	defer cancel()
	var lease coordinationv1.Lease
	if err := e.API.Get(ctx, leasesResource, e.Namespace, e.Name, &lease); err != nil ||
		ptr.Deref(lease.Spec.HolderIdentity, "") != e.Identity {
		return
	}
	now := metav1.NewMicroTime(time.Now())
	lease.Spec.HolderIdentity = ptr.To("")
	lease.Spec.LeaseDurationSeconds = ptr.To(int32(1))
	lease.Spec.RenewTime = &now
	if err := e.API.Update(ctx, leasesResource, e.Namespace, &lease, &lease); err != nil {
		e.Log.Info("releasing the Lease", "lease", e.Namespace+"/"+e.Name, "err", err)
	}
}
