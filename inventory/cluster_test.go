//go:build linux

package inventory

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/internal/kube"

	"github.com/hookscope/hookscope/chaos"
	"github.com/hookscope/hookscope/findings"
)

// resolutions records every resolution the inventory hands to the agent.
type resolutions struct {
	mu  sync.Mutex
	all [][]callout.Webhook
}

func (r *resolutions) add(ws []callout.Webhook) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, ws)
}

func (r *resolutions) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.all)
}

func (r *resolutions) last() []callout.Webhook {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.all) == 0 {
		return nil
	}
	return r.all[len(r.all)-1]
}

// judged is what the object checks say of w ("" while they cannot tell).
func judged(w callout.Webhook) findings.Class {
	class, _ := Problem(w)
	return class
}

// find returns the webhook named name in ws.
func find(ws []callout.Webhook, name string) (callout.Webhook, bool) {
	for _, w := range ws {
		if w.Ref.Name == name {
			return w, true
		}
	}
	return callout.Webhook{}, false
}

// TestInventoryWatchesOnlyWebhookBackends runs the inventory against a real
// kube-apiserver: it caches the Services of the namespaces that hold a
// webhook's Service and the EndpointSlices of those Services only, starts
// and stops those watches as webhooks come and go without ever calling a
// Service "not found" because its watch was not synced yet, and is not
// woken by Services elsewhere in the cluster.
func TestInventoryWatchesOnlyWebhookBackends(t *testing.T) {
	ctx, cluster, client := chaos.LocalForTest(t, "inventory", 3*time.Minute)
	api := newAPI(t, configOf(t, cluster))
	for _, ns := range []string{"hooks-a", "hooks-b", "noise"} {
		mustNamespace(ctx, t, api, ns)
	}
	// Backends: a webhook Service in hooks-a and one in hooks-b, each with
	// one ready endpoint, and a Service in hooks-a no webhook calls.
	mustBackend(ctx, t, api, "hooks-a", "svc-a", "10.0.9.1")
	mustBackend(ctx, t, api, "hooks-a", "unrelated", "10.0.9.2")
	mustBackend(ctx, t, api, "hooks-b", "svc-b", "10.0.9.3")
	for i := range 20 {
		mustBackend(ctx, t, api, "noise", fmt.Sprintf("noise-%02d", i), fmt.Sprintf("10.0.8.%d", i+1))
	}
	mustWebhook(ctx, t, api, "cfg-a", "va.inventory.hookscope.dev", "hooks-a", "svc-a")
	// Default-deny NetworkPolicies, beside the webhook's Service and in a
	// namespace with none.
	for _, ns := range []string{"hooks-a", "noise"} {
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny-all", Namespace: ns},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
		if err := api.Create(ctx, policiesGVR, ns, np, &networkingv1.NetworkPolicy{}); err != nil {
			t.Fatal(err)
		}
	}

	inv := New(api, nil)
	rec := &resolutions{}
	done := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	go func() { done <- inv.Run(rctx, 30*time.Second, rec.add) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("inventory: %v", err)
		}
	})

	waitFor := func(what string, ok func([]callout.Webhook) bool) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
			return ok(rec.last()), nil
		})
		if err != nil {
			t.Fatalf("%s: last resolution %+v, stats %+v", what, rec.last(), inv.Stats())
		}
	}
	backendIs := func(name, addr string) func([]callout.Webhook) bool {
		return func(ws []callout.Webhook) bool {
			w, ok := find(ws, name)
			return ok && judged(w) == findings.Healthy && len(w.Backends) == 1 && w.Backends[0].Addr.String() == addr
		}
	}

	waitFor("webhook a resolves to its endpoint", backendIs("va.inventory.hookscope.dev", "10.0.9.1:8443"))
	if got, want := inv.Stats(), (Stats{WebhookConfigurations: 1, Services: 2, EndpointSlices: 1, Namespaces: 1, Watches: 4}); got != want {
		t.Errorf("stats with one webhook: %+v, want %+v (hooks-a's two Services, svc-a's slice; nothing of noise)", got, want)
	}
	// NetworkPolicies: read from the API server until watched, then from
	// one cluster-wide watch.
	if nps, err := inv.NetworkPoliciesIn(ctx, "hooks-a"); err != nil || len(nps) != 1 || nps[0].Name != "deny-all" {
		t.Errorf("hooks-a's NetworkPolicies, unwatched: %v, %v", nps, err)
	}
	inv.WatchNetworkPolicies(rctx)
	waitFor("the cluster's NetworkPolicies are watched", func([]callout.Webhook) bool { return len(inv.NetworkPolicies()) == 2 })
	if nps, err := inv.NetworkPoliciesIn(ctx, "noise"); err != nil || len(nps) != 1 || nps[0].Namespace != "noise" {
		t.Errorf("noise's NetworkPolicies, watched: %v, %v", nps, err)
	}
	waitFor("the stats count the policies and their watch", func([]callout.Webhook) bool {
		got := inv.Stats()
		return got.NetworkPolicies == 2 && got.Watches == 5
	})

	// A webhook in a namespace not watched yet: its Service exists, so no
	// resolution may call it missing while the new watch syncs.
	before := rec.count()
	mustWebhook(ctx, t, api, "cfg-b", "vb.inventory.hookscope.dev", "hooks-b", "svc-b")
	waitFor("webhook b resolves through a watch started for it", backendIs("vb.inventory.hookscope.dev", "10.0.9.3:8443"))
	rec.mu.Lock()
	for _, ws := range rec.all[before:] {
		if w, ok := find(ws, "vb.inventory.hookscope.dev"); ok && judged(w) != "" && judged(w) != findings.Healthy {
			class, detail := Problem(w)
			t.Errorf("a resolution called webhook b %s (%s) while its watch was starting", class, detail)
		}
	}
	rec.mu.Unlock()
	if got := inv.Stats(); got.Namespaces != 2 || got.Services != 3 || got.EndpointSlices != 2 || got.Watches != 7 {
		t.Errorf("stats with two webhooks: %+v, want 2 namespaces, 3 Services, 2 slices, 7 watches", got)
	}

	// Churn elsewhere does not wake the inventory.
	time.Sleep(200 * time.Millisecond)
	before = rec.count()
	for i := 20; i < 30; i++ {
		mustBackend(ctx, t, api, "noise", fmt.Sprintf("noise-%02d", i), fmt.Sprintf("10.0.8.%d", i+1))
	}
	if err := client.CoreV1().Services("noise").Delete(ctx, "noise-00", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if n := rec.count() - before; n != 0 {
		t.Errorf("%d resolutions after changes to Services no webhook calls, want 0", n)
	}

	// A second webhook Service in a watched namespace: the EndpointSlice
	// watch is restarted with both names, and webhook a never loses its
	// endpoint meanwhile.
	before = rec.count()
	mustWebhook(ctx, t, api, "cfg-c", "vc.inventory.hookscope.dev", "hooks-a", "unrelated")
	waitFor("webhook c resolves through the widened EndpointSlice watch", backendIs("vc.inventory.hookscope.dev", "10.0.9.2:8443"))
	rec.mu.Lock()
	for _, ws := range rec.all[before:] {
		if w, ok := find(ws, "va.inventory.hookscope.dev"); !ok || judged(w) != findings.Healthy || len(w.Backends) != 1 {
			t.Errorf("while the EndpointSlice watch of hooks-a restarted, webhook a resolved to %+v", w)
		}
	}
	rec.mu.Unlock()
	if got := inv.Stats(); got.Namespaces != 2 || got.Services != 3 || got.EndpointSlices != 3 || got.Watches != 7 {
		t.Errorf("stats with three webhooks: %+v, want 2 namespaces, 3 Services, 3 slices, 7 watches", got)
	}

	// The webhook's own Service going away is seen.
	if err := client.CoreV1().Services("hooks-a").Delete(ctx, "svc-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("webhook a's Service is missing", func(ws []callout.Webhook) bool {
		w, ok := find(ws, "va.inventory.hookscope.dev")
		return ok && judged(w) == findings.ServiceNotFound
	})

	// Removing webhook b stops its namespace's watches.
	if err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, "cfg-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("webhook b is gone", func(ws []callout.Webhook) bool { _, ok := find(ws, "vb.inventory.hookscope.dev"); return !ok })
	if got := inv.Stats(); got.Namespaces != 1 || got.Watches != 5 {
		t.Errorf("stats after webhook b was removed: %+v, want 1 namespace, 5 watches", got)
	}
}

