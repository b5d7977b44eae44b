//go:build linux

// Linux only because it runs chaos.Local, a real kube-apiserver.

package events_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/chaos"
	"github.com/hookscope/hookscope/events"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube"
	"github.com/hookscope/hookscope/inventory"
)

// What TestEventsOnTheCallOutsObjects creates: a validating webhook
// configuration, an APIService and a CRD with a conversion webhook, none
// of whose Services exist (the API server dials nothing), and the node the
// agent would run on.
const (
	liveConfig   = "events-expired"
	liveHook     = "vexpired.events.hookscope.dev"
	liveAPI      = "v1alpha1.events.hookscope.dev"
	liveCRD      = "widgets.events.hookscope.dev"
	liveNode     = "events-node-0"
	liveNS       = "events-backends"
	flapRepeats  = 40
	spamBurst    = 25 // client-go's recorder: 25 Events per source, object and type, then one per 5 minutes
	liveNodeBack = "10.0.1.5:8443"
)

// TestEventsOnTheCallOutsObjects drives a findings store, with the
// recorder as its sink and the real inventory naming the objects' UIDs,
// against a real kube-apiserver: a finding that opens is a Warning on the
// webhook configuration (shown by kubectl describe), one that resolves a
// Normal Event; a webhook that fails and recovers 40 times in a row leaves
// one Warning and one Normal Event whose counts the recorder bounds; the
// APIService and the CRD get theirs, and a failure that changes reason is
// no recovery.
func TestEventsOnTheCallOutsObjects(t *testing.T) {
	ctx, local, _ := chaos.LocalForTest(t, "events", 4*time.Minute)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	rc, err := clientcmd.BuildConfigFromFlags("", local.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	client, err := kube.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	uids := createCallOuts(ctx, t, client, rc)
	webhooks := runInventory(ctx, t, client, log, uids)

	store := findings.NewStore(findings.Config{Log: log})
	rec := events.New(ctx, events.Config{Events: client, Node: liveNode, UID: webhooks.inv.UID, Log: log})
	t.Cleanup(rec.Shutdown)
	store.AddSink(rec)

	hook := webhooks.get(t, callout.KindValidating, liveHook)
	backend := netip.MustParseAddrPort(liveNodeBack)
	expired := findings.Observation{Webhook: hook, Backend: backend, Class: findings.CertExpired,
		Evidence: findings.Evidence{Source: findings.Probe, Detail: "x509: certificate has expired or is not yet valid"}}
	healthy := findings.Observation{Webhook: hook, Backend: backend, Class: findings.Healthy,
		Evidence: findings.Evidence{Source: findings.Probe, Detail: "handshake verifies"}}
	cfgRef := objectOf(callout.KindValidating, liveConfig, uids)
	wantFailing := `CertExpired: validating webhook "` + liveHook + `" fails: writes rejected; backend ` + liveNodeBack + ", Service " + liveNS + "/expired. Fix: "
	wantRecovered := `validating webhook "` + liveHook + `" no longer fails with CertExpired; backend ` + liveNodeBack + ", Service " + liveNS + "/expired"

	t.Run("a finding that opens is a Warning on the configuration", func(t *testing.T) {
		store.Observe(expired)
		ev := awaitEvent(ctx, t, client, cfgRef, corev1.EventTypeWarning, events.ReasonWebhookFailing, 1)
		if !strings.HasPrefix(ev.Message, wantFailing) {
			t.Errorf("message %q, want it to start %q", ev.Message, wantFailing)
		}
		if ev.Source.Component != events.Component || ev.Source.Host != liveNode || ev.InvolvedObject.UID != cfgRef.uid {
			t.Errorf("source %+v, object %+v: want %s on %s, UID %s", ev.Source, ev.InvolvedObject, events.Component, liveNode, cfgRef.uid)
		}
		out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", local.Kubeconfig(), "describe", "validatingwebhookconfiguration", liveConfig).CombinedOutput()
		if err != nil || !strings.Contains(string(out), events.ReasonWebhookFailing) || !strings.Contains(string(out), "CertExpired: validating webhook") {
			t.Errorf("kubectl describe does not show the Warning (err %v):\n%s", err, out)
		}
	})
	t.Run("a finding that resolves is a Normal Event", func(t *testing.T) {
		store.Observe(healthy)
		ev := awaitEvent(ctx, t, client, cfgRef, corev1.EventTypeNormal, events.ReasonWebhookRecovered, 1)
		if ev.Message != wantRecovered {
			t.Errorf("message %q, want %q", ev.Message, wantRecovered)
		}
	})
	t.Run("a flapping webhook's Events are counted, not repeated, and bounded", func(t *testing.T) {
		for range flapRepeats {
			store.Observe(expired)
			store.Observe(healthy)
		}
		evs := settledEvents(ctx, t, client, cfgRef)
		warnings, normals := byType(evs, corev1.EventTypeWarning), byType(evs, corev1.EventTypeNormal)
		if len(warnings) != 1 || len(normals) != 1 {
			t.Fatalf("%d Warning and %d Normal Events on the configuration after %d failures and recoveries, want one of each (aggregated):\n%s",
				len(warnings), len(normals), flapRepeats+1, describe(evs))
		}
		for _, ev := range []corev1.Event{warnings[0], normals[0]} {
			// Each was recorded 41 times: the count says it repeated, the
			// spam filter says how often it may be written.
			if ev.Count < 2 || ev.Count > spamBurst {
				t.Errorf("%s %s count %d after %d repeats, want 2..%d", ev.Type, ev.Reason, ev.Count, flapRepeats+1, spamBurst)
			}
		}
		t.Logf("after %d failures and recoveries: Warning count %d, Normal count %d", flapRepeats+1, warnings[0].Count, normals[0].Count)
	})
	t.Run("an APIService and a CRD get theirs; a failure that changes reason is no recovery", func(t *testing.T) {
		checkAPIService(ctx, t, client, store, webhooks.get(t, callout.KindAPIService, liveAPI), objectOf(callout.KindAPIService, liveAPI, uids))
		checkConversion(ctx, t, client, store, webhooks.get(t, callout.KindConversion, liveCRD), objectOf(callout.KindConversion, liveCRD, uids))
	})
}

func checkAPIService(ctx context.Context, t *testing.T, client kube.API, store *findings.Store, api callout.Webhook, ref object) {
	t.Helper()
	store.Observe(findings.Observation{Webhook: api, Class: findings.NoEndpoints, Evidence: findings.Evidence{Source: findings.Objects, Detail: "no endpoints"}})
	ev := awaitEvent(ctx, t, client, ref, corev1.EventTypeWarning, events.ReasonAPIServiceUnavailable, 1)
	if want := "NoEndpoints: APIService " + liveAPI + " fails: requests to the API fail"; !strings.HasPrefix(ev.Message, want) {
		t.Errorf("message %q, want it to start %q", ev.Message, want)
	}
	store.Observe(findings.Observation{Webhook: api, Class: findings.Healthy, Evidence: findings.Evidence{Source: findings.Objects, Detail: "callable"}})
	awaitEvent(ctx, t, client, ref, corev1.EventTypeNormal, events.ReasonAPIServiceRecovered, 1)
}

// checkConversion: CertExpired, then ConnectionRefused (the same backend
// fails otherwise), then healthy: two Warnings and one Normal Event, which
// names ConnectionRefused.
func checkConversion(ctx context.Context, t *testing.T, client kube.API, store *findings.Store, conv callout.Webhook, ref object) {
	t.Helper()
	b := netip.MustParseAddrPort("10.0.1.6:9443")
	for _, c := range []findings.Class{findings.CertExpired, findings.ConnectionRefused, findings.Healthy} {
		store.Observe(findings.Observation{Webhook: conv, Backend: b, Class: c, Evidence: findings.Evidence{Source: findings.Probe, Detail: string(c)}})
	}
	awaitEvent(ctx, t, client, ref, corev1.EventTypeNormal, events.ReasonConversionWebhookRecovered, 1)
	evs := settledEvents(ctx, t, client, ref)
	var got []string
	for _, ev := range evs {
		got = append(got, ev.Type+" "+ev.Reason+" "+strings.SplitN(ev.Message, ";", 2)[0])
	}
	slices.Sort(got)
	want := []string{
		"Normal " + events.ReasonConversionWebhookRecovered + " the conversion webhook of CRD " + liveCRD + " no longer fails with ConnectionRefused",
		"Warning " + events.ReasonConversionWebhookFailing + " CertExpired: the conversion webhook of CRD " + liveCRD + " fails: custom resources cannot be converted",
		"Warning " + events.ReasonConversionWebhookFailing + " ConnectionRefused: the conversion webhook of CRD " + liveCRD + " fails: custom resources cannot be converted",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Events on the CRD:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// object is a call-out's object as the API server holds it.
type object struct {
	kind, name string
	uid        types.UID
}

func objectOf(kind, name string, uids map[string]types.UID) object {
	ref := events.Object(callout.Ref{Kind: kind, Configuration: name, Name: name})
	return object{kind: ref.Kind, name: name, uid: uids[kind+"/"+name]}
}

// createCallOuts creates the three call-outs and returns their UIDs by
// callout kind and name. The APIService and the CRD are written through
// the dynamic client of rc: the agent writes neither.
func createCallOuts(ctx context.Context, t *testing.T, client kube.API, rc *rest.Config) map[string]types.UID {
	t.Helper()
	fail, none := admissionv1.Fail, admissionv1.SideEffectClassNone
	cfg := &admissionv1.ValidatingWebhookConfiguration{}
	err := client.Create(ctx, admissionv1.SchemeGroupVersion.WithResource("validatingwebhookconfigurations"), "", &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: liveConfig},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name: liveHook, FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: liveNS, Name: "expired", Path: ptr.To("/validate")}},
			// Matches nothing this test writes.
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{"events.hookscope.dev"}, APIVersions: []string{"v1"}, Resources: []string{"nothings"}}}},
		}},
	}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	uids := map[string]types.UID{callout.KindValidating + "/" + liveConfig: cfg.UID}
	dyn := dynamic.NewForConfigOrDie(rc)
	schemaAny := map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
	for kind, obj := range map[string]map[string]any{
		callout.KindAPIService: {
			"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": map[string]any{"name": liveAPI},
			"spec": map[string]any{"group": "events.hookscope.dev", "version": "v1alpha1", "groupPriorityMinimum": 1000, "versionPriority": 15,
				"service": map[string]any{"namespace": liveNS, "name": "api", "port": 443}, "insecureSkipTLSVerify": true},
		},
		callout.KindConversion: {
			"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": map[string]any{"name": liveCRD},
			"spec": map[string]any{
				"group": "events.hookscope.dev", "scope": "Namespaced",
				"names": map[string]any{"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
				"versions": []any{
					map[string]any{"name": "v1", "served": true, "storage": true, "schema": schemaAny},
					map[string]any{"name": "v2", "served": true, "storage": false, "schema": schemaAny},
				},
				"conversion": map[string]any{"strategy": "Webhook", "webhook": map[string]any{"conversionReviewVersions": []string{"v1"},
					"clientConfig": map[string]any{"service": map[string]any{"namespace": liveNS, "name": "convert", "path": "/convert", "port": 443}}}},
			},
		},
	} {
		gvr := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
		if kind == callout.KindConversion {
			gvr = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
		}
		got, err := dyn.Resource(gvr).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating the %s: %v", kind, err)
		}
		uids[kind+"/"+got.GetName()] = got.GetUID()
	}
	return uids
}

