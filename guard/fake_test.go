package guard

import (
	"context"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube/kubefake"
)

// blockedFindings are the open findings of webhook ref (Fail) keeping
// aws-node's pods from being created since since.
func blockedFindings(ref callout.Ref, since time.Time) []findings.Finding {
	return []findings.Finding{{Webhook: ref, Class: findings.ServiceNotFound, FailurePolicy: "Fail", FirstSeen: since,
		Impact: &findings.Impact{Kind: findings.ImpactNodeNotReady, Object: "DaemonSet kube-system/aws-node", Since: since}}}
}

// TestGuardWritesThroughTheAPI: the guard reads and updates the webhook
// configurations of both kinds through kube.API, the exclusion and its
// backup in one write, and puts the webhook back as it was; a write that
// loses to a concurrent change records nothing and is tried again.
func TestGuardWritesThroughTheAPI(t *testing.T) {
	own := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	optIn := map[string]string{OptIn: "true"}
	vwc := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "v", Annotations: optIn},
		Webhooks: []admissionv1.ValidatingWebhook{{Name: "other.v.example.com"}, {Name: "vpod.v.example.com", NamespaceSelector: own}}}
	mwc := &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "m", Annotations: optIn},
		Webhooks: []admissionv1.MutatingWebhook{{Name: "mpod.m.example.com"}}}
	for _, tc := range []struct {
		ref  callout.Ref
		orig runtime.Object
	}{
		{callout.Ref{Kind: callout.KindValidating, Configuration: "v", Name: "vpod.v.example.com"}, vwc},
		{callout.Ref{Kind: callout.KindMutating, Configuration: "m", Name: "mpod.m.example.com"}, mwc},
	} {
		t.Run(tc.ref.Kind, func(t *testing.T) {
			ctx := t.Context()
			api := kubefake.New(nil, tc.orig.DeepCopyObject())
			conflicts := 1
			api.Clientset.PrependReactor("update", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
				if conflicts == 0 {
					return false, nil, nil
				}
				conflicts--
				return true, nil, apierrors.NewConflict(admissionv1.Resource("webhookconfigurations"), tc.ref.Configuration, nil)
			})
			var events []string
			g := New(api, Config{Grace: time.Second, RevertAfter: time.Minute, Window: time.Minute},
				Records{Event: func(_ context.Context, cfg metav1.Object, kind string, _ bool, reason, _ string) {
					events = append(events, kind+" "+cfg.GetName()+" "+reason)
				}}, slog.New(slog.DiscardHandler))
			t0 := time.Now()
			cfgs := func() Configurations { return configurations(ctx, t, g, tc.ref) }

			g.Tick(ctx, blockedFindings(tc.ref, t0), cfgs(), t0.Add(time.Minute))
			if len(events) != 0 || !reflect.DeepEqual(selectorOf(ctx, t, g, tc.ref), selectorIn(tc.orig, tc.ref.Name)) {
				t.Fatalf("a write that lost to a concurrent change: events %v, selector %v", events, selectorOf(ctx, t, g, tc.ref))
			}
			g.Tick(ctx, blockedFindings(tc.ref, t0), cfgs(), t0.Add(time.Minute+time.Second))
			want := selectorIn(tc.orig, tc.ref.Name).DeepCopy()
			if want == nil {
				want = &metav1.LabelSelector{}
			}
			want.MatchExpressions = append(want.MatchExpressions, metav1.LabelSelectorRequirement{
				Key: nameLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system"}})
			if got := selectorOf(ctx, t, g, tc.ref); !reflect.DeepEqual(got, want) || Changed(annotationsOf(ctx, t, g, tc.ref), tc.ref.Name) == "" {
				t.Fatalf("after the retry: selector %v, want %v, and the backup", got, want)
			}
			g.Tick(ctx, nil, cfgs(), t0.Add(3*time.Minute))
			g.Tick(ctx, nil, cfgs(), t0.Add(4*time.Minute+time.Second))
			if got := selectorOf(ctx, t, g, tc.ref); !reflect.DeepEqual(got, selectorIn(tc.orig, tc.ref.Name)) || annotationsOf(ctx, t, g, tc.ref)[backupKey] != "" {
				t.Fatalf("after a healthy minute: selector %v, annotations %v; want it put back", got, annotationsOf(ctx, t, g, tc.ref))
			}
			name := tc.ref.Kind + " " + tc.ref.Configuration + " "
			if strings.Join(events, ",") != name+"GuardExcludedNamespace,"+name+"GuardReverted" {
				t.Errorf("events %v", events)
			}
		})
	}
}

// readConfig is ref's configuration as the API holds it.
func readConfig(ctx context.Context, t *testing.T, g *Guard, ref callout.Ref) configuration {
	t.Helper()
	var c configuration = &admissionv1.MutatingWebhookConfiguration{}
	r := mutatingGVR
	if ref.Kind == callout.KindValidating {
		c, r = &admissionv1.ValidatingWebhookConfiguration{}, validatingGVR
	}
	if err := g.api.Get(ctx, r, "", ref.Configuration, c); err != nil {
		t.Fatal(err)
	}
	return c
}

func configurations(ctx context.Context, t *testing.T, g *Guard, ref callout.Ref) Configurations {
	switch c := readConfig(ctx, t, g, ref).(type) {
	case *admissionv1.ValidatingWebhookConfiguration:
		return Configurations{Validating: []*admissionv1.ValidatingWebhookConfiguration{c}}
	case *admissionv1.MutatingWebhookConfiguration:
		return Configurations{Mutating: []*admissionv1.MutatingWebhookConfiguration{c}}
	}
	return Configurations{}
}

func selectorOf(ctx context.Context, t *testing.T, g *Guard, ref callout.Ref) *metav1.LabelSelector {
	return *namespaceSelector(readConfig(ctx, t, g, ref), ref.Name)
}

func annotationsOf(ctx context.Context, t *testing.T, g *Guard, ref callout.Ref) map[string]string {
	return readConfig(ctx, t, g, ref).GetAnnotations()
}

func selectorIn(obj runtime.Object, name string) *metav1.LabelSelector {
	return *namespaceSelector(obj.DeepCopyObject().(configuration), name)
}
