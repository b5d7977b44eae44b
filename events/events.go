// Package events records the agent's findings as Kubernetes Events on the
// object of the call-out that fails: the Validating or
// MutatingWebhookConfiguration, the CustomResourceDefinition of a
// conversion webhook, or the APIService. A finding that opens is a Warning
// (WebhookFailing, ConversionWebhookFailing, APIServiceUnavailable,
// CertificateExpiringSoon), one that resolves a Normal Event
// (WebhookRecovered, ...), so that `kubectl describe` and `kubectl events`
// show what hookscope found where the operator looks.
//
// It is a sink of the findings store, as the exporters are: each agent
// records the findings it opened (those of its node's backends, or the
// cluster-wide ones on the agent that holds the Lease), with its node as
// the Event's source host. client-go's recorder does the rest: the same
// message again raises the count of one Event, similar ones are
// aggregated, and its spam filter bounds how many an object gets (25 per
// agent and type, then one every 5 minutes).
package events

import (
	"context"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube"
)

// Component is the Events' source component.
const Component = "hookscope-agent"

// maxTracked bounds the findings whose open Event is remembered; the store
// holds fewer open findings than this.
const maxTracked = 20000

// Config is what a Recorder needs.
type Config struct {
	// Events is the API the Events are written through.
	Events kube.API
	// Node is this agent's node: the Events' source host.
	Node string
	// UID is the UID of the object that holds a call-out (the inventory's
	// informers hold it); an Event without it would not show in kubectl
	// describe. ok is false for an object the agent no longer holds: no
	// Event is recorded then.
	UID func(callout.Ref) (uid types.UID, ok bool)
	Log *slog.Logger
}

// Recorder records findings as Events. It is a findings.Sink.
type Recorder struct {
	cfg         Config
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder

	mu sync.Mutex
	// recorded is the class each open finding's Warning named, by ID: a
	// finding's later reports (new evidence, a changed effect) record
	// nothing, one whose failure is named (re-classed) records it.
	recorded map[string]findings.Class
}

// New starts the recorder; it stops when ctx ends.
func New(ctx context.Context, cfg Config) *Recorder {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(NewSink(cfg.Events))
	return &Recorder{
		cfg:         cfg,
		broadcaster: b,
		recorder:    b.NewRecorder(kube.Scheme, corev1.EventSource{Component: Component, Host: cfg.Node}),
		recorded:    map[string]findings.Class{},
	}
}

// Shutdown stops the recorder; Events not written yet are dropped.
func (r *Recorder) Shutdown() { r.broadcaster.Shutdown() }

// Report records the Event finding f calls for, if any. It never blocks:
// the recorder writes in the background.
func (r *Recorder) Report(f findings.Finding) {
	warning, ok := r.decide(f)
	if !ok {
		return
	}
	ref := Object(f.Webhook)
	if ref.Kind == "" {
		return
	}
	uid, ok := r.cfg.UID(f.Webhook)
	if !ok {
		r.cfg.Log.Debug("no Event for a finding: its object is not in the inventory", "webhook", f.Webhook.String(), "class", f.Class)
		return
	}
	ref.UID = uid
	failing, recovered := Reasons(f)
	if warning {
		r.recorder.Event(&ref, corev1.EventTypeWarning, failing, FailingMessage(f))
		return
	}
	r.recorder.Event(&ref, corev1.EventTypeNormal, recovered, RecoveredMessage(f))
}

// decide says whether f calls for an Event, and which: a Warning when it
// opens or its class changes, a Normal Event when it resolves, unless
// another finding took its place (the failure changed reason: the new
// finding's Warning says so).
func (r *Recorder) decide(f findings.Finding) (warning, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f.Resolved != nil {
		delete(r.recorded, f.ID)
		return false, f.Superseded == ""
	}
	if class, seen := r.recorded[f.ID]; seen && class == f.Class {
		return false, false
	}
	if len(r.recorded) < maxTracked {
		r.recorded[f.ID] = f.Class
	}
	return true, true
}
