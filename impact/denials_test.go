package impact

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hookscope/hookscope/findings"
)

// policyMessage is the game day's policy message, as apisignals folds it.
const policyMessage = "resource Pod/kube-system/ was blocked due to the following policies disallow-host-namespaces: host-namespaces: 'validation error: Sharing the host namespaces is disallowed.'"

func denied(object string, at time.Time) Denial {
	return Denial{Webhook: "validate.kyverno.svc-fail", Message: policyMessage, At: at, Object: object, Reason: "FailedCreate", Count: 1}
}

// TestDenialOfAWSNode: a policy webhook that denies aws-node's pod has the
// outcome of a webhook that cannot be called: the DaemonSet is blocked and
// the joining node stays NotReady. Both are DeniesCriticalPods findings
// that quote the policy and never say the webhook fails; they resolve once
// the DaemonSet has its pods. No finding says the calls fail.
func TestDenialOfAWSNode(t *testing.T) {
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "aws-node", UID: "ds-1"},
		Spec:   appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "aws-node"}}},
		Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, CurrentNumberScheduled: 0}}
	joining := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse,
		Reason: "NetworkPluginNotReady", LastTransitionTime: metav1.NewTime(time.Date(2026, 12, 5, 9, 59, 0, 0, time.UTC))}}}}
	f := newFixture(t, ds, joining)

	f.corr.OnDenial(denied("DaemonSet kube-system/aws-node", f.clock.Now()))
	open := f.until("the node's impact", func(open []findings.Finding) bool { return len(impactsOf(open, findings.ImpactNodeNotReady)) == 1 })
	if len(open) != 2 {
		t.Errorf("open %+v, want the blocked DaemonSet and the node only", open)
	}
	for _, fd := range open {
		d := fd.Impact.Detail
		if fd.Class != findings.DeniesCriticalPods || fd.Effect != findings.WritesRejected || fd.Webhook.Name != "validate.kyverno.svc-fail" ||
			!strings.Contains(d, "webhook validate.kyverno.svc-fail denies them: "+policyMessage) || strings.Contains(d, "fails closed") ||
			strings.Contains(fd.Remediation, "remediate ignore") {
			t.Errorf("finding %s %s (%s): %q; fix %q", fd.Class, fd.Impact.Kind, fd.Effect, d, fd.Remediation)
		}
	}
	node := impactsOf(open, findings.ImpactNodeNotReady)[0]
	if node.Impact.Node != "node-2" || !strings.HasPrefix(node.Impact.Detail, "node node-2 is NotReady (NetworkPluginNotReady) and DaemonSet kube-system/aws-node cannot create its pod there: webhook validate.kyverno.svc-fail denies them") {
		t.Errorf("node impact %+v", node.Impact)
	}

	// The policy exempts kube-system: aws-node gets its pod.
	ds.Status.CurrentNumberScheduled = 1
	if _, err := f.api.Clientset.AppsV1().DaemonSets("kube-system").UpdateStatus(f.ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.until("the impacts resolve", func(open []findings.Finding) bool { return len(open) == 0 })
}

// TestDenialsOfOtherPods: a denial is the webhook working: of an ordinary
// workload's pods, or not a controller's FailedCreate, it opens nothing;
// CoreDNS's ReplicaSet and kube-proxy are critical.
func TestDenialsOfOtherPods(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	f.corr.OnDenial(denied("ReplicaSet web/web-7d9", now))
	f.corr.OnDenial(denied("DaemonSet monitoring/node-exporter", now))
	f.corr.OnDenial(denied("Deployment kube-system/metrics-server", now))
	other := denied("DaemonSet kube-system/kube-proxy", now)
	other.Reason = "FailedDaemonPod"
	f.corr.OnDenial(other)
	f.corr.Evaluate()
	if open, _ := f.store.Findings(); len(open) != 0 {
		t.Fatalf("denials of other pods opened %+v", open)
	}
	f.corr.OnDenial(denied("ReplicaSet kube-system/coredns-7d4964bdc5", now))
	f.corr.OnDenial(denied("DaemonSet kube-system/kube-proxy", now))
	open := f.until("CoreDNS and kube-proxy blocked", func(open []findings.Finding) bool {
		return len(impactsOf(open, findings.ImpactControllerBlocked)) == 2
	})
	for _, fd := range open {
		if fd.Class != findings.DeniesCriticalPods {
			t.Errorf("%s: class %s", fd.Impact.Object, fd.Class)
		}
	}
}

func TestCritical(t *testing.T) {
	for object, want := range map[string]bool{
		"DaemonSet kube-system/aws-node":          true,
		"DaemonSet kube-system/ebs-csi-node":      true,
		"ReplicaSet kube-system/coredns-7d4964bd": true,
		"Deployment kube-system/coredns":          true,
		"ReplicaSet kube-system/metrics-7d4964bd": false,
		"DaemonSet default/aws-node":              false,
		"Job kube-system/x":                       false,
		"DaemonSet aws-node":                      false,
	} {
		if got := critical(object); got != want {
			t.Errorf("critical(%q) = %v, want %v", object, got, want)
		}
	}
}
