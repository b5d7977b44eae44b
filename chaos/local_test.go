//go:build linux

package chaos

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestLocal runs a real control plane with kwokctl and checks the two things
// the game days rest on: kwok runs pods on a fake node, and the API server
// calls admission webhooks (and fails closed when the webhook's Service does
// not exist). No pod network is made and nothing is sent to a pod IP.
func TestLocal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: Create installs an `ip route` guard")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	workDir := t.TempDir()
	l := NewLocal("hookscope-test", workDir)
	if l.Name() != "local" {
		t.Errorf("Name() = %q, want local", l.Name())
	}
	t.Cleanup(func() {
		if t.Failed() {
			// t.TempDir is gone after the test; keep the logs where a
			// reader can find them.
			dir, err := os.MkdirTemp("", "hookscope-chaos-logs-")
			if err == nil {
				err = l.CollectLogs(dir)
			}
			t.Logf("cluster logs in %s (err: %v)", dir, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.Delete(ctx); err != nil {
			t.Errorf("Delete: %v", err)
		}
		if _, err := os.Stat(l.clusterDir()); !os.IsNotExist(err) {
			t.Errorf("cluster directory %s left after Delete (stat: %v)", l.clusterDir(), err)
		}
		if err := l.Delete(ctx); err != nil {
			t.Errorf("second Delete: %v", err)
		}
	})

	start := time.Now()
	if err := l.Create(ctx); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Logf("cluster %s created and ready in %v", l.name, time.Since(start).Round(time.Millisecond))

	client, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	if err := l.AddNode(ctx, "node-0"); err != nil {
		t.Fatalf("AddNode: %v", err)
	}
	t.Logf("node-0 Ready in %v", time.Since(start).Round(time.Millisecond))

	t.Run("pod runs on kwok node", func(t *testing.T) {
		start := time.Now()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "pod-0", Namespace: metav1.NamespaceDefault},
			Spec: corev1.PodSpec{
				NodeName:    "node-0",
				Containers:  []corev1.Container{{Name: "app", Image: "fake"}},
				Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			},
		}
		if _, err := client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating pod: %v", err)
		}
		var got *corev1.Pod
		err := wait.PollUntilContextTimeout(ctx, pollInterval, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err = client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			return got.Status.Phase == corev1.PodRunning && got.Status.PodIP != "", nil
		})
		if err != nil {
			t.Fatalf("waiting for pod Running with an IP: %v (last status: %+v)", err, got.Status)
		}
		ip, err := netip.ParseAddr(got.Status.PodIP)
		if err != nil {
			t.Fatalf("pod IP %q: %v", got.Status.PodIP, err)
		}
		if guard := netip.MustParsePrefix("10.0.0.0/16"); !guard.Contains(ip) {
			t.Errorf("pod IP %s outside the guarded %s", ip, guard)
		}
		t.Logf("pod Running with IP %s in %v", ip, time.Since(start).Round(time.Millisecond))
	})

	t.Run("API server fails closed on missing webhook service", func(t *testing.T) {
		const (
			label   = "hookscope.test/webhook"
			value   = "fail-closed"
			ns      = "webhook-target"
			hook    = "fail-closed.hookscope.test"
			wantErr = `service "missing-svc" not found`
		)
		selector := &metav1.LabelSelector{MatchLabels: map[string]string{label: value}}
		_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: selector.MatchLabels},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating namespace: %v", err)
		}
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "hookscope-fail-closed"},
			Webhooks: []admissionregistrationv1.ValidatingWebhook{{
				Name: hook,
				ClientConfig: admissionregistrationv1.WebhookClientConfig{
					Service: &admissionregistrationv1.ServiceReference{
						Namespace: metav1.NamespaceDefault,
						Name:      "missing-svc",
						Path:      ptrTo("/validate"),
						Port:      ptrTo[int32](443),
					},
				},
				Rules: []admissionregistrationv1.RuleWithOperations{{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule: admissionregistrationv1.Rule{
						APIGroups:   []string{""},
						APIVersions: []string{"v1"},
						Resources:   []string{"configmaps"},
					},
				}},
				FailurePolicy:           ptrTo(admissionregistrationv1.Fail),
				SideEffects:             ptrTo(admissionregistrationv1.SideEffectClassNone),
				AdmissionReviewVersions: []string{"v1"},
				TimeoutSeconds:          ptrTo[int32](5),
				NamespaceSelector:       selector,
				ObjectSelector:          selector,
			}},
		}
		if _, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating ValidatingWebhookConfiguration: %v", err)
		}

		// The API server learns of the configuration through an informer,
		// so the first ConfigMaps may still be admitted without a call.
		start := time.Now()
		var admitted int
		var callErr error
		err = wait.PollUntilContextTimeout(ctx, pollInterval, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
				GenerateName: "matched-", Namespace: ns, Labels: selector.MatchLabels,
			}}
			created, err := client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
			if err == nil {
				admitted++
				_ = client.CoreV1().ConfigMaps(ns).Delete(ctx, created.Name, metav1.DeleteOptions{})
				return false, nil
			}
			callErr = err
			return true, nil
		})
		if err != nil {
			t.Fatalf("matched ConfigMap still admitted after 30 s (%d admitted): %v", admitted, err)
		}
		if !strings.Contains(callErr.Error(), wantErr) {
			t.Fatalf("creating matched ConfigMap: got error %q, want one containing %q", callErr, wantErr)
		}
		t.Logf("webhook active after %v (%d admitted before); client got: %v",
			time.Since(start).Round(time.Millisecond), admitted, callErr)

		// The apiserver writes the line before answering; poll in case
		// klog has not flushed it yet.
		var line string
		err = wait.PollUntilContextTimeout(ctx, pollInterval, 15*time.Second, true, func(context.Context) (bool, error) {
			raw, err := os.ReadFile(l.APIServerLog())
			if err != nil {
				return false, nil
			}
			for _, ln := range strings.Split(string(raw), "\n") {
				if strings.Contains(ln, "failing closed") && strings.Contains(ln, hook) {
					line = ln
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("no \"failing closed\" line for %s in %s: %v", hook, l.APIServerLog(), err)
		}
		t.Logf("apiserver log: %s", line)
	})
}

// ptrTo returns a pointer to v, for the API's optional fields.
func ptrTo[T any](v T) *T { return &v }
