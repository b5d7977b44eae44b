package events

import (
	"context"
	"fmt"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/record"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube"
	"github.com/hookscope/hookscope/internal/kube/kubefake"
)

// writtenEvent waits until the API holds an Event of reason about an
// object named name with at least count occurrences, and returns it.
func writtenEvent(t *testing.T, api kube.API, name, reason string, count int32) corev1.Event {
	t.Helper()
	var found corev1.Event
	var last []corev1.Event
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		list := &corev1.EventList{}
		if err := api.List(ctx, eventsGVR, "", metav1.ListOptions{}, list); err != nil {
			return false, err
		}
		last = list.Items
		for _, ev := range list.Items {
			if ev.InvolvedObject.Name == name && ev.Reason == reason && ev.Count >= count {
				found = ev
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s Event (count %d or more) on %s: %v; the Events written: %+v", reason, count, name, err, last)
	}
	return found
}

// TestRecorderWritesThroughTheAPI: each kind of call-out's finding is an
// Event on its object (its API version, kind, name and UID, in namespace
// default as the object is cluster-scoped), and the same Event again
// raises the count of the one written (a patch).
func TestRecorderWritesThroughTheAPI(t *testing.T) {
	api := kubefake.New(nil)
	rec := New(t.Context(), Config{Events: api, Node: "n1",
		UID: func(ref callout.Ref) (types.UID, bool) { return types.UID("uid-" + ref.Configuration), true }})
	t.Cleanup(rec.Shutdown)
	for _, c := range []struct {
		kind, apiVersion, objKind, reason string
	}{
		{callout.KindValidating, "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", ReasonWebhookFailing},
		{callout.KindMutating, "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", ReasonWebhookFailing},
		{callout.KindConversion, "apiextensions.k8s.io/v1", "CustomResourceDefinition", ReasonConversionWebhookFailing},
		{callout.KindAPIService, "apiregistration.k8s.io/v1", "APIService", ReasonAPIServiceUnavailable},
	} {
		t.Run(c.kind, func(t *testing.T) {
			name := "cfg-" + c.kind
			f := findings.Finding{ID: "f-" + c.kind, Class: findings.ServiceNotFound, Effect: findings.WritesRejected,
				Webhook: callout.Ref{Kind: c.kind, Configuration: name, Name: name}}
			rec.Report(f)
			ev := writtenEvent(t, api, name, c.reason, 1)
			want := corev1.ObjectReference{APIVersion: c.apiVersion, Kind: c.objKind, Name: name, UID: types.UID("uid-" + name)}
			if ev.InvolvedObject != want || ev.Namespace != metav1.NamespaceDefault || ev.Type != corev1.EventTypeWarning ||
				ev.Source != (corev1.EventSource{Component: Component, Host: "n1"}) || ev.Message != FailingMessage(f) {
				t.Fatalf("Event %+v\nwant a Warning in %s about %+v from %s on n1 saying %q", ev, metav1.NamespaceDefault, want, Component, FailingMessage(f))
			}
			now := time.Now()
			resolved := f
			resolved.Resolved = &now
			rec.Report(resolved)
			rec.Report(f) // fails again: the same Warning, counted
			if again := writtenEvent(t, api, name, c.reason, 2); again.Name != ev.Name {
				t.Errorf("the repeat was written as Event %s, want the count of %s raised", again.Name, ev.Name)
			}
		})
	}
	patched := false
	for _, a := range api.Clientset.Actions() {
		patched = patched || a.GetVerb() == "patch" && a.GetResource() == eventsGVR
	}
	if !patched {
		t.Errorf("no repeat was written as a patch: %v", api.Clientset.Actions())
	}
}

// TestReferencesOfTheObjectsEventsAreOn: a recorder given kube.Scheme and
// the Sink names each object the agent records Events on: the webhook
// configurations the guard changes, typed and without their kind set (as
// the API returns them), and CRDs and APIServices, unstructured.
func TestReferencesOfTheObjectsEventsAreOn(t *testing.T) {
	api := kubefake.New(nil)
	b := record.NewBroadcaster(record.WithContext(t.Context()))
	b.StartRecordingToSink(NewSink(api))
	t.Cleanup(b.Shutdown)
	recorder := b.NewRecorder(kube.Scheme, corev1.EventSource{Component: "hookscope-guard"})
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), ResourceVersion: "7"}
	}
	unstructuredObject := func(apiVersion, kind, name string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(apiVersion)
		u.SetKind(kind)
		u.SetName(name)
		u.SetUID(types.UID("uid-" + name))
		u.SetResourceVersion("7")
		return u
	}
	for _, c := range []struct {
		obj              runtime.Object
		apiVersion, kind string
	}{
		{&admissionv1.ValidatingWebhookConfiguration{ObjectMeta: meta("vwc")}, "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"},
		{&admissionv1.MutatingWebhookConfiguration{ObjectMeta: meta("mwc")}, "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"},
		{unstructuredObject("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com"), "apiextensions.k8s.io/v1", "CustomResourceDefinition"},
		{unstructuredObject("apiregistration.k8s.io/v1", "APIService", "v1beta1.metrics.k8s.io"), "apiregistration.k8s.io/v1", "APIService"},
	} {
		t.Run(c.kind, func(t *testing.T) {
			name := c.obj.(metav1.Object).GetName()
			reason := "Guard" + c.kind
			recorder.Event(c.obj, corev1.EventTypeNormal, reason, fmt.Sprintf("about %s %s", c.kind, name))
			ev := writtenEvent(t, api, name, reason, 1)
			want := corev1.ObjectReference{APIVersion: c.apiVersion, Kind: c.kind, Name: name, UID: types.UID("uid-" + name), ResourceVersion: "7"}
			if ev.InvolvedObject != want || ev.Namespace != metav1.NamespaceDefault {
				t.Errorf("Event in %q about %+v, want in %q about %+v", ev.Namespace, ev.InvolvedObject, metav1.NamespaceDefault, want)
			}
		})
	}
}
