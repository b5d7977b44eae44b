package guard

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/hookscope/hookscope/callout"
)

// Configurations are the webhook configurations as the inventory caches
// them (annotations included): the guard reads its opt-ins and backups
// there, and writes through the API.
type Configurations struct {
	Validating []*admissionv1.ValidatingWebhookConfiguration
	Mutating   []*admissionv1.MutatingWebhookConfiguration
}

// guardedWebhook is one webhook the guard changed, as its configuration's
// backup annotation says.
type guardedWebhook struct {
	ref   callout.Ref
	orig  original
	optIn bool
}

// guarded lists the webhooks the guard changed.
func (c Configurations) guarded() []guardedWebhook {
	var out []guardedWebhook
	add := func(kind string, m metav1.Object) {
		backups, ok := readBackups(m.GetAnnotations())
		if !ok {
			return
		}
		for name, o := range backups {
			out = append(out, guardedWebhook{ref: callout.Ref{Kind: kind, Configuration: m.GetName(), Name: name}, orig: o,
				optIn: m.GetAnnotations()[OptIn] == "true"})
		}
	}
	for _, v := range c.Validating {
		add(callout.KindValidating, v)
	}
	for _, m := range c.Mutating {
		add(callout.KindMutating, m)
	}
	return out
}

// optIn reports whether ref's configuration opted in; ok is false when
// the configuration is not known.
func (c Configurations) optIn(ref callout.Ref) (optIn, ok bool) {
	var m metav1.Object
	switch ref.Kind {
	case callout.KindValidating:
		if i := slices.IndexFunc(c.Validating, func(v *admissionv1.ValidatingWebhookConfiguration) bool { return v.Name == ref.Configuration }); i >= 0 {
			m = c.Validating[i]
		}
	case callout.KindMutating:
		if i := slices.IndexFunc(c.Mutating, func(v *admissionv1.MutatingWebhookConfiguration) bool { return v.Name == ref.Configuration }); i >= 0 {
			m = c.Mutating[i]
		}
	}
	if m == nil {
		return false, false
	}
	return m.GetAnnotations()[OptIn] == "true", true
}

// readBackups parses the backup annotation; ok is false without one.
func readBackups(ann map[string]string) (map[string]original, bool) {
	raw, ok := ann[backupKey]
	if !ok {
		return nil, false
	}
	var b map[string]original
	if err := json.Unmarshal([]byte(raw), &b); err != nil {
		return nil, false
	}
	return b, true
}

// writeBackups sets the backup annotation, or removes it when b is empty.
func writeBackups(ann map[string]string, b map[string]original) error {
	if len(b) == 0 {
		delete(ann, backupKey)
		return nil
	}
	raw, err := json.Marshal(b)
	if err != nil {
		return err
	}
	ann[backupKey] = string(raw)
	return nil
}

// change edits one webhook entry's namespaceSelector and its
// configuration's annotations; changed false writes nothing.
type change func(ann map[string]string, sel **metav1.LabelSelector) (changed bool, err error)

// The webhook configurations the guard writes.
var (
	validatingGVR = admissionv1.SchemeGroupVersion.WithResource("validatingwebhookconfigurations")
	mutatingGVR   = admissionv1.SchemeGroupVersion.WithResource("mutatingwebhookconfigurations")
)

// configuration is a webhook configuration as read and written.
type configuration interface {
	runtime.Object
	metav1.Object
}

// edit reads ref's configuration, applies ch, and writes it back with the
// resourceVersion read: a concurrent change makes it fail, and the next
// tick reads again. It returns the configuration as written.
func (g *Guard) edit(ctx context.Context, ref callout.Ref, ch change) (metav1.Object, error) {
	var resource schema.GroupVersionResource
	var c configuration
	switch ref.Kind {
	case callout.KindValidating:
		resource, c = validatingGVR, &admissionv1.ValidatingWebhookConfiguration{}
	case callout.KindMutating:
		resource, c = mutatingGVR, &admissionv1.MutatingWebhookConfiguration{}
	default:
		return nil, fmt.Errorf("the guard changes admission webhooks only, not %s", ref.Kind)
	}
	if err := g.api.Get(ctx, resource, "", ref.Configuration, c); err != nil {
		return nil, err
	}
	sel := namespaceSelector(c, ref.Name)
	if sel == nil {
		return nil, fmt.Errorf("webhook %s is no longer in %s", ref.Name, ref.Configuration)
	}
	if c.GetAnnotations() == nil {
		c.SetAnnotations(map[string]string{})
	}
	if changed, err := ch(c.GetAnnotations(), sel); err != nil || !changed {
		return c, err
	}
	if err := g.api.Update(ctx, resource, "", c, c); err != nil {
		return nil, err
	}
	return c, nil
}

