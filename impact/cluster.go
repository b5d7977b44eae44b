package impact

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube"
)

// cluster is the correlation's read of the cluster: informers, each
// started the first time a failure needs it (nodes at once; namespaces
// once an aggregated API is known; controllers
// when one is blocked; ReplicaSets and Deployments when a webhook rejects
// DELETEs), slimmed to what is read. An idle cluster costs the Nodes
// (and, with an aggregated API, the Namespaces) only.
type cluster struct {
	api  kube.API
	wake func()

	mu      sync.Mutex
	ctx     context.Context
	kinds   map[string]cache.SharedIndexInformer // by kind, once started
	podsFor map[string]cache.SharedIndexInformer // a blocked DaemonSet's pods, by "ns/name"
	stops   map[string]context.CancelFunc
}

func newCluster(api kube.API, wake func()) *cluster {
	return &cluster{api: api, wake: wake, kinds: map[string]cache.SharedIndexInformer{},
		podsFor: map[string]cache.SharedIndexInformer{}, stops: map[string]context.CancelFunc{}}
}

// start watches Nodes until ctx ends; the other informers start when
// first needed and end with ctx too.
func (c *cluster) start(ctx context.Context) {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
	c.informer("Node")
}

// informer returns the informer of kind, starting it the first time. It
// is nil before start.
func (c *cluster) informer(kind string) cache.SharedIndexInformer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.kinds[kind]; ok || c.ctx == nil {
		return i
	}
	var i cache.SharedIndexInformer
	switch kind {
	case "Node":
		i = newInformer(c.api, corev1.SchemeGroupVersion.WithResource("nodes"), "", nil, &corev1.Node{}, slim)
	case "DaemonSet":
		i = newInformer(c.api, appsv1.SchemeGroupVersion.WithResource("daemonsets"), "", nil, &appsv1.DaemonSet{}, slim)
	case "ReplicaSet":
		i = newInformer(c.api, appsv1.SchemeGroupVersion.WithResource("replicasets"), "", nil, &appsv1.ReplicaSet{}, slim)
	case "Deployment":
		i = newInformer(c.api, appsv1.SchemeGroupVersion.WithResource("deployments"), "", nil, &appsv1.Deployment{}, slim)
	case "Job":
		i = newInformer(c.api, batchv1.SchemeGroupVersion.WithResource("jobs"), "", nil, &batchv1.Job{}, slim)
	case "Namespace":
		i = newInformer(c.api, corev1.SchemeGroupVersion.WithResource("namespaces"), "", nil, &corev1.Namespace{}, slim)
	case "HorizontalPodAutoscaler":
		i = newInformer(c.api, autoscalingv2.SchemeGroupVersion.WithResource("horizontalpodautoscalers"), "", nil,
			&autoscalingv2.HorizontalPodAutoscaler{}, slim)
	default:
		return nil
	}
	_, _ = i.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(any) { c.wake() }, UpdateFunc: func(old, obj any) {
		// A node's status updates (every few minutes from each kubelet)
		// change nothing here unless they change whether it is Ready.
		if o, ok := old.(*corev1.Node); ok && nodeReady(o) == nodeReady(obj.(*corev1.Node)) {
			return
		}
		c.wake()
	}})
	go i.Run(c.ctx.Done())
	c.kinds[kind] = i
	return i
}

