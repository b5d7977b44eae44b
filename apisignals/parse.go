package apisignals

import (
	"strings"
	"unicode/utf8"

	"github.com/hookscope/hookscope/findings"
)

// WebhookFailure is one failed webhook call as the API server words it.
type WebhookFailure struct {
	// Webhook is the webhook's name, e.g. "mpod.elbv2.k8s.aws".
	Webhook string
	// URL is the URL the API server posted to, when the text has it.
	URL string
	// Class is why the call failed; empty when the text names no cause
	// hookscope knows (e.g. "; no further details available").
	Class findings.Class
	// Detail is the API server's cause, after the URL, prefixed with what
	// it means when the class is known.
	Detail string
	// FailOpen is set when the text says the API server let the write
	// through (failurePolicy Ignore): its "failing open" log lines. Client
	// errors and Events always mean the write failed.
	FailOpen bool
}

const (
	// maxScan caps the text ParseWebhookFailure looks at: Events and log
	// lines are short, and a hostile or broken input must not cost more.
	maxScan = 64 << 10
	// maxDetail caps WebhookFailure.Detail.
	maxDetail = 1 << 10
	// maxName caps a webhook name (a DNS subdomain: 253 characters).
	maxName = 253
)

// The API server's markers (k8s.io/apiserver/pkg/util/webhook.ErrCallingWebhook
// and the admission dispatchers).
const (
	markCalling        = `failed calling webhook "`
	markCallingEscaped = `failed calling webhook \"` // inside a klog key="value"
	markFailedCalling  = "Failed calling webhook, "
	markFailingOpen    = "failing open "
	markUnhandledError = `"Unhandled Error" err="`
	markCallPrefix     = "failed to call webhook: "
	markDenied         = `" denied the request`
)

// causes maps the API server's cause text to a failure class, most
// specific first: the first entry whose every substring is in the cause
// wins. Only the text after the URL is searched.
var causes = []struct {
	all     []string
	class   findings.Class
	meaning string
}{
	{[]string{"x509: certificate has expired or is not yet valid", " is before "}, findings.CertNotYetValid, "the serving certificate is not valid yet"},
	{[]string{"x509: certificate has expired or is not yet valid"}, findings.CertExpired, "the serving certificate has expired"},
	// Go reports a SHA-1 signature as an unknown authority with a hint
	// ("insecure algorithm SHA1-RSA", "ECDSA-SHA1"): the caBundle is right,
	// the certificate is not. Only SHA-1 is claimed (as the API server's
	// own insecure-sha1 counter does); MD5 was never seen.
	{[]string{"x509: certificate signed by unknown authority", "x509: cannot verify signature: insecure algorithm ", "SHA1"}, findings.InsecureSignature, "a certificate of the served chain is signed with SHA-1, which the API server rejects (the caBundle is not the cause)"},
	{[]string{"x509: certificate signed by unknown authority"}, findings.UnknownAuthority, "the caBundle does not verify the serving certificate"},
	{[]string{"x509: certificate is valid for "}, findings.HostnameMismatch, "the serving certificate is for another name"},
	{[]string{"x509: certificate is not valid for any names"}, findings.HostnameMismatch, "the serving certificate is for another name"},
	{[]string{"x509: certificate relies on legacy Common Name field"}, findings.LegacyCommonName, "the serving certificate names the host only in its Common Name, with no subjectAltName"},
	{[]string{"x509: cannot validate certificate for "}, findings.HostnameMismatch, "the serving certificate has no IP subject alternative names"},
	{[]string{"no endpoints available for service "}, findings.NoEndpoints, "the webhook's Service has no ready endpoints"},
	{[]string{`endpoints "`, `" not found`}, findings.NoEndpoints, "the webhook's Service has no endpoints"},
	{[]string{`service "`, `" not found`}, findings.ServiceNotFound, "the webhook's Service does not exist"},
	{[]string{`services "`, `" not found`}, findings.ServiceNotFound, "the webhook's Service does not exist"},
	{[]string{"no service port "}, findings.PortMismatch, "the webhook's port is not a port of its Service"},
	{[]string{"connection refused"}, findings.ConnectionRefused, "nothing listens on the backend's port"},
	{[]string{"connection reset by peer"}, findings.ConnectionRefused, "the backend reset the connection"},
	{[]string{"no route to host"}, findings.Unreachable, "the API server has no route to the backend"},
	{[]string{"network is unreachable"}, findings.Unreachable, "the API server has no route to the backend's network"},
	{[]string{"dial tcp: lookup ", "no such host"}, findings.Unreachable, "the webhook's host name does not resolve"},
	{[]string{"Address is not allowed"}, findings.PodNetworkNotRoutable, "the control plane cannot route to the pod network"},
	{[]string{"dial tcp ", "connect: connection timed out"}, findings.ConnectTimeout, "the API server's connection to the backend was never answered"},
	{[]string{"dial tcp ", "i/o timeout"}, findings.ConnectTimeout, "the API server's connection to the backend was never answered"},
	{[]string{"request canceled while waiting for connection"}, findings.ConnectTimeout, "the API server's connection to the backend was never answered"},
	{[]string{"TLS handshake timeout"}, findings.HandshakeTimeout, "the TLS handshake did not complete in time"},
	{[]string{"context deadline exceeded"}, findings.WebhookTimeout, "the call exceeded the webhook's timeoutSeconds"},
	{[]string{"Client.Timeout exceeded"}, findings.WebhookTimeout, "the call exceeded the webhook's timeoutSeconds"},
	{[]string{"i/o timeout"}, findings.WebhookTimeout, "the backend did not answer in time"},
	{[]string{"http: server gave HTTP response to HTTPS client"}, findings.NotTheWebhook, "something that speaks plain HTTP answers instead of the webhook"},
	{[]string{"first record does not look like a TLS handshake"}, findings.NotTheWebhook, "something that does not speak TLS answers instead of the webhook"},
	{[]string{"EOF"}, findings.NotTheWebhook, "the backend closed the connection without an answer (a sidecar or proxy in front of the webhook)"},
	{[]string{"tls: "}, findings.TLSHandshakeFailed, "the TLS handshake failed"},
	{[]string{"x509: "}, findings.TLSHandshakeFailed, "the serving certificate does not verify"},
}

