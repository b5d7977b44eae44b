//go:build linux

// Linux only because it runs chaos.Local, which is.

package apisignals

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/chaos"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube"
)

// What TestWatcherAgainstAPIServer creates: a namespace, a validating
// webhook on ConfigMap and Pod creates there whose Service does not exist,
// and a DaemonSet whose pods it matches.
const (
	liveNS      = "sig-apps"
	liveHook    = "vsig.apisignals.hookscope.dev"
	liveSvc     = "sig-missing"
	liveDS      = "sig-agent"
	liveMatchL  = "hookscope.dev/apisignals"
	liveMatchV  = "match"
	liveNSLabel = "hookscope.dev/apisignals-ns"
)

// TestWatcherAgainstAPIServer runs the signals against a real
// kube-apiserver (chaos.Local): a validating webhook whose Service does not
// exist makes a ConfigMap write fail (seen on /metrics) and the DaemonSet
// controller's pod creates fail (seen as FailedCreate Events). The API server
// dials nothing: the Service is missing.
func TestWatcherAgainstAPIServer(t *testing.T) {
	start := time.Now()
	ctx, cluster, _ := chaos.LocalForTest(t, "sigs", 3*time.Minute)
	if err := cluster.AddNode(ctx, "sig-node-0"); err != nil {
		t.Fatal(err)
	}
	client := apiOf(t, cluster)
	t.Logf("cluster and node ready in %s", time.Since(start).Round(time.Millisecond))

	createMissingServiceWebhook(ctx, t, client)
	rec := newRecorder()
	startWatcher(ctx, t, client, rec)
	writeFailed := writeUntilRejected(ctx, t, client)
	dsCreated := time.Now()
	createMatchedDaemonSet(ctx, t, client)

	metricsF, metricsAt, eventF, eventAt := awaitSignals(t, rec, writeFailed)
	if metricsF.Count < 1 || metricsF.FailOpen || metricsF.Class != "" || metricsF.Object != "" {
		t.Errorf("metrics report %+v", metricsF)
	}
	if eventF.Class != findings.ServiceNotFound || eventF.Object != "DaemonSet "+liveNS+"/"+liveDS || eventF.Reason != "FailedCreate" ||
		eventF.Count < 1 || eventF.FailOpen || !strings.Contains(eventF.Detail, `service "`+liveSvc+`" not found`) {
		t.Errorf("event report %+v", eventF)
	}
	t.Logf("metrics signal %s after the failed ConfigMap write; FailedCreate event signal %s after the DaemonSet was created (event at %s, %s before it was reported)",
		metricsAt.Sub(writeFailed).Round(time.Millisecond), eventAt.Sub(dsCreated).Round(time.Millisecond),
		eventF.At.Format(time.RFC3339), eventAt.Sub(eventF.At).Round(time.Millisecond))
}

// apiOf is the agent's API on the local cluster, as its clientset is
// (100 QPS, bursts of 200).
func apiOf(t *testing.T, cluster *chaos.Local) kube.API {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	api, err := kube.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// createMissingServiceWebhook creates liveNS and a fail-closed validating
// webhook, liveHook, that calls the missing Service liveSvc.
func createMissingServiceWebhook(ctx context.Context, t *testing.T, client kube.API) {
	t.Helper()
	err := client.Create(ctx, corev1.SchemeGroupVersion.WithResource("namespaces"), "", &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: liveNS, Labels: map[string]string{liveNSLabel: "on"}},
	}, &corev1.Namespace{})
	if err != nil {
		t.Fatal(err)
	}
	err = client.Create(ctx, admissionv1.SchemeGroupVersion.WithResource("validatingwebhookconfigurations"), "", &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "sig-apisignals"},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name:                    liveHook,
			FailurePolicy:           ptr.To(admissionv1.Fail),
			SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](5),
			ClientConfig: admissionv1.WebhookClientConfig{
				Service: &admissionv1.ServiceReference{Namespace: liveNS, Name: liveSvc, Path: ptr.To("/validate"), Port: ptr.To[int32](443)},
			},
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"},
					Resources: []string{"configmaps", "pods"},
				},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{liveNSLabel: "on"}},
			ObjectSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{liveMatchL: liveMatchV}},
		}},
	}, &admissionv1.ValidatingWebhookConfiguration{})
	if err != nil {
		t.Fatal(err)
	}
}

