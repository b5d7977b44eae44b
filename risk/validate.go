package risk

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hookscope/hookscope/callout"
)

// maxSelectorBytes is the size (keys, operators and values) past which a
// selector is reported as generated rather than written. etcd refuses
// objects over 1.5 MiB by default, so a configuration holding a selector
// a third of that is one growth step from being unwritable (a caBundle
// rotation then fails too), and the API server evaluates the selector on
// every request the rules match. The 10 000-term selectors of
// TestAnalyzeHugeSelectorIsQuick (about 300 KiB) stay under it.
const maxSelectorBytes = 512 << 10

// validate records in h.invalid every way h's configuration is malformed,
// each as its own InvalidConfiguration risk. Only a selector that does not
// parse makes h unevaluable; the other problems leave its rules and
// selectors meaningful, so the rest of the analysis still runs.
func (h *hook) validate() {
	h.checkTimeout()
	h.checkFailurePolicy()
	cc := h.GetClientConfig()
	for _, p := range callout.ClientConfigProblems(cc) {
		h.checkClientConfig(cc, p)
	}
	h.checkSelectors()
}

// invalidate records one InvalidConfiguration risk of h.
func (h *hook) invalidate(sev Severity, detail, fix string) {
	h.invalid = append(h.invalid, h.risk(InvalidConfiguration, sev, detail, fix))
}

func (h *hook) checkTimeout() {
	t := h.GetTimeoutSeconds()
	if t == nil || *t >= 1 && *t <= 30 {
		return
	}
	h.invalidate(Critical, fmt.Sprintf("webhook %s has timeoutSeconds %d: the API server will reject this configuration (allowed 1 to 30).", h.ref, *t),
		"set timeoutSeconds between 1 and 30; a few seconds is enough for most webhooks")
}

func (h *hook) checkFailurePolicy() {
	fp := h.GetFailurePolicy()
	if fp == nil || *fp == admissionv1.Fail || *fp == admissionv1.Ignore {
		return
	}
	h.invalidate(Critical, fmt.Sprintf("webhook %s has failurePolicy %q: the API server will reject this configuration (Fail or Ignore); hookscope treats it as Fail.", h.ref, *fp),
		"set failurePolicy to Fail or Ignore")
}

// checkClientConfig records problem p of h's clientConfig cc, in the
// operator's words, with its fix.
func (h *hook) checkClientConfig(cc admissionv1.WebhookClientConfig, p callout.ConfigProblem) {
	const rejected = "the API server will reject this configuration, and a stored one cannot be called"
	switch p.Field {
	case "clientConfig":
		what := "neither clientConfig.url nor clientConfig.service"
		if cc.URL != nil {
			what = "both clientConfig.url and clientConfig.service"
		}
		h.invalidate(Critical, fmt.Sprintf("webhook %s has %s: %s, so every write it matches fails.", h.ref, what, rejected),
			"set exactly one of clientConfig.service (namespace, name, port) or clientConfig.url")
	case "service.name", "service.namespace", "service.port":
		// The API server checks only that the name and namespace are not
		// empty, so it stores names no Service can have.
		field := strings.TrimPrefix(p.Field, "service.")
		what := map[string]string{"name": "a Service name (a DNS-1035 label)", "namespace": "a namespace name (a DNS-1123 label)", "port": "a port"}[field]
		h.invalidate(Critical,
			fmt.Sprintf("webhook %s has clientConfig.service.%s %q, which is not %s: %s. No such Service can exist, so every call fails and %s.",
				h.ref, field, p.Value, what, strings.Join(p.Why, "; "), h.whileDown()),
			fmt.Sprintf("set clientConfig.service.%s to the %s of the webhook's Service", field, field))
	case "url":
		if p.Value == "" {
			h.invalidate(Critical, fmt.Sprintf("webhook %s has a clientConfig.url that does not parse (%s): %s, so %s.", h.ref, p.Why[0], rejected, h.whileDown()),
				"set clientConfig.url to https://host[:port][/path]")
			return
		}
		h.invalidate(Critical, fmt.Sprintf("webhook %s has clientConfig.url %q, but %s: %s, so %s.",
			h.ref, p.Value, list(p.Why, len(p.Why)), rejected, h.whileDown()),
			"set clientConfig.url to https://host[:port][/path], without user information, query or fragment")
	case "caBundle":
		// The API server loads a non-empty caBundle as the only roots of
		// the webhook's TLS client, and building that client fails when no
		// certificate in it parses, so every call fails.
		h.invalidate(Critical,
			fmt.Sprintf("webhook %s has a clientConfig.caBundle of %s that holds no PEM certificate%s: the API server cannot load it, so every call fails and %s.",
				h.ref, p.Value, caBundleHint(cc.CABundle), h.whileDown()),
			"set clientConfig.caBundle to the PEM of the CA that signs the serving certificate (-----BEGIN CERTIFICATE-----, base64-encoded once in YAML); with cert-manager, check the cert-manager.io/inject-ca-from annotation and the cainjector")
	}
}