// answers maps the API server's texts for a webhook that answered, but
// wrongly, to a failure class: the cause starts with the prefix (matched
// before causes, as what follows may quote the webhook's own answer, which
// may hold any text). Texts of a v1.34.4 API server.
var answers = []struct {
	prefix  string
	class   findings.Class
	meaning string
}{
	{"received invalid webhook response: expected response.uid=", findings.InvalidResponse, "the webhook answered with another uid than the request's (response.uid must be request.uid)"},
	{"received invalid webhook response: ", findings.InvalidResponse, "the webhook's answer is not an AdmissionReview the API server accepts"},
	{"the server could not find the requested resource", findings.WrongPath, "the webhook's server answered HTTP 404: the configuration's path is not one it serves"},
	{"an error on the server (", findings.ServerError, "the webhook's server answered HTTP 5xx"},
}

// RejectionClass is the class the labels of one series of
// apiserver_admission_webhook_rejection_count name, when they name one
// (as a v1.34.4 API server writes them):
//   - error_type="calling_webhook_error" with the webhook's own HTTP status
//     as rejection_code: "404" is WrongPath, "500" ServerError (also
//     recorded, rarely, when the API server cannot build its client for
//     the webhook: an InvalidConfiguration the object checks name; "503" is
//     also what the API server records for every call that got no usable
//     answer: a timeout, no endpoints, an invalid response, so it names
//     none);
//   - error_type="apiserver_internal_error" with type="admit" (a mutating
//     webhook) and rejection_code "0": the API server could not use the
//     webhook's answer itself, its patch (PatchDoesNotApply; the same
//     label set also counts a dryRun write refused for a webhook with side
//     effects, which hookscope's review probe never sends).
//
// Empty: the labels say only that calls fail, or are no failure.
func RejectionClass(errorType, rejectionCode, webhookType string) findings.Class {
	switch {
	case errorType == "calling_webhook_error" && rejectionCode == "404":
		return findings.WrongPath
	case errorType == "calling_webhook_error" && rejectionCode == "500":
		return findings.ServerError
	case errorType == "apiserver_internal_error" && rejectionCode == "0" && webhookType == "admit":
		return findings.PatchDoesNotApply
	}
	return ""
}