// startWatcher runs a Watcher reporting to rec until the test ends, and
// returns once it has a metrics baseline and the Event cache has synced.
func startWatcher(ctx context.Context, t *testing.T, client kube.API, rec *recorder) {
	t.Helper()
	signals := NewWatcher(client, 500*time.Millisecond, rec.report, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- signals.Run(sctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for !signals.baselined() || !signals.synced.Load() {
		if ctx.Err() != nil {
			t.Fatal("no metrics baseline or Event sync")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeUntilRejected creates matched ConfigMaps until one is rejected, checks
// the client's error, and returns when it came. The API server loads
// webhook configurations from an informer: the first writes may pass.
func writeUntilRejected(ctx context.Context, t *testing.T, client kube.API) time.Time {
	t.Helper()
	for i := 0; ; i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sig-cm-%d", i), Labels: map[string]string{liveMatchL: liveMatchV}}}
		err := client.Create(ctx, corev1.SchemeGroupVersion.WithResource("configmaps"), liveNS, cm, &corev1.ConfigMap{})
		if err != nil {
			writeFailed := time.Now()
			wf, ok := ParseWebhookFailure(err.Error())
			if !ok || wf.Webhook != liveHook || wf.Class != findings.ServiceNotFound || wf.URL != "https://"+liveSvc+"."+liveNS+".svc:443/validate?timeout=5s" {
				t.Fatalf("write failed with %q, parsed as %+v, %v", err, wf, ok)
			}
			t.Logf("ConfigMap write %d failed: %v", i, err)
			return writeFailed
		}
		if ctx.Err() != nil || i > 200 {
			t.Fatal("the webhook was never called")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createMatchedDaemonSet creates a DaemonSet whose pods the webhook
// matches: the DaemonSet controller's creates fail, and it records
// FailedCreate Events.
func createMatchedDaemonSet(ctx context.Context, t *testing.T, client kube.API) {
	t.Helper()
	labels := map[string]string{"app": liveDS, liveMatchL: liveMatchV}
	err := client.Create(ctx, appsv1.SchemeGroupVersion.WithResource("daemonsets"), liveNS, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: liveDS},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": liveDS}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"type": "kwok"},
					Tolerations:  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers:   []corev1.Container{{Name: "agent", Image: "registry.invalid/agent:0"}},
				},
			},
		},
	}, &appsv1.DaemonSet{})
	if err != nil {
		t.Fatal(err)
	}
}

// awaitSignals waits up to 90 s for the first metrics and the first Event
// report about liveHook, and returns each with when it came.
func awaitSignals(t *testing.T, rec *recorder, writeFailed time.Time) (metricsF Failure, metricsAt time.Time, eventF Failure, eventAt time.Time) {
	t.Helper()
	deadline := time.After(90 * time.Second)
	for metricsAt.IsZero() || eventAt.IsZero() {
		select {
		case f := <-rec.ch:
			t.Logf("+%s after the failed write: %s %s %q class=%q count=%d failOpen=%v at=%s detail=%q",
				time.Since(writeFailed).Round(time.Millisecond), f.Source, f.Webhook, f.Object, f.Class, f.Count, f.FailOpen, f.At.Format(time.RFC3339Nano), f.Detail)
			switch {
			case f.Source == FromMetrics && f.Webhook == liveHook && metricsAt.IsZero():
				metricsAt, metricsF = time.Now(), f
			case f.Source == FromEvent && f.Webhook == liveHook && eventAt.IsZero():
				eventAt, eventF = time.Now(), f
			}
		case <-deadline:
			t.Fatalf("signals missing after 90 s: metrics=%v event=%v; got %+v", !metricsAt.IsZero(), !eventAt.IsZero(), rec.all())
		}
	}
	return metricsF, metricsAt, eventF, eventAt
}

// testWriter sends the signals' log to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