// newInformer is an informer of r in namespace ("" for all) that keeps
// what transform returns of each object of type example, indexed by
// namespace. It is not started.
func newInformer(api kube.API, r schema.GroupVersionResource, namespace string, tweak func(*metav1.ListOptions),
	example runtime.Object, transform cache.TransformFunc) cache.SharedIndexInformer {
	i := kube.NewInformer(api, r, namespace, tweak, example, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	_ = i.SetTransform(transform) // fails only once started
	return i
}

// get returns the object kind ns/name from its informer: ok is false while
// the informer has not listed (nothing is known yet).
func (c *cluster) get(kind, ns, name string) (obj any, exists, ok bool) {
	i := c.informer(kind)
	if i == nil || !i.HasSynced() {
		return nil, false, false
	}
	key := name
	if ns != "" {
		key = ns + "/" + name
	}
	obj, exists, err := i.GetStore().GetByKey(key)
	return obj, exists, err == nil
}

// notReadyNodes lists the nodes that are not Ready.
func (c *cluster) notReadyNodes() []*corev1.Node {
	i := c.informer("Node")
	if i == nil {
		return nil
	}
	var out []*corev1.Node
	for _, o := range i.GetStore().List() {
		if n := o.(*corev1.Node); !nodeReady(n) {
			out = append(out, n)
		}
	}
	return out
}

// satisfied reports whether a controller that could not create pods has
// all it wants now (or is gone). Unknown kinds, and kinds not listed yet,
// are not: their impact ends when the Events stop.
func (c *cluster) satisfied(kind, ns, name string) bool {
	obj, exists, ok := c.get(kind, ns, name)
	switch {
	case !ok:
		return false
	case !exists:
		return true
	}
	switch o := obj.(type) {
	case *batchv1.Job:
		return o.Status.Active+o.Status.Succeeded+o.Status.Failed > 0
	case *appsv1.ReplicaSet:
		return o.Spec.Replicas != nil && o.Status.Replicas >= *o.Spec.Replicas
	case *appsv1.DaemonSet:
		return o.Status.CurrentNumberScheduled >= o.Status.DesiredNumberScheduled && o.Status.DesiredNumberScheduled > 0
	}
	return false
}

// daemonSetPodOn reports whether the DaemonSet ns/name has a pod on node;
// known is false until its pods are listed.
func (c *cluster) daemonSetPodOn(ns, name, node string) (has, known bool) {
	obj, exists, ok := c.get("DaemonSet", ns, name)
	if !ok || !exists {
		return false, false
	}
	pods := c.podWatch(obj.(*appsv1.DaemonSet))
	if pods == nil || !pods.HasSynced() {
		return false, false
	}
	for _, o := range pods.GetStore().List() {
		if o.(*corev1.Pod).Spec.NodeName == node {
			return true, true
		}
	}
	return false, true
}

// podWatch watches the pods of a blocked DaemonSet (one per node at most).
func (c *cluster) podWatch(ds *appsv1.DaemonSet) cache.SharedIndexInformer {
	key := ds.Namespace + "/" + ds.Name
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.podsFor[key]; ok || c.ctx == nil {
		return i
	}
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() {
		return nil
	}
	selector := sel.String()
	i := newInformer(c.api, corev1.SchemeGroupVersion.WithResource("pods"), ds.Namespace,
		func(o *metav1.ListOptions) { o.LabelSelector = selector }, &corev1.Pod{}, slim)
	_, _ = i.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(any) { c.wake() }, DeleteFunc: func(any) { c.wake() }})
	ctx, cancel := context.WithCancel(c.ctx)
	go i.Run(ctx.Done())
	c.podsFor[key], c.stops[key] = i, cancel
	return i
}

