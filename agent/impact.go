package agent

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Impacts correlates the API server's reports of failed webhook calls with
// what they break: a controller that cannot create its pods, and a node that
// stays NotReady because its CNI DaemonSet pod cannot be created (the seed's
// aws-node case). It is cluster-wide work: the leader runs it.
type Impacts struct {
	agent  *Agent
	client kubernetes.Interface

	mu         sync.Mutex
	blocked    map[string]blockedController // by object, "DaemonSet kube-system/aws-node"
	deleting   map[string]SignalFailure     // by webhook name: its DELETE calls fail closed (last signal)
	lastSignal map[string]time.Time         // by webhook name
	slowOnly   map[string]bool              // by webhook name: its signals since it went quiet were SlowResponse only
	nodes      cache.Store
	poke       chan struct{} // evaluate now: a signal or a node changed
}

// blockedController is a controller the API server refused pods for.
type blockedController struct {
	object  string
	webhook string
	ref     WebhookRef // as resolved when first reported: keys stay stable if the webhook goes
	failure SignalFailure
	first   time.Time
	last    time.Time
}

// signalQuiet is how long after the last failing call a finding opened from
// the API server's signals alone stays open.
const signalQuiet = time.Minute

// impactWindow is how long a FailedCreate keeps a controller blocked
// without a new one (controllers retry with backoff up to minutes).
const impactWindow = 5 * time.Minute

// NewImpacts returns the correlation for an agent.
func NewImpacts(a *Agent, client kubernetes.Interface) *Impacts {
	return &Impacts{agent: a, client: client, blocked: map[string]blockedController{}, deleting: map[string]SignalFailure{}, lastSignal: map[string]time.Time{},
		slowOnly: map[string]bool{}, poke: make(chan struct{}, 1)}
}

// Run watches nodes and the API server's signals until ctx ends.
func (im *Impacts) Run(ctx context.Context, metricsInterval time.Duration) error {
	f := informers.NewSharedInformerFactoryWithOptions(im.client, 0, informers.WithTransform(slimNode))
	nodes := f.Core().V1().Nodes().Informer()
	_, _ = nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { im.wake() },
		UpdateFunc: func(any, any) { im.wake() },
	})
	im.mu.Lock()
	im.nodes = nodes.GetStore()
	im.mu.Unlock()
	f.Start(ctx.Done())
	defer f.Shutdown()
	signals := NewAPISignals(im.client, metricsInterval, im.onSignal, im.agent.log)
	signals.SetSlowThreshold(im.agent.slowThreshold)
	go signals.Run(ctx)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-im.poke:
		}
		im.evaluate(ctx)
	}
}

func (im *Impacts) wake() {
	select {
	case im.poke <- struct{}{}:
	default:
	}
}

// slimNode keeps what readiness needs: name, labels and conditions.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, ResourceVersion: n.ResourceVersion, CreationTimestamp: n.CreationTimestamp},
		Status:     corev1.NodeStatus{Conditions: n.Status.Conditions},
	}, nil
}

func (im *Impacts) onSignal(sf SignalFailure) {
	ref := im.agent.refByName(sf.Webhook)
	if sf.Class == "" {
		// The counters say that calls fail, not why: the webhook's open
		// finding does (the object checks, the probe).
		sf.Class = im.agent.openClass(ref)
	}
	im.mu.Lock()
	if sf.Class == Healthy {
		// A slow webhook is fast again: its finding resolves now, unless
		// its calls also failed.
		if im.slowOnly[sf.Webhook] {
			delete(im.lastSignal, sf.Webhook)
			delete(im.slowOnly, sf.Webhook)
		}
		im.mu.Unlock()
		im.wake()
		return
	}
	_, active := im.lastSignal[sf.Webhook]
	im.slowOnly[sf.Webhook] = sf.Class == SlowResponse && (!active || im.slowOnly[sf.Webhook])
	im.lastSignal[sf.Webhook] = time.Now()
	im.mu.Unlock()
	if sf.Deletes {
		im.mu.Lock()
		im.deleting[sf.Webhook] = sf
		im.mu.Unlock()
		im.wake()
	}
	switch sf.Source {
	case "metrics":
		detail := fmt.Sprintf("API server metrics: %d more calls to %s failed", sf.Count, sf.Webhook)
		if sf.Class == SlowResponse {
			detail = fmt.Sprintf("API server metrics: %d calls to %s took %s on average", sf.Count, sf.Webhook, sf.Latency.Round(time.Millisecond))
		} else if sf.FailOpen {
			detail = fmt.Sprintf("API server metrics: %d more calls to %s failed open", sf.Count, sf.Webhook)
		}
		im.agent.signalEvidence(ref, sf, detail)
		return
	case "event":
		im.agent.signalEvidence(ref, sf, fmt.Sprintf("Event %s on %s: %s", sf.Reason, sf.Object, sf.Detail))
	}
	if sf.Reason != "FailedCreate" || sf.Object == "" {
		return
	}
	im.mu.Lock()
	b, ok := im.blocked[sf.Object]
	if !ok || b.webhook != sf.Webhook {
		b = blockedController{object: sf.Object, webhook: sf.Webhook, ref: ref, first: sf.At}
	}
	b.failure, b.last = sf, sf.At
	im.blocked[sf.Object] = b
	im.mu.Unlock()
	im.agent.openImpact(ref, sf, Impact{Kind: ImpactControllerBlocked, Object: sf.Object, Since: b.first,
		Detail: fmt.Sprintf("%s cannot create pods: %s", sf.Object, sf.Detail)})
	im.wake()
}

