package risk

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
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
	if (cc.URL == nil) == (cc.Service == nil) {
		what := "neither clientConfig.url nor clientConfig.service"
		if cc.URL != nil {
			what = "both clientConfig.url and clientConfig.service"
		}
		h.invalidate(Critical, fmt.Sprintf("webhook %s has %s: the API server will reject this configuration, and a stored one cannot be called, so every write it matches fails.", h.ref, what),
			"set exactly one of clientConfig.service (namespace, name, port) or clientConfig.url")
	}
	if cc.Service != nil {
		h.checkService(cc.Service)
	}
	if cc.URL != nil {
		h.checkURL(*cc.URL)
	}
	h.checkCABundle(cc.CABundle)
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

// checkService: the API server only checks that the Service's name and
// namespace are not empty, so it stores names no Service can have; every
// call then fails.
func (h *hook) checkService(s *admissionv1.ServiceReference) {
	for _, f := range []struct {
		field, value, what string
		errs               []string
	}{
		{"name", s.Name, "a Service name (a DNS-1035 label)", validation.IsDNS1035Label(s.Name)},
		{"namespace", s.Namespace, "a namespace name (a DNS-1123 label)", validation.IsDNS1123Label(s.Namespace)},
	} {
		if len(f.errs) == 0 {
			continue
		}
		h.invalidate(Critical,
			fmt.Sprintf("webhook %s has clientConfig.service.%s %q, which is not %s: %s. No such Service can exist, so every call fails and %s.",
				h.ref, f.field, f.value, f.what, strings.Join(f.errs, "; "), h.whileDown()),
			fmt.Sprintf("set clientConfig.service.%s to the %s of the webhook's Service", f.field, f.field))
	}
}

// checkURL applies the API server's rules for a webhook URL (https, a
// host, no user information, query or fragment). The URL is shown
// without its password, and not at all when it does not parse, since the
// detail ends up in logs.
func (h *hook) checkURL(raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // without the URL, which may hold a password
		}
		h.invalidate(Critical, fmt.Sprintf("webhook %s has a clientConfig.url that does not parse (%v): the API server will reject this configuration, and a stored one cannot be called, so %s.", h.ref, err, h.whileDown()),
			"set clientConfig.url to https://host[:port][/path]")
		return
	}
	var why []string
	if u.Scheme != "https" {
		why = append(why, fmt.Sprintf("its scheme is %q, not https", u.Scheme))
	}
	if u.Host == "" {
		why = append(why, "it has no host")
	}
	if u.User != nil {
		why = append(why, "it carries user information")
	}
	if u.RawQuery != "" {
		why = append(why, "it has a query")
	}
	if u.Fragment != "" {
		why = append(why, "it has a fragment")
	}
	if len(why) == 0 {
		return
	}
	h.invalidate(Critical, fmt.Sprintf("webhook %s has clientConfig.url %q, but %s: the API server will reject this configuration, and a stored one cannot be called, so %s.",
		h.ref, u.Redacted(), list(why, len(why)), h.whileDown()),
		"set clientConfig.url to https://host[:port][/path], without user information, query or fragment")
}

// checkCABundle: the API server loads a non-empty caBundle as the only
// roots of the webhook's TLS client, and building that client fails when
// no certificate in it parses (client-go's AppendCertsFromPEM), so every
// call fails.
func (h *hook) checkCABundle(ca []byte) {
	if len(ca) == 0 || x509.NewCertPool().AppendCertsFromPEM(ca) {
		return
	}
	h.invalidate(Critical,
		fmt.Sprintf("webhook %s has a clientConfig.caBundle of %d bytes that holds no PEM certificate%s: the API server cannot load it, so every call fails and %s.",
			h.ref, len(ca), caBundleHint(ca), h.whileDown()),
		"set clientConfig.caBundle to the PEM of the CA that signs the serving certificate (-----BEGIN CERTIFICATE-----, base64-encoded once in YAML); with cert-manager, check the cert-manager.io/inject-ca-from annotation and the cainjector")
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
