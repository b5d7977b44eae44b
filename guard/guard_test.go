//go:build linux

package guard

// Linux only because it runs chaos.Local, a real kube-apiserver.

import (
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/chaos"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube"
)

// awsNodeBlocked is the agent's open findings while webhook ref (Fail)
// keeps aws-node's pods from being created, since since.
func awsNodeBlocked(ref callout.Ref, since time.Time) []findings.Finding {
	return []findings.Finding{
		{Webhook: ref, Class: findings.ServiceNotFound, FailurePolicy: "Fail", FirstSeen: since},
		{Webhook: ref, Class: findings.ServiceNotFound, FailurePolicy: "Fail", FirstSeen: since,
			Impact: &findings.Impact{Kind: findings.ImpactNodeNotReady, Object: "DaemonSet kube-system/aws-node", Since: since}},
	}
}

// blocker creates a mutating webhook configuration like the article's pod
// webhook (every pod, fail closed), with annotations, and returns it as the
// API server stored it.
func blocker(ctx context.Context, t *testing.T, c kube.API, name string, annotations map[string]string, sel *metav1.LabelSelector) *admissionv1.MutatingWebhookConfiguration {
	t.Helper()
	fail, none := admissionv1.Fail, admissionv1.SideEffectClassNone
	cfg := &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name: "mpod." + name + ".example.com", FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector: sel,
			ClientConfig:      admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "kube-system", Name: "gone", Path: ptr.To("/mutate")}},
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
		}}}
	got := &admissionv1.MutatingWebhookConfiguration{}
	if err := c.Create(ctx, mutatingGVR, "", cfg, got); err != nil {
		t.Fatal(err)
	}
	return got
}

// records collects what the guard recorded.
type records struct {
	mu      sync.Mutex
	actions []string
	events  []string
}

func (r *records) hooks() Records {
	return Records{
		Count: func(a string) { r.mu.Lock(); r.actions = append(r.actions, a); r.mu.Unlock() },
		Event: func(_ context.Context, cfg metav1.Object, _ string, _ bool, reason, msg string) {
			r.mu.Lock()
			r.events = append(r.events, cfg.GetName()+" "+reason+": "+msg)
			r.mu.Unlock()
		},
	}
}

func current(ctx context.Context, t *testing.T, c kube.API, name string) *admissionv1.MutatingWebhookConfiguration {
	t.Helper()
	got := &admissionv1.MutatingWebhookConfiguration{}
	if err := c.Get(ctx, mutatingGVR, "", name, got); err != nil {
		t.Fatal(err)
	}
	return got
}