// namespaceSelector is webhook name's namespaceSelector in cfg, to edit in
// place; nil when cfg has no webhook of that name.
func namespaceSelector(cfg configuration, name string) **metav1.LabelSelector {
	switch c := cfg.(type) {
	case *admissionv1.ValidatingWebhookConfiguration:
		if i := slices.IndexFunc(c.Webhooks, func(w admissionv1.ValidatingWebhook) bool { return w.Name == name }); i >= 0 {
			return &c.Webhooks[i].NamespaceSelector
		}
	case *admissionv1.MutatingWebhookConfiguration:
		if i := slices.IndexFunc(c.Webhooks, func(w admissionv1.MutatingWebhook) bool { return w.Name == name }); i >= 0 {
			return &c.Webhooks[i].NamespaceSelector
		}
	}
	return nil
}

// exclude adds "namespace not b.namespace" to the webhook's
// namespaceSelector, with its backup, in one write.
func (g *Guard) exclude(ctx context.Context, b blocked, now time.Time) bool {
	cfg, err := g.edit(ctx, b.ref, func(ann map[string]string, sel **metav1.LabelSelector) (bool, error) {
		backups, ok := readBackups(ann)
		if !ok {
			backups = map[string]original{}
		}
		if _, done := backups[b.ref.Name]; done {
			return false, nil
		}
		backups[b.ref.Name] = original{NamespaceSelector: (*sel).DeepCopy(), Excluded: b.namespace, Since: now.UTC(), Reason: b.reason}
		next := (*sel).DeepCopy()
		if next == nil {
			next = &metav1.LabelSelector{}
		}
		next.MatchExpressions = append(next.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: nameLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{b.namespace}})
		*sel = next
		return true, writeBackups(ann, backups)
	})
	if err != nil {
		g.log.Warn("guard: excluding a namespace from a webhook failed; trying again", "webhook", b.ref.String(), "namespace", b.namespace, "err", err)
		return false
	}
	g.lastChange[b.ref] = now
	msg := fmt.Sprintf("hookscope guard excluded namespace %s from webhook %s: %s; it puts the webhook back once it has been healthy for %s (at most %s from now)",
		b.namespace, b.ref.Name, b.reason, g.cfg.RevertAfter, g.cfg.TTL)
	g.record(ctx, cfg, b.ref, "exclude", true, "GuardExcludedNamespace", msg)
	return true
}

// maybeRevert puts gw back when its webhook has been healthy for
// RevertAfter, the change is older than TTL, or the configuration no longer
// opts in. It reports whether the webhook is back (or going back).
func (g *Guard) maybeRevert(ctx context.Context, gw guardedWebhook, failing bool, now time.Time) bool {
	if failing {
		delete(g.healthySince, gw.ref)
	} else if _, ok := g.healthySince[gw.ref]; !ok {
		g.healthySince[gw.ref] = now
	}
	var why string
	switch {
	case !gw.optIn:
		why = "its configuration no longer opts in to the guard"
	case now.Sub(gw.orig.Since) >= g.cfg.TTL:
		why = fmt.Sprintf("the change reached its TTL of %s", g.cfg.TTL)
	case !failing && now.Sub(g.healthySince[gw.ref]) >= g.cfg.RevertAfter:
		why = fmt.Sprintf("the webhook has been healthy for %s", g.cfg.RevertAfter)
	default:
		return false
	}
	cfg, err := g.edit(ctx, gw.ref, func(ann map[string]string, sel **metav1.LabelSelector) (bool, error) {
		backups, ok := readBackups(ann)
		o, has := backups[gw.ref.Name]
		if !ok || !has {
			return false, nil
		}
		*sel = o.NamespaceSelector
		delete(backups, gw.ref.Name)
		return true, writeBackups(ann, backups)
	})
	if err != nil {
		g.log.Warn("guard: putting a webhook back failed; trying again", "webhook", gw.ref.String(), "err", err)
		return false
	}
	delete(g.healthySince, gw.ref)
	g.lastChange[gw.ref] = now
	msg := fmt.Sprintf("hookscope guard put webhook %s back as it was (namespace %s no longer excluded): %s", gw.ref.Name, gw.orig.Excluded, why)
	g.record(ctx, cfg, gw.ref, "revert", false, "GuardReverted", msg)
	return true
}

// record says what the guard did, everywhere it says it.
func (g *Guard) record(ctx context.Context, cfg metav1.Object, ref callout.Ref, action string, warning bool, reason, msg string) {
	g.log.Warn("guard", "action", action, "webhook", ref.String(), "detail", msg)
	if g.records.Count != nil {
		g.records.Count(action)
	}
	if g.records.Span != nil {
		g.records.Span(ref, action, msg, time.Now())
	}
	if g.records.Event != nil && cfg != nil {
		g.records.Event(ctx, cfg, ref.Kind, warning, reason, msg)
	}
}

// Changed says whether the guard changed webhook name of a configuration
// with annotations, as a line for the operator ("" when it did not).
func Changed(annotations map[string]string, name string) string {
	backups, ok := readBackups(annotations)
	if !ok {
		return ""
	}
	o, ok := backups[name]
	if !ok {
		return ""
	}
	return fmt.Sprintf("the guard has excluded namespace %s since %s: %s", o.Excluded, o.Since.UTC().Format(time.RFC3339), o.Reason)
}
