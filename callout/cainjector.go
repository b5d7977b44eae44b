package callout

import "strings"

// The annotations that ask cert-manager's cainjector to write a
// configuration's caBundle: on a webhook configuration, a CRD (its
// conversion webhook) or an APIService. Until cainjector has written it,
// a caBundle a chart leaves empty makes the API server verify the serving
// certificate against its system roots, and every call fails ("x509:
// certificate signed by unknown authority").
const (
	// AnnotationInjectCAFrom names a Certificate, "namespace/name", whose
	// CA (its Secret's ca.crt) is injected.
	AnnotationInjectCAFrom = "cert-manager.io/inject-ca-from"
	// AnnotationInjectCAFromSecret names a Secret, "namespace/name",
	// whose ca.crt is injected.
	AnnotationInjectCAFromSecret = "cert-manager.io/inject-ca-from-secret"
	// AnnotationInjectAPIServerCA, "true", injects the API server's own CA.
	AnnotationInjectAPIServerCA = "cert-manager.io/inject-apiserver-ca"
)

// CAInjection is what a configuration asks cert-manager's cainjector to
// write into its caBundle.
type CAInjection struct {
	// Certificate is the Certificate whose CA is injected,
	// "namespace/name" (AnnotationInjectCAFrom).
	Certificate string `json:"certificate,omitempty"`
	// Secret is the Secret whose ca.crt is injected, "namespace/name"
	// (AnnotationInjectCAFromSecret); hookscope never reads it.
	Secret string `json:"secret,omitempty"`
	// APIServerCA: the API server's own CA is injected
	// (AnnotationInjectAPIServerCA).
	APIServerCA bool `json:"apiServerCA,omitempty"`
}

// CAInjectionOf reads a configuration's annotations: nil when none asks
// cainjector for its caBundle.
func CAInjectionOf(annotations map[string]string) *CAInjection {
	c := CAInjection{
		Certificate: strings.TrimSpace(annotations[AnnotationInjectCAFrom]),
		Secret:      strings.TrimSpace(annotations[AnnotationInjectCAFromSecret]),
		APIServerCA: strings.EqualFold(strings.TrimSpace(annotations[AnnotationInjectAPIServerCA]), "true"),
	}
	if c == (CAInjection{}) {
		return nil
	}
	return &c
}

// Source names what cainjector injects from, as an operator reads it:
// `Certificate ns/name (annotation cert-manager.io/inject-ca-from)`.
func (c CAInjection) Source() string {
	switch {
	case c.Certificate != "":
		return "Certificate " + c.Certificate + " (annotation " + AnnotationInjectCAFrom + ")"
	case c.Secret != "":
		return "Secret " + c.Secret + " (annotation " + AnnotationInjectCAFromSecret + ")"
	}
	return "the API server's own CA (annotation " + AnnotationInjectAPIServerCA + ")"
}

// CertificateRef splits Certificate into its namespace and name; ok is
// false when it names none, or not as namespace/name.
func (c CAInjection) CertificateRef() (namespace, name string, ok bool) {
	namespace, name, ok = strings.Cut(c.Certificate, "/")
	return namespace, name, ok && namespace != "" && name != "" && !strings.Contains(name, "/")
}

// Certificate is a cert-manager Certificate as cainjector's source: its
// Ready condition (Status "" while it has none yet). cainjector injects
// the CA of the Secret a Ready Certificate was issued into.
type Certificate struct {
	Ready Condition `json:"ready"`
}
