package callout

import (
	admissionv1 "k8s.io/api/admissionregistration/v1"
)

// The kinds of call-out, as Ref.Kind says them: an admission webhook of
// either kind, or an aggregated API (an APIService the API server proxies
// to a Service: metrics-server's v1beta1.metrics.k8s.io).
const (
	KindValidating = "Validating"
	KindMutating   = "Mutating"
	KindAPIService = "APIService"
)

// APIService is an aggregated API as its APIService object writes it: the
// API server proxies requests for Group/Version, and its discovery, to
// the Service. An APIService with no Service is served by the API server
// itself and is no call-out.
type APIService struct {
	Name           string // <version>.<group>, e.g. v1beta1.metrics.k8s.io
	Group, Version string
	Service        *ServiceRef
	CABundle       []byte
	// InsecureSkipTLSVerify: the API server does not verify the serving
	// certificate.
	InsecureSkipTLSVerify bool
	// Available is its Available condition as the API server's
	// availability check last set it.
	Available Condition
	// CAInjection is what its annotations ask cert-manager's cainjector
	// to write into its caBundle; nil: nothing.
	CAInjection *CAInjection
}

// Condition is a status condition.
type Condition struct {
	Status  string `json:"status"` // "True", "False", "Unknown", or "" when none is set
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// GroupVersion is Group/Version, as discovery errors name it.
func (a APIService) GroupVersion() string { return a.Group + "/" + a.Version }

// apiServiceTimeout is how long the API server's aggregator waits for an
// aggregated API's discovery (its availability check allows 5 s).
const apiServiceTimeout = 5

// Hook is the APIService as the one view of call-outs: a clientConfig (its
// Service, on port 443 unless it says, and its caBundle), and no way to
// fail open.
func (a APIService) Hook() Hook {
	fail, timeout := admissionv1.Fail, int32(apiServiceTimeout)
	h := Hook{Ref: Ref{Kind: KindAPIService, Configuration: a.Name, Name: a.Name}, FailurePolicy: &fail, TimeoutSeconds: &timeout}
	h.ClientConfig.CABundle = a.CABundle
	if a.Service != nil {
		port := a.Service.Port
		if port == 0 {
			port = 443
		}
		h.ClientConfig.Service = &admissionv1.ServiceReference{Namespace: a.Service.Namespace, Name: a.Service.Name, Port: &port}
	}
	h.InsecureSkipTLSVerify = a.InsecureSkipTLSVerify
	h.CAInjection = a.CAInjection
	return h
}

// KindConversion is a CRD's conversion webhook: the API server calls it to
// convert the custom resources between the CRD's versions.
const KindConversion = "Conversion"

// conversionTimeout is the API server's fixed wait for a conversion
// webhook (apiextensions-apiserver: 30 s).
const conversionTimeout = 30

// Conversion is a CRD whose conversion strategy is Webhook.
type Conversion struct {
	CRD      string // <plural>.<group>
	Group    string
	Kind     string
	Versions []string // served
	// ClientConfig is the webhook's (apiextensions' WebhookClientConfig
	// has the same fields as admission's).
	ClientConfig admissionv1.WebhookClientConfig
	// CAInjection is what the CRD's annotations ask cert-manager's
	// cainjector to write into the webhook's caBundle; nil: nothing.
	CAInjection *CAInjection
}

// Hook is the conversion webhook as the one view of call-outs: no way to
// fail open, the API server's fixed timeout.
func (c Conversion) Hook() Hook {
	fail, timeout := admissionv1.Fail, int32(conversionTimeout)
	h := Hook{Ref: Ref{Kind: KindConversion, Configuration: c.CRD, Name: c.CRD}, FailurePolicy: &fail, TimeoutSeconds: &timeout,
		ClientConfig: c.ClientConfig, CAInjection: c.CAInjection}
	if s := h.ClientConfig.Service; s != nil && s.Port == nil {
		withPort := *s // c's own ServiceReference stays as read
		withPort.Port = ptrTo(int32(443))
		h.ClientConfig.Service = &withPort
	}
	return h
}

func ptrTo[T any](v T) *T { return &v }