// evaluate links NotReady nodes to blocked DaemonSets, and resolves what
// is over.
func (im *Impacts) evaluate(ctx context.Context) {
	now := time.Now()
	im.mu.Lock()
	var active []blockedController
	for k, b := range im.blocked {
		if now.Sub(b.last) > impactWindow {
			delete(im.blocked, k)
			continue
		}
		active = append(active, b)
	}
	var notReady []*corev1.Node
	if im.nodes != nil {
		for _, o := range im.nodes.List() {
			n := o.(*corev1.Node)
			if !nodeReady(n) {
				notReady = append(notReady, n)
			}
		}
	}
	open := map[string]bool{} // impact keys that still hold
	for name, at := range im.lastSignal {
		if now.Sub(at) > signalQuiet {
			delete(im.lastSignal, name)
			delete(im.slowOnly, name)
			continue
		}
		open[signalKey(im.agent.refByName(name))] = true
	}
	im.mu.Unlock()

	for _, b := range active {
		ref := b.ref
		kind, ns, name, ok := parseObject(b.object)
		var (
			sat bool
			ds  *appsv1.DaemonSet // read once per evaluation, for the node check too
		)
		if ok {
			sat, ds = im.satisfied(ctx, kind, ns, name)
		}
		im.agent.log.Debug("blocked controller", "object", b.object, "webhook", b.webhook, "satisfied", sat)
		if sat {
			// The controller has its pods again: the loop is over.
			im.mu.Lock()
			delete(im.blocked, b.object)
			im.mu.Unlock()
			continue
		}
		open[impactKey(ref, Impact{Kind: ImpactControllerBlocked, Object: b.object})] = true
		if ds == nil {
			continue
		}
		for _, n := range notReady {
			has, err := im.daemonSetPodOn(ctx, ds, n.Name)
			if err != nil || has {
				continue
			}
			imp := Impact{Kind: ImpactNodeNotReady, Node: n.Name, Object: b.object, Since: notReadySince(n),
				Detail: fmt.Sprintf("node %s is NotReady (%s) and %s cannot create its pod there: webhook %s fails closed: %s",
					n.Name, readyReason(n), b.object, b.webhook, b.failure.Detail)}
			open[impactKey(ref, imp)] = true
			im.agent.openImpact(ref, b.failure, imp)
		}
	}
	im.mu.Lock()
	deleting := map[string]SignalFailure{}
	for name, sf := range im.deleting {
		if now.Sub(sf.At) > impactWindow {
			delete(im.deleting, name)
			continue
		}
		deleting[name] = sf
	}
	im.mu.Unlock()
	for name, sf := range deleting {
		ref := im.agent.refByName(name)
		for _, imp := range im.stuckDeletions(ctx, ref, sf) {
			open[impactKey(ref, imp)] = true
			ev := sf
			ev.Reason, ev.Object = "DELETE rejected", imp.Object
			im.agent.openImpact(ref, ev, imp)
		}
	}
	im.agent.resolveImpacts(open)
}

// maxDependentsScan bounds the ReplicaSets read when looking for a
// Deployment whose deletion does not complete; the scan runs only while a
// webhook rejects DELETEs.
const maxDependentsScan = 500