// localAPI is the API of the local cluster, as the agent reaches it.
func localAPI(t *testing.T, local *chaos.Local) kube.API {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", local.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	api, err := kube.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// content is what a revert must restore: everything but the fields the
// API server sets on each write.
func content(cfg *admissionv1.MutatingWebhookConfiguration) string {
	c := cfg.DeepCopy()
	c.ResourceVersion, c.Generation, c.ManagedFields = "", 0, nil
	b, _ := json.Marshal(c)
	return string(b)
}

func TestGuardOnARealAPIServer(t *testing.T) {
	ctx, local, _ := chaos.LocalForTest(t, "guard", 3*time.Minute)
	c := localAPI(t, local)
	log := slog.New(slog.DiscardHandler)
	cfg := Config{Grace: 10 * time.Second, RevertAfter: 30 * time.Second, Window: time.Minute}

	t.Run("a webhook that opted in and blocks aws-node is narrowed to leave kube-system out, then put back exactly", func(t *testing.T) {
		own := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
		orig := blocker(ctx, t, c, "opted-in", map[string]string{OptIn: "true"}, own)
		ref := callout.Ref{Kind: callout.KindMutating, Configuration: orig.Name, Name: orig.Webhooks[0].Name}
		rec := &records{}
		g := New(c, cfg, rec.hooks(), log)
		t0 := time.Now()
		open := awsNodeBlocked(ref, t0)

		g.Tick(ctx, open, Configurations{Mutating: []*admissionv1.MutatingWebhookConfiguration{orig}}, t0.Add(5*time.Second))
		if got := current(ctx, t, c, orig.Name); got.ResourceVersion != orig.ResourceVersion {
			t.Fatalf("changed within the grace period: %+v", got.Webhooks[0].NamespaceSelector)
		}
		g.Tick(ctx, open, Configurations{Mutating: []*admissionv1.MutatingWebhookConfiguration{orig}}, t0.Add(11*time.Second))
		guarded := current(ctx, t, c, orig.Name)
		sel := guarded.Webhooks[0].NamespaceSelector
		want := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}, MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system"}}}}
		if !reflect.DeepEqual(sel, want) || guarded.Annotations[backupKey] == "" {
			t.Fatalf("after the grace period: selector %+v, annotations %v; want kube-system excluded and the original kept", sel, guarded.Annotations)
		}

		// Still failing: it stays. Healthy, not yet long enough: it stays.
		cfgs := Configurations{Mutating: []*admissionv1.MutatingWebhookConfiguration{guarded}}
		g.Tick(ctx, open, cfgs, t0.Add(time.Minute))
		g.Tick(ctx, nil, cfgs, t0.Add(2*time.Minute))
		g.Tick(ctx, nil, cfgs, t0.Add(2*time.Minute+20*time.Second))
		if got := current(ctx, t, c, orig.Name); got.ResourceVersion != guarded.ResourceVersion {
			t.Fatalf("put back before it was healthy for %s", cfg.RevertAfter)
		}
		g.Tick(ctx, nil, cfgs, t0.Add(2*time.Minute+31*time.Second))
		back := current(ctx, t, c, orig.Name)
		if content(back) != content(orig) {
			t.Fatalf("put back as\n%s\nwant\n%s", content(back), content(orig))
		}
		if strings.Join(rec.actions, ",") != "exclude,revert" || len(rec.events) != 2 ||
			!strings.Contains(rec.events[0], "GuardExcludedNamespace: hookscope guard excluded namespace kube-system from webhook "+ref.Name) ||
			!strings.Contains(rec.events[1], "GuardReverted") {
			t.Errorf("records %v, events %v", rec.actions, rec.events)
		}
	})

	t.Run("without the opt-in nothing is written", func(t *testing.T) {
		orig := blocker(ctx, t, c, "not-opted-in", nil, nil)
		ref := callout.Ref{Kind: callout.KindMutating, Configuration: orig.Name, Name: orig.Webhooks[0].Name}
		g := New(c, cfg, Records{}, log)
		t0 := time.Now()
		g.Tick(ctx, awsNodeBlocked(ref, t0), Configurations{Mutating: []*admissionv1.MutatingWebhookConfiguration{orig}}, t0.Add(time.Hour))
		if got := current(ctx, t, c, orig.Name); got.ResourceVersion != orig.ResourceVersion {
			t.Fatalf("a configuration without %s was changed", OptIn)
		}
	})

	t.Run("an impact on a target that is not protected changes nothing", func(t *testing.T) {
		orig := blocker(ctx, t, c, "ordinary", map[string]string{OptIn: "true"}, nil)
		ref := callout.Ref{Kind: callout.KindMutating, Configuration: orig.Name, Name: orig.Webhooks[0].Name}
		g := New(c, cfg, Records{}, log)
		t0 := time.Now()
		open := []findings.Finding{{Webhook: ref, Class: findings.ServiceNotFound, FailurePolicy: "Fail", FirstSeen: t0,
			Impact: &findings.Impact{Kind: findings.ImpactControllerBlocked, Object: "Job shop/nightly", Since: t0}}}
		g.Tick(ctx, open, Configurations{Mutating: []*admissionv1.MutatingWebhookConfiguration{orig}}, t0.Add(time.Hour))
		if got := current(ctx, t, c, orig.Name); got.ResourceVersion != orig.ResourceVersion {
			t.Fatal("a blocked Job outside kube-system made the guard act")
		}
	})

	t.Run("a flapping webhook changes at most once per window", func(t *testing.T) {
		orig := blocker(ctx, t, c, "flapping", map[string]string{OptIn: "true"}, nil)
		ref := callout.Ref{Kind: callout.KindMutating, Configuration: orig.Name, Name: orig.Webhooks[0].Name}
		rec := &records{}
		g := New(c, Config{Grace: time.Second, RevertAfter: time.Second, Window: time.Minute}, rec.hooks(), log)
		t0 := time.Now()
		for i := range 20 { // blocked 4 s, healthy 4 s, ... (ticks 2 s apart) for 40 s
			now := t0.Add(time.Duration(2*i) * time.Second)
			var open []findings.Finding
			if i%4 < 2 {
				open = awsNodeBlocked(ref, now.Add(-2*time.Second))
			}
			g.Tick(ctx, open, Configurations{Mutating: []*admissionv1.MutatingWebhookConfiguration{current(ctx, t, c, orig.Name)}}, now)
		}
		// One exclusion, and its revert once healthy; no second exclusion
		// within the window.
		if strings.Join(rec.actions, ",") != "exclude,revert" {
			t.Errorf("changes in 40 s of flapping with a 1 min window: %v, want one exclusion and its revert", rec.actions)
		}
	})

	t.Run("removing the opt-in puts the webhook back at once", func(t *testing.T) {
		orig := blocker(ctx, t, c, "opt-out", map[string]string{OptIn: "true"}, nil)
		ref := callout.Ref{Kind: callout.KindMutating, Configuration: orig.Name, Name: orig.Webhooks[0].Name}
		g := New(c, cfg, Records{}, log)
		t0 := time.Now()
		open := awsNodeBlocked(ref, t0)
		g.Tick(ctx, open, Configurations{Mutating: []*admissionv1.MutatingWebhookConfiguration{orig}}, t0.Add(time.Minute))
		guarded := current(ctx, t, c, orig.Name)
		if guarded.Annotations[backupKey] == "" {
			t.Fatal("not excluded")
		}
		guarded.Annotations[OptIn] = "false"
		optedOut := &admissionv1.MutatingWebhookConfiguration{}
		if err := c.Update(ctx, mutatingGVR, "", guarded, optedOut); err != nil {
			t.Fatal(err)
		}
		g.Tick(ctx, open, Configurations{Mutating: []*admissionv1.MutatingWebhookConfiguration{optedOut}}, t0.Add(2*time.Minute))
		back := current(ctx, t, c, orig.Name)
		if !reflect.DeepEqual(back.Webhooks[0].NamespaceSelector, orig.Webhooks[0].NamespaceSelector) || back.Annotations[backupKey] != "" {
			t.Fatalf("still guarded after the opt-in was removed: %+v %v", back.Webhooks[0].NamespaceSelector, back.Annotations)
		}
	})
}
