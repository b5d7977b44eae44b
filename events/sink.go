package events

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	"github.com/hookscope/hookscope/internal/kube"
)

// eventsGVR is where the Events go: core/v1, as kubectl describe reads them.
var eventsGVR = corev1.SchemeGroupVersion.WithResource("events")

// Sink writes the Events of a client-go recorder through kube.API, each in
// its own namespace (the namespace of its object, "default" for a
// cluster-scoped one), as client-go's typed sink does. Give the recorder
// kube.Scheme: it names the kind of a typed object from it.
type Sink struct {
	api kube.API
}

var _ record.EventSink = (*Sink)(nil)

// NewSink writes Events through api.
func NewSink(api kube.API) *Sink { return &Sink{api: api} }

// Create writes a new Event.
func (s *Sink) Create(ev *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	return out, s.api.Create(context.Background(), eventsGVR, ev.Namespace, ev, out)
}

// Update replaces an Event.
func (s *Sink) Update(ev *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	return out, s.api.Update(context.Background(), eventsGVR, ev.Namespace, ev, out)
}

// Patch changes Event ev (a repeat raises its count) with a strategic
// merge patch.
func (s *Sink) Patch(ev *corev1.Event, data []byte) (*corev1.Event, error) {
	out := &corev1.Event{}
	return out, s.api.Patch(context.Background(), eventsGVR, ev.Namespace, ev.Name, types.StrategicMergePatchType, data, out)
}