// liveWebhooks is the inventory, run as the agent runs it.
type liveWebhooks struct{ inv *inventory.Inventory }

// runInventory runs the inventory until it holds the three call-outs'
// UIDs.
func runInventory(ctx context.Context, t *testing.T, client kube.API, log *slog.Logger, uids map[string]types.UID) liveWebhooks {
	t.Helper()
	w := liveWebhooks{inv: inventory.New(client, log)}
	w.inv.WatchAPIServices(client)
	w.inv.WatchConversions(client)
	go func() { _ = w.inv.Run(ctx, time.Minute, func([]callout.Webhook) {}) }()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		for key, uid := range uids {
			kind, name, _ := strings.Cut(key, "/")
			if got, ok := w.inv.UID(callout.Ref{Kind: kind, Configuration: name}); !ok || got != uid {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the inventory names the call-outs' UIDs: %v", err)
	}
	return w
}

// get is call-out name of kind as the inventory resolved it.
func (w liveWebhooks) get(t *testing.T, kind, name string) callout.Webhook {
	t.Helper()
	var found callout.Webhook
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		ws := w.inv.Webhooks()
		i := slices.IndexFunc(ws, func(w callout.Webhook) bool { return w.Ref.Kind == kind && w.Ref.Name == name })
		if i >= 0 {
			found = ws[i]
		}
		return i >= 0, nil
	})
	if err != nil {
		t.Fatalf("the inventory never resolved %s %s", kind, name)
	}
	return found
}