// stuckDeletions finds Deployments that are gone (or being deleted) while
// their ReplicaSets remain, in the namespaces the webhook matches: the
// garbage collector cannot delete them because the webhook, failing
// closed, rejects its DELETEs. One impact per Deployment.
func (im *Impacts) stuckDeletions(ctx context.Context, ref WebhookRef, sf SignalFailure) []Impact {
	rss, err := im.client.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{Limit: maxDependentsScan})
	if err != nil {
		im.agent.log.Debug("listing ReplicaSets for stuck deletions", "err", err)
		return nil
	}
	type stuck struct {
		rs    []string
		pods  int
		since time.Time
	}
	byOwner := map[string]*stuck{}
	var order []string
	for i := range rss.Items {
		rs := &rss.Items[i]
		owner := metav1.GetControllerOf(rs)
		if owner == nil || owner.Kind != "Deployment" {
			continue
		}
		d, err := im.client.AppsV1().Deployments(rs.Namespace).Get(ctx, owner.Name, metav1.GetOptions{})
		var since time.Time
		switch {
		case apierrors.IsNotFound(err) || (err == nil && d.UID != owner.UID):
			since = sf.At // gone: the API says no more of when
		case err == nil && d.DeletionTimestamp != nil:
			since = d.DeletionTimestamp.Time
		default:
			continue // alive, or unknown
		}
		obj := "Deployment " + rs.Namespace + "/" + owner.Name
		st := byOwner[obj]
		if st == nil {
			st = &stuck{since: since}
			byOwner[obj] = st
			order = append(order, obj)
		}
		st.rs = append(st.rs, rs.Name)
		if sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector); err == nil && !sel.Empty() {
			if pods, err := im.client.CoreV1().Pods(rs.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String(), Limit: maxDependentsScan}); err == nil {
				st.pods += len(pods.Items)
			}
		}
	}
	var out []Impact
	for _, obj := range order {
		st := byOwner[obj]
		out = append(out, Impact{Kind: ImpactDeletionBlocked, Object: obj, Since: st.since,
			Detail: fmt.Sprintf("%s was deleted, but its ReplicaSets %s and %d pods remain: the garbage collector's deletes are rejected, webhook %s fails closed: %s",
				obj, strings.Join(st.rs, ", "), st.pods, ref.Name, sf.Detail)})
	}
	return out
}

// satisfied reports whether a controller that could not create pods has
// all it wants now (or is gone). Unknown kinds are never satisfied: their
// impact ends when the Events stop. A DaemonSet that still lacks pods is
// returned for the node check.
func (im *Impacts) satisfied(ctx context.Context, kind, ns, name string) (bool, *appsv1.DaemonSet) {
	switch kind {
	case "Job":
		j, err := im.client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return err == nil && j.Status.Active+j.Status.Succeeded+j.Status.Failed > 0, nil
	case "ReplicaSet":
		rs, err := im.client.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return err == nil && rs.Spec.Replicas != nil && rs.Status.Replicas >= *rs.Spec.Replicas, nil
	case "DaemonSet":
		ds, err := im.client.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, nil
		}
		if ds.Status.CurrentNumberScheduled >= ds.Status.DesiredNumberScheduled && ds.Status.DesiredNumberScheduled > 0 {
			return true, nil
		}
		return false, ds
	}
	return false, nil
}

// daemonSetPodOn reports whether the DaemonSet has a pod on the node.
func (im *Impacts) daemonSetPodOn(ctx context.Context, ds *appsv1.DaemonSet, node string) (bool, error) {
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return false, err
	}
	pods, err := im.client.CoreV1().Pods(ds.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: sel.String(),
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
	})
	if err != nil {
		return false, err
	}
	return len(pods.Items) > 0, nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false // a new node with no conditions yet is not Ready
}

func notReadySince(n *corev1.Node) time.Time {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && !c.LastTransitionTime.IsZero() {
			return c.LastTransitionTime.Time
		}
	}
	return n.CreationTimestamp.Time
}

func readyReason(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Reason != "" {
				return c.Reason
			}
			return "Ready=" + string(c.Status)
		}
	}
	return "no Ready condition yet"
}

// parseObject splits "Kind namespace/name".
func parseObject(o string) (kind, ns, name string, ok bool) {
	kind, rest, ok := strings.Cut(o, " ")
	if !ok {
		return "", "", "", false
	}
	ns, name, ok = strings.Cut(rest, "/")
	return kind, ns, name, ok
}

func impactKey(ref WebhookRef, imp Impact) string {
	return ref.String() + "|" + imp.Kind + "|" + imp.Object + "|" + imp.Node
}
