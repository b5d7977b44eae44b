package apisignals

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
)

// Denial is a webhook's explicit refusal, as the API server words it
// (k8s.io/apiserver's webhook errors.ToStatusErr): the webhook answered,
// allowed=false. The webhook works; what it refuses may still be what the
// cluster needs (a policy that denies aws-node's pods).
type Denial struct {
	// Webhook is the webhook's name, e.g. "validate.kyverno.svc-fail".
	Webhook string
	// Message is the webhook's reason, its whitespace folded to single
	// spaces (a policy engine's message spans lines); empty when it gave
	// none ("denied the request without explanation").
	Message string
}

// The API server's markers of a denial.
const (
	markAdmission        = `admission webhook "`
	markAdmissionEscaped = `admission webhook \"` // inside a Go-quoted log value
	markDeniedSuffix     = " denied the request"
	markNoExplanation    = " without explanation"
)

// ParseDenial finds a webhook's explicit denial in msg: a client's error,
// a controller's Event ("Error creating: admission webhook "NAME" denied
// the request: MESSAGE"), or the API server's log line ("rejected by
// webhook "NAME": &errors.StatusError{... Message:"admission webhook
// \"NAME\" denied the request: ..."}"). It returns false when msg has
// none, and when msg is a failed call (ParseWebhookFailure's), whose text
// may quote a denial. Only the first 64 KiB of msg are read.
func ParseDenial(msg string) (Denial, bool) {
	if len(msg) > maxScan {
		msg = msg[:maxScan]
	}
	i := strings.Index(msg, markAdmission)
	escaped := false
	if j := strings.Index(msg, markAdmissionEscaped); j >= 0 && (i < 0 || j < i) {
		i, escaped = j, true
	}
	if i < 0 {
		return Denial{}, false
	}
	if _, failed := ParseWebhookFailure(msg); failed {
		return Denial{}, false // a failed call's text may quote a denial
	}
	tail := msg[i:]
	if escaped {
		// The log's Message:"..." value, up to its closing quote.
		tail = unescapeKlogValue(strings.TrimPrefix(tail, markAdmissionEscaped))
	} else {
		tail = strings.TrimPrefix(tail, markAdmission)
	}
	end := strings.IndexByte(tail, '"')
	if end <= 0 || end > maxName {
		return Denial{}, false
	}
	d := Denial{Webhook: tail[:end]}
	if strings.ContainsAny(d.Webhook, " \t\n\\") {
		return Denial{}, false
	}
	rest, ok := strings.CutPrefix(tail[end+1:], markDeniedSuffix)
	if !ok {
		return Denial{}, false
	}
	switch {
	case strings.HasPrefix(rest, ": "):
		d.Message = foldSpace(rest[2:])
	case strings.HasPrefix(rest, markNoExplanation):
	default:
		return Denial{}, false
	}
	return d, true
}

// foldSpace trims s, folds each run of white space to one space, and cuts
// the result to maxDetail bytes on a rune boundary.
func foldSpace(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.TrimSpace(s) {
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if b.Len()+utf8.RuneLen(r) > maxDetail {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// DeniedCreate is a denial an Event reported: a controller could not
// create an object (its pods) because a webhook refused it.
type DeniedCreate struct {
	Denial
	// At is the Event's last occurrence.
	At time.Time
	// Object is the Event's involved object, "Kind namespace/name" (e.g.
	// "DaemonSet kube-system/aws-node").
	Object string
	// Reason is the Event's reason, e.g. FailedCreate.
	Reason string
	// Count is the Event's count.
	Count int
}

// OnDenial makes the Watcher report the Warning Events that are a
// webhook's denial (a controller's FailedCreate: "Error creating:
// admission webhook ... denied the request: ..."), once per Event
// resourceVersion, one call at a time with the failures' reports. Call
// before Run; without it denials are not reported.
func (w *Watcher) OnDenial(report func(DeniedCreate)) { w.denied = report }

// mayBeDenial reports whether an Event's message may be a denial, for
// slimEvent: a denial's message is kept, as a failed call's is.
func mayBeDenial(msg string) bool { return strings.Contains(msg, markDeniedSuffix) }

// onDenialEvent reports an Event that is a denial.
func (w *Watcher) onDenialEvent(e *corev1.Event) {
	if w.denied == nil {
		return
	}
	d, ok := ParseDenial(e.Message)
	if !ok {
		return
	}
	w.mu.Lock()
	if rv, seen := w.reported[e.UID]; seen && rv == e.ResourceVersion {
		w.mu.Unlock()
		return
	}
	w.reported[e.UID] = e.ResourceVersion
	w.mu.Unlock()
	involved := e.InvolvedObject.Kind + " " + e.InvolvedObject.Name
	if e.InvolvedObject.Namespace != "" {
		involved = e.InvolvedObject.Kind + " " + e.InvolvedObject.Namespace + "/" + e.InvolvedObject.Name
	}
	count := max(int(e.Count), 1)
	if e.Series != nil {
		count = max(count, int(e.Series.Count))
	}
	w.reportMu.Lock()
	defer w.reportMu.Unlock()
	w.denied(DeniedCreate{Denial: d, At: eventTime(e), Object: involved, Reason: e.Reason, Count: count})
}