// eventsOn lists the agent's Events about o, in every namespace.
func eventsOn(ctx context.Context, client kube.API, o object) ([]corev1.Event, error) {
	sel := fmt.Sprintf("involvedObject.kind=%s,involvedObject.name=%s,source=%s", o.kind, o.name, events.Component)
	list := &corev1.EventList{}
	if err := client.List(ctx, corev1.SchemeGroupVersion.WithResource("events"), "", metav1.ListOptions{FieldSelector: sel}, list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// awaitEvent waits for an Event of type and reason about o with at least
// count occurrences.
func awaitEvent(ctx context.Context, t *testing.T, client kube.API, o object, typ, reason string, count int32) corev1.Event {
	t.Helper()
	var found corev1.Event
	var last []corev1.Event
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := eventsOn(ctx, client, o)
		if err != nil {
			return false, nil
		}
		last = evs
		for _, ev := range evs {
			if ev.Type == typ && ev.Reason == reason && ev.Count >= count {
				found = ev
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s %s Event on %s %s within 30s; the agent's Events there:\n%s", typ, reason, o.kind, o.name, describe(last))
	}
	return found
}

// settledEvents is the agent's Events about o once their counts have not
// changed for 3 s (the recorder writes in the background).
func settledEvents(ctx context.Context, t *testing.T, client kube.API, o object) []corev1.Event {
	t.Helper()
	var last []corev1.Event
	var lastSum, stableSince = int32(-1), time.Now()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		evs, err := eventsOn(ctx, client, o)
		if err != nil {
			return false, nil
		}
		sum := int32(len(evs))
		for _, ev := range evs {
			sum += ev.Count
		}
		if sum != lastSum {
			lastSum, stableSince, last = sum, time.Now(), evs
			return false, nil
		}
		last = evs
		return time.Since(stableSince) >= 3*time.Second, nil
	})
	if err != nil {
		t.Fatalf("the Events on %s %s did not settle: %v\n%s", o.kind, o.name, err, describe(last))
	}
	return last
}

func byType(evs []corev1.Event, typ string) []corev1.Event {
	var out []corev1.Event
	for _, ev := range evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func describe(evs []corev1.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "  %s %s x%d (%s): %s\n", ev.Type, ev.Reason, ev.Count, ev.Source.Host, ev.Message)
	}
	return b.String()
}
