package events

import (
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// The reasons of the Events the agent records, one pair per kind of
// call-out: a Warning when a finding opens (or its failure is named), a
// Normal one when it ends. A certificate that has not expired yet fails
// nothing: it has a pair of its own.
const (
	ReasonWebhookFailing             = "WebhookFailing"
	ReasonWebhookRecovered           = "WebhookRecovered"
	ReasonConversionWebhookFailing   = "ConversionWebhookFailing"
	ReasonConversionWebhookRecovered = "ConversionWebhookRecovered"
	ReasonAPIServiceUnavailable      = "APIServiceUnavailable"
	ReasonAPIServiceRecovered        = "APIServiceRecovered"
	ReasonCertificateExpiringSoon    = "CertificateExpiringSoon"
	ReasonCertificateRenewed         = "CertificateRenewed"
)

// maxMessage bounds an Event's message (events.k8s.io's limit is 1 kB;
// a longer one is cut, never split).
const maxMessage = 1024

// Object is the reference to the object that holds call-out ref: its
// webhook configuration, its CustomResourceDefinition or its APIService.
func Object(ref callout.Ref) corev1.ObjectReference {
	switch ref.Kind {
	case callout.KindValidating:
		return corev1.ObjectReference{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration", Name: ref.Configuration}
	case callout.KindMutating:
		return corev1.ObjectReference{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration", Name: ref.Configuration}
	case callout.KindConversion:
		return corev1.ObjectReference{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition", Name: ref.Configuration}
	case callout.KindAPIService:
		return corev1.ObjectReference{APIVersion: "apiregistration.k8s.io/v1", Kind: "APIService", Name: ref.Configuration}
	}
	return corev1.ObjectReference{}
}

// Reasons are the Warning and Normal reasons of finding f's Events.
func Reasons(f findings.Finding) (failing, recovered string) {
	switch {
	case f.Class == findings.CertExpiringSoon:
		return ReasonCertificateExpiringSoon, ReasonCertificateRenewed
	case f.Webhook.Kind == callout.KindConversion:
		return ReasonConversionWebhookFailing, ReasonConversionWebhookRecovered
	case f.Webhook.Kind == callout.KindAPIService:
		return ReasonAPIServiceUnavailable, ReasonAPIServiceRecovered
	}
	return ReasonWebhookFailing, ReasonWebhookRecovered
}

// FailingMessage is the Warning's message for open finding f, on one
// line: the class, the call-out, what the API server does about it, where
// it fails and the fix. It holds nothing that changes from one occurrence
// of the same failure to the next (no time, no count, no finding ID), so
// that the recorder counts a flapping webhook's repeats on one Event.
func FailingMessage(f findings.Finding) string {
	var b strings.Builder
	b.WriteString(string(f.Class) + ": " + subject(f.Webhook))
	switch {
	case f.Class == findings.CertExpiringSoon && f.Certificate != nil:
		b.WriteString(": its serving certificate expires " + f.Certificate.NotAfter.UTC().Format(time.RFC3339) + " (nothing fails yet)")
	case f.Effect == findings.NoneYet:
		b.WriteString(" (nothing fails yet)")
	case f.Effect == findings.FailsOpen:
		b.WriteString(" fails open: the writes it matches pass without it")
	case f.Effect == findings.WritesSlowed:
		b.WriteString(" is slow: writes it matches wait for it")
	default:
		b.WriteString(" fails: " + string(f.Effect))
	}
	if f.Impact != nil {
		b.WriteString("; it breaks " + impact(*f.Impact))
	}
	b.WriteString(where(f))
	if f.Remediation != "" {
		b.WriteString(". Fix: " + f.Remediation)
	}
	return oneLine(b.String())
}

// RecoveredMessage is the Normal Event's message for resolved finding f.
// A finding this agent stops following (a finding from before a restart
// not seen again, or the cluster-wide checks handed to another agent) says
// so instead of claiming a recovery.
func RecoveredMessage(f findings.Finding) string {
	var b strings.Builder
	last := findings.Source("")
	if n := len(f.Evidence); n > 0 {
		last = f.Evidence[n-1].Source
	}
	switch {
	case last == findings.Agent:
		b.WriteString(subject(f.Webhook) + ": " + string(f.Class) + " is no longer followed by this agent (not seen again after it restarted, or another agent now runs the cluster-wide checks)")
	case f.Impact != nil:
		b.WriteString(subject(f.Webhook) + " no longer breaks " + impact(*f.Impact))
	case f.Class == findings.CertExpiringSoon:
		b.WriteString(subject(f.Webhook) + " no longer serves a certificate about to expire")
	default:
		b.WriteString(subject(f.Webhook) + " no longer fails with " + string(f.Class))
	}
	b.WriteString(where(f))
	return oneLine(b.String())
}

// subject names the call-out as an operator knows it.
func subject(ref callout.Ref) string {
	switch ref.Kind {
	case callout.KindValidating:
		return "validating webhook " + quote(ref.Name)
	case callout.KindMutating:
		return "mutating webhook " + quote(ref.Name)
	case callout.KindConversion:
		return "the conversion webhook of CRD " + ref.Configuration
	case callout.KindAPIService:
		return "APIService " + ref.Configuration
	}
	return ref.String()
}

func quote(s string) string { return `"` + s + `"` }

// impact names what a failure breaks: "DaemonSet kube-system/aws-node
// (NodeNotReady on node n1)".
func impact(i findings.Impact) string {
	s := i.Object + " (" + i.Kind
	if i.Node != "" {
		s += " on node " + i.Node
	}
	return s + ")"
}

// where is the backend the finding is about, and what it belongs to.
func where(f findings.Finding) string {
	var parts []string
	if f.Backend.IsValid() {
		p := "backend " + f.Backend.String()
		if f.Pod != nil {
			p += " (pod " + f.Pod.Namespace + "/" + f.Pod.Name + ")"
		}
		parts = append(parts, p)
	}
	if f.Service != nil {
		parts = append(parts, "Service "+f.Service.Namespace+"/"+f.Service.Name)
	} else if f.URL != "" {
		parts = append(parts, "URL "+f.URL)
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, ", ")
}

// oneLine keeps an Event's message on one line and within maxMessage.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage - len("...")
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