// caBundleHint names the two usual mistakes: PEM encoded in base64 once
// more, and a DER certificate.
func caBundleHint(ca []byte) string {
	if dec, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(ca))); err == nil && bytes.Contains(dec, []byte("-----BEGIN CERTIFICATE-----")) {
		return " (it is base64 of a PEM certificate: encoded once too often)"
	}
	if _, err := x509.ParseCertificate(ca); err == nil {
		return " (it is a DER certificate; the API server wants PEM)"
	}
	return ""
}

// checkSelectors parses both selectors as the API server does. One that does
// not parse makes h unevaluable; a huge one is reported and still
// evaluated, since the API server applies it.
func (h *hook) checkSelectors() {
	// The API server's accessor parses with LabelSelectorAsSelector and
	// wraps the error so; the detail always has.
	var err error
	if h.nsSel, err = metav1.LabelSelectorAsSelector(h.GetNamespaceSelector()); err != nil {
		err = fmt.Errorf("parsing namespaceSelector: converting label selector: %w", err)
	} else if h.objSel, err = metav1.LabelSelectorAsSelector(h.GetObjectSelector()); err != nil {
		err = fmt.Errorf("parsing objectSelector: converting label selector: %w", err)
	}
	if err != nil {
		h.unevaluable = true
		h.nsSel, h.objSel = nil, nil
		h.invalidate(Critical, fmt.Sprintf("webhook %s cannot be evaluated (%v): the API server will reject this configuration, and if one is stored, every request its rules match fails with an internal error whatever its failurePolicy.", h.ref, err),
			"fix the selector: keys and values must be valid label names and values, In/NotIn need values, Exists/DoesNotExist take none")
		return
	}
	h.checkSize("namespaceSelector", h.GetNamespaceSelector())
	h.checkSize("objectSelector", h.GetObjectSelector())
}

func (h *hook) checkSize(field string, s *metav1.LabelSelector) {
	size, terms := selectorSize(s)
	if size <= maxSelectorBytes {
		return
	}
	h.invalidate(Warning,
		fmt.Sprintf("webhook %s has a %s of %d KiB in %d terms: it was generated, not written; the API server evaluates it on every request the webhook's rules match, and a configuration this size is close to the 1.5 MiB etcd stores by default, past which no update to it (a caBundle rotation included) can be written.",
			h.ref, field, size>>10, terms),
		fmt.Sprintf("select by a label instead of listing names: label what the %s lists (e.g. the namespaces to exclude) and match that label with one Exists or DoesNotExist requirement", field))
}

// selectorSize is the size of a selector's keys, operators and values,
// counted without encoding it, and its terms: each matchLabels entry, and
// each value of a matchExpressions requirement (one for those without).
func selectorSize(s *metav1.LabelSelector) (size, terms int) {
	if s == nil {
		return 0, 0
	}
	for k, v := range s.MatchLabels {
		size += len(k) + len(v)
		terms++
	}
	for _, r := range s.MatchExpressions {
		size += len(r.Key) + len(r.Operator)
		terms += max(len(r.Values), 1)
		for _, v := range r.Values {
			size += len(v)
		}
	}
	return size, terms
}