// ParseWebhookFailure finds the API server's report of a failed webhook
// call in msg: an Event message, a client error or an API server log line
// (plain or klog structured). It returns false when msg has none, and for
// an explicit denial ("admission webhook "x" denied the request"), which is
// the webhook working. Only the first 64 KiB of msg are read.
//
// A fail-open call writes two log lines, "Failed calling webhook, failing
// open NAME: ..." and `"Unhandled Error" err="failed calling webhook ...`;
// both parse with FailOpen set, so count one of them, not both.
func ParseWebhookFailure(msg string) (WebhookFailure, bool) {
	if len(msg) > maxScan {
		msg = msg[:maxScan]
	}
	tail, failOpen, ok := findCall(msg)
	if !ok {
		return WebhookFailure{}, false
	}
	wf := WebhookFailure{FailOpen: failOpen}
	tail = strings.TrimPrefix(tail, markCalling)
	end := strings.IndexByte(tail, '"')
	if end <= 0 || end > maxName {
		return WebhookFailure{}, false
	}
	wf.Webhook = tail[:end]
	if strings.ContainsAny(wf.Webhook, " \t\\") {
		return WebhookFailure{}, false
	}
	rest := tail[end+1:]
	switch {
	case strings.HasPrefix(rest, ": "):
		rest = rest[2:]
	case strings.HasPrefix(rest, "; "):
		rest = rest[2:] // "; no further details available"
	default:
		return WebhookFailure{}, false
	}
	rest = strings.TrimPrefix(rest, markCallPrefix)
	// Post "URL": cause
	if sp := strings.IndexByte(rest, ' '); sp > 0 && sp < 8 && strings.HasPrefix(rest[sp:], ` "`) {
		u := rest[sp+2:]
		if q := strings.Index(u, `": `); q >= 0 {
			wf.URL, rest = u[:q], u[q+3:]
		}
	}
	wf.Class, wf.Detail = classify(strings.TrimSpace(rest))
	return wf, true
}

// findCall finds the first report of a failed call in msg. It returns the
// report's one line, starting at `failed calling webhook "` (unescaped when
// msg is a klog key="value"), and whether the text before it says the API
// server failed open. It returns false when msg has no report, or is a
// denial that quotes one.
func findCall(msg string) (tail string, failOpen, ok bool) {
	i := strings.Index(msg, markCalling)
	escaped := false
	if j := strings.Index(msg, markCallingEscaped); j >= 0 && (i < 0 || j < i) {
		i, escaped = j, true
	}
	if i < 0 {
		return "", false, false
	}
	before, tail := msg[:i], msg[i:]
	// A denial whose message quotes a failed call is still a denial.
	if d := strings.Index(before, markDenied); d >= 0 && strings.Contains(before[:d], `admission webhook "`) {
		return "", false, false
	}
	// One line only: a log file handed over whole parses as its first hit.
	if nl := strings.IndexByte(tail, '\n'); nl >= 0 {
		tail = tail[:nl]
	}
	if escaped {
		tail = unescapeKlogValue(tail)
		failOpen = strings.HasSuffix(before, markUnhandledError)
	}
	if k := strings.LastIndex(before, markFailedCalling); k >= 0 && strings.HasPrefix(before[k+len(markFailedCalling):], markFailingOpen) {
		failOpen = true
	}
	return tail, failOpen, true
}

// classify returns the class of cause (classOf) and the detail: cause,
// prefixed with the class's meaning when one matched, cut to maxDetail
// bytes on a rune boundary.
func classify(cause string) (findings.Class, string) {
	class, meaning := classOf(cause)
	detail := cause
	if class != "" {
		detail = meaning + ": " + cause
	}
	if len(detail) > maxDetail {
		cut := maxDetail
		for cut > 0 && !utf8.RuneStart(detail[cut]) {
			cut--
		}
		detail = detail[:cut]
	}
	return class, detail
}

// classOf is the class and meaning of the first entry of answers whose
// prefix cause starts with, else of the first entry of causes that cause
// matches; empty when none does.
func classOf(cause string) (findings.Class, string) {
	for _, a := range answers {
		if strings.HasPrefix(cause, a.prefix) {
			return a.class, a.meaning
		}
	}
	for _, c := range causes {
		if containsAll(cause, c.all) {
			return c.class, c.meaning
		}
	}
	return "", ""
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// unescapeKlogValue returns the quoted klog value s starts in, up to its
// closing quote, with \" and \\ unescaped.
func unescapeKlogValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(s[i])
			}
		case c == '"':
			return b.String() // end of the value
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