// configOf is the local cluster's client configuration.
func configOf(t *testing.T, cluster *chaos.Local) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newAPI reads the cluster of cfg as the agent does.
func newAPI(t *testing.T, cfg *rest.Config) *kube.Client {
	t.Helper()
	api, err := kube.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return api
}

func mustNamespace(ctx context.Context, t *testing.T, api kube.API, ns string) {
	t.Helper()
	r := corev1.SchemeGroupVersion.WithResource("namespaces")
	if err := api.Create(ctx, r, "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, &corev1.Namespace{}); err != nil {
		t.Fatal(err)
	}
}

// mustBackend creates a Service without a selector and an EndpointSlice
// with one ready endpoint at addr:8443 (nothing dials it).
func mustBackend(ctx context.Context, t *testing.T, api kube.API, ns, name, addr string) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(8443)}}},
	}
	if err := api.Create(ctx, servicesGVR, ns, svc, &corev1.Service{}); err != nil {
		t.Fatal(err)
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "hookscope-test"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To[int32](8443), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if err := api.Create(ctx, slicesGVR, ns, es, &discoveryv1.EndpointSlice{}); err != nil {
		t.Fatal(err)
	}
}

// mustWebhook creates a validating webhook configuration calling ns/svc
// for objects no write carries.
func mustWebhook(ctx context.Context, t *testing.T, api kube.API, cfg, name, ns, svc string) {
	t.Helper()
	err := api.Create(ctx, validatingGVR, "", &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: cfg},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name:         name,
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: ns, Name: svc, Port: ptr.To[int32](443)}},
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
			}},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"hookscope.dev/never": "true"}},
			FailurePolicy:           ptr.To(admissionv1.Ignore),
			SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}, &admissionv1.ValidatingWebhookConfiguration{})
	if err != nil {
		t.Fatal(err)
	}
}
