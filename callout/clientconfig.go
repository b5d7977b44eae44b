package callout

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strconv"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ConfigProblem is one way a webhook's clientConfig cannot be called as
// written. The API server stores some of these (it checks only that a
// Service's name and namespace are not empty), and every call of such a
// webhook then fails.
type ConfigProblem struct {
	// Field is "clientConfig" (not exactly one of service and url),
	// "service.name", "service.namespace", "service.port", "url" or
	// "caBundle".
	Field string
	// Value is the field as written: a URL without its password, and
	// empty when it does not parse (Why then holds the parser's error); a
	// caBundle's size.
	Value string
	// Why is what is wrong with it, one entry per rule it breaks.
	Why []string
}

// ClientConfigProblems applies the API server's rules for a webhook's
// clientConfig, and the one its TLS client adds (a non-empty caBundle
// must hold a PEM certificate). Empty when every call can be made.
func ClientConfigProblems(cc admissionv1.WebhookClientConfig) []ConfigProblem {
	var out []ConfigProblem
	add := func(field, value string, why ...string) {
		if len(why) > 0 {
			out = append(out, ConfigProblem{Field: field, Value: value, Why: why})
		}
	}
	switch {
	case cc.Service != nil && cc.URL != nil:
		add("clientConfig", "", "it has both a service and a url")
	case cc.Service == nil && cc.URL == nil:
		add("clientConfig", "", "it has neither a service nor a url")
	}
	if s := cc.Service; s != nil {
		add("service.namespace", s.Namespace, validation.IsDNS1123Label(s.Namespace)...)
		add("service.name", s.Name, validation.IsDNS1035Label(s.Name)...)
		if s.Port != nil && (*s.Port < 1 || *s.Port > 65535) {
			add("service.port", strconv.Itoa(int(*s.Port)), "it is not a port (1 to 65535)")
		}
	}
	if cc.URL != nil {
		value, why := urlProblems(*cc.URL)
		add("url", value, why...)
	}
	if len(cc.CABundle) > 0 && !x509.NewCertPool().AppendCertsFromPEM(cc.CABundle) {
		add("caBundle", fmt.Sprintf("%d bytes", len(cc.CABundle)), "it holds no PEM certificate")
	}
	return out
}

// urlProblems: a webhook URL is https, with a host, and no user
// information, query or fragment. value is the URL without its password,
// and empty when it does not parse, since problems end up in logs.
func urlProblems(raw string) (value string, why []string) {
	u, err := url.Parse(raw)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // without the URL, which may hold a password
		}
		return "", []string{err.Error()}
	}
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
	return u.Redacted(), why
}
