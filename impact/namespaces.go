package impact

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// A namespace whose deletion needs a call-out that is down stays
// Terminating, and the namespace controller says why in a condition:
//   - an aggregated API: NamespaceDeletionDiscoveryFailure names its
//     group/version ("Discovery failed for some groups, 1 failing: unable
//     to retrieve the complete list of server APIs: metrics.k8s.io/v1beta1:
//     stale GroupVersion discovery: metrics.k8s.io/v1beta1");
//   - a CRD's conversion webhook: NamespaceDeletionContentFailure names
//     its group and kind ("Failed to delete all resource types, 1
//     remaining: conversion webhook for stable.example.com/v1,
//     Kind=CronTab failed: Post ...: service "..." not found").

// APIs finds the call-outs a namespace's deletion needs.
type APIs interface {
	// APIServiceFor is the APIService call-out serving group/version gv.
	APIServiceFor(gv string) (callout.Webhook, bool)
	// ConversionFor is the conversion webhook of the CRD of kind in group.
	ConversionFor(group, kind string) (callout.Webhook, bool)
	// APIServiceOfGroup is an APIService call-out serving group (any
	// version): the metrics APIs HPAs read.
	APIServiceOfGroup(group string) (callout.Webhook, bool)
	// HasNamespaceBlockers reports whether any aggregated API or
	// conversion webhook is a call-out: until one is, the Namespaces are
	// not watched.
	HasNamespaceBlockers() bool
}

// calloutImpact is one thing a failing call-out breaks: a namespace it
// keeps Terminating, an HPA it keeps from scaling.
type calloutImpact struct {
	api   callout.Webhook
	imp   findings.Impact
	cause string // the controller's message
}

// stuckNamespaces lists the Terminating namespaces whose deletion waits on
// the discovery of an aggregated API hookscope knows.
func (c *cluster) stuckNamespaces(apis APIs, now time.Time) []calloutImpact {
	if apis == nil || !apis.HasNamespaceBlockers() {
		return nil
	}
	i := c.informer("Namespace") // started here, the first time
	if i == nil || !i.HasSynced() {
		return nil
	}
	var out []calloutImpact
	for _, o := range i.GetStore().List() {
		ns, ok := o.(*corev1.Namespace)
		if !ok || ns.DeletionTimestamp == nil {
			continue
		}
		for _, cond := range ns.Status.Conditions {
			if cond.Status == corev1.ConditionTrue {
				out = append(out, blockedBy(apis, ns, cond, now)...)
			}
		}
	}
	return out
}

// blockedBy are the call-outs a Terminating namespace's condition names.
func blockedBy(apis APIs, ns *corev1.Namespace, cond corev1.NamespaceCondition, now time.Time) []calloutImpact {
	since := ns.DeletionTimestamp.Time
	stuck := func(w callout.Webhook, why string) calloutImpact {
		return calloutImpact{api: w, cause: "the namespace controller: " + cond.Message, imp: findings.Impact{
			Kind: findings.ImpactNamespaceTerminating, Object: "Namespace " + ns.Name, Since: since,
			Detail: fmt.Sprintf("namespace %s has been Terminating since %s (%s when found): %s",
				ns.Name, since.UTC().Format(time.RFC3339), now.Sub(since).Round(time.Second), why)}}
	}
	var out []calloutImpact
	switch cond.Type {
	case corev1.NamespaceDeletionDiscoveryFailure:
		for _, gv := range failingGroupVersions(cond.Message) {
			if api, ok := apis.APIServiceFor(gv); ok {
				out = append(out, stuck(api, fmt.Sprintf("the namespace controller cannot discover %s, which APIService %s serves, so it cannot delete what the namespace holds", gv, api.Ref.Name)))
			}
		}
	case corev1.NamespaceDeletionContentFailure:
		for _, gk := range failingConversions(cond.Message) {
			if crd, ok := apis.ConversionFor(gk.group, gk.kind); ok {
				out = append(out, stuck(crd, fmt.Sprintf("the namespace controller cannot delete its %s custom resources: the conversion webhook of CRD %s fails", gk.kind, crd.Ref.Name)))
			}
		}
	}
	return out
}

// groupKind is a custom resource's group and kind.
type groupKind struct{ group, kind string }

// failingConversions reads the group and kind of each failed conversion a
// content failure names: "...: conversion webhook for g/v, Kind=K failed:
// ...", once each.
func failingConversions(msg string) []groupKind {
	const mark, kindMark = "conversion webhook for ", ", Kind="
	var out []groupKind
	for rest := msg; ; {
		_, after, ok := strings.Cut(rest, mark)
		if !ok {
			return out
		}
		rest = after
		gv, tail, ok := strings.Cut(after, kindMark)
		if !ok {
			continue
		}
		kind, _, ok := strings.Cut(tail, " failed")
		group, _, hasVersion := strings.Cut(gv, "/")
		if !ok || !hasVersion || group == "" || kind == "" || strings.ContainsAny(gv+kind, " \t,:") {
			continue
		}
		if gk := (groupKind{group, kind}); !slices.Contains(out, gk) {
			out = append(out, gk)
		}
	}
}

// failingGroupVersions reads the group/versions a discovery failure names:
// "...: unable to retrieve the complete list of server APIs: g/v: why,
// g2/v2: why".
func failingGroupVersions(msg string) []string {
	const mark = "unable to retrieve the complete list of server APIs: "
	_, rest, ok := strings.Cut(msg, mark)
	if !ok {
		return nil
	}
	var out []string
	for _, part := range strings.Split(rest, ", ") {
		gv, _, ok := strings.Cut(part, ": ")
		if !ok || strings.Count(gv, "/") != 1 || strings.ContainsAny(gv, " \t") {
			continue
		}
		out = append(out, gv)
	}
	return out
}