// keepPodWatches stops the pod watches of DaemonSets no longer blocked.
func (c *cluster) keepPodWatches(active []blockedController) {
	keep := map[string]bool{}
	for _, b := range active {
		if kind, ns, name, ok := parseObject(b.object); ok && kind == "DaemonSet" {
			keep[ns+"/"+name] = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, stop := range c.stops {
		if !keep[key] {
			stop()
			delete(c.stops, key)
			delete(c.podsFor, key)
		}
	}
}

// stuckDeletions finds Deployments that are gone (or being deleted) while
// their ReplicaSets remain: the garbage collector cannot delete them
// because the webhook, failing closed, rejects its DELETEs. One impact per
// Deployment; the ReplicaSets' replica counts say how many pods remain.
func (c *cluster) stuckDeletions(webhook string, sf Signal) []findings.Impact {
	rsi, deps := c.informer("ReplicaSet"), c.informer("Deployment")
	if rsi == nil || deps == nil || !rsi.HasSynced() || !deps.HasSynced() {
		return nil
	}
	type stuck struct {
		rs    []string
		pods  int32
		since time.Time
	}
	byOwner := map[string]*stuck{}
	var order []string
	for _, o := range rsi.GetStore().List() {
		rs := o.(*appsv1.ReplicaSet)
		owner := metav1.GetControllerOf(rs)
		if owner == nil || owner.Kind != "Deployment" {
			continue
		}
		since, gone := deploymentGone(deps, rs.Namespace, owner, sf.At)
		if !gone {
			continue
		}
		obj := "Deployment " + rs.Namespace + "/" + owner.Name
		st := byOwner[obj]
		if st == nil {
			st = &stuck{since: since}
			byOwner[obj] = st
			order = append(order, obj)
		}
		st.rs = append(st.rs, rs.Name)
		st.pods += rs.Status.Replicas
	}
	var out []findings.Impact
	for _, obj := range order {
		st := byOwner[obj]
		out = append(out, findings.Impact{Kind: findings.ImpactDeletionBlocked, Object: obj, Since: st.since,
			Detail: fmt.Sprintf("%s was deleted, but its ReplicaSets %s and %d pods remain: the garbage collector's deletes are rejected, webhook %s fails closed: %s",
				obj, strings.Join(st.rs, ", "), st.pods, webhook, sf.Detail)})
	}
	return out
}

// deploymentGone reports whether the Deployment that owns a ReplicaSet is
// gone or being deleted, and since when (for one already gone, the API
// keeps no time: the signal's).
func deploymentGone(deps cache.SharedIndexInformer, ns string, owner *metav1.OwnerReference, signalAt time.Time) (time.Time, bool) {
	o, exists, err := deps.GetStore().GetByKey(ns + "/" + owner.Name)
	if err != nil {
		return time.Time{}, false
	}
	if !exists {
		return signalAt, true
	}
	d := o.(*appsv1.Deployment)
	switch {
	case d.UID != owner.UID:
		return signalAt, true
	case d.DeletionTimestamp != nil:
		return d.DeletionTimestamp.Time, true
	}
	return time.Time{}, false
}

// slim keeps what the correlation reads of each object.
func slim(obj any) (any, error) {
	meta := func(m metav1.ObjectMeta) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
			Labels: m.Labels, OwnerReferences: m.OwnerReferences, DeletionTimestamp: m.DeletionTimestamp, CreationTimestamp: m.CreationTimestamp}
	}
	switch o := obj.(type) {
	case *corev1.Node:
		// Whether it is Ready, since when and why, of every node: its
		// labels (twenty-odd on an EKS node), other conditions and their
		// messages are a few KiB per node that nothing reads.
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: o.Name, UID: o.UID, ResourceVersion: o.ResourceVersion,
			CreationTimestamp: o.CreationTimestamp, DeletionTimestamp: o.DeletionTimestamp}}
		for _, c := range o.Status.Conditions {
			if c.Type == corev1.NodeReady {
				n.Status.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status, Reason: c.Reason, LastTransitionTime: c.LastTransitionTime}}
			}
		}
		return n, nil
	case *corev1.Pod:
		return &corev1.Pod{ObjectMeta: meta(o.ObjectMeta), Spec: corev1.PodSpec{NodeName: o.Spec.NodeName}}, nil
	case *appsv1.DaemonSet:
		return &appsv1.DaemonSet{ObjectMeta: meta(o.ObjectMeta), Spec: appsv1.DaemonSetSpec{Selector: o.Spec.Selector}, Status: o.Status}, nil
	case *appsv1.ReplicaSet:
		return &appsv1.ReplicaSet{ObjectMeta: meta(o.ObjectMeta), Spec: appsv1.ReplicaSetSpec{Replicas: o.Spec.Replicas}, Status: appsv1.ReplicaSetStatus{Replicas: o.Status.Replicas}}, nil
	case *appsv1.Deployment:
		return &appsv1.Deployment{ObjectMeta: meta(o.ObjectMeta)}, nil
	case *autoscalingv2.HorizontalPodAutoscaler:
		return &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: meta(o.ObjectMeta),
			Spec:   autoscalingv2.HorizontalPodAutoscalerSpec{ScaleTargetRef: o.Spec.ScaleTargetRef},
			Status: autoscalingv2.HorizontalPodAutoscalerStatus{Conditions: o.Status.Conditions}}, nil
	case *batchv1.Job:
		return &batchv1.Job{ObjectMeta: meta(o.ObjectMeta), Status: batchv1.JobStatus{Active: o.Status.Active, Succeeded: o.Status.Succeeded, Failed: o.Status.Failed}}, nil
	}
	return obj, nil
}
