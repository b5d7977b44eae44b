//go:build linux

package scenarios

import (
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"

	"github.com/hookscope/hookscope/chaos"
)

// Certificates the API server's client rejects for their quality, not
// their dates or their authority: the caBundle is right, the certificate
// must be reissued. The texts are the API server's (v1.34.4, Go 1.26).

// TestSHA1ServingCertificate: the webhook's own CA signs the serving
// certificate with SHA-1. The API server words it as an unknown authority;
// the agent must not send the operator to the caBundle.
func TestSHA1ServingCertificate(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "serving certificate signed with SHA-1",
		callOutcome:   "rejected",
		expectedClass: "InsecureSignature",
		spec:          chaos.WebhookSpec{Name: "sha1-cert", FailurePolicy: admissionv1.Fail},
		inject:        serve((*chaos.Webhook).SHA1Certificate),
		wantError:     `x509: certificate signed by unknown authority (possibly because of "x509: cannot verify signature: insecure algorithm ECDSA-SHA1" while trying to verify candidate authority certificate "hookscope-chaos-sha1-cert")`,
		effect:        "writes rejected",
		evidence:      `the served certificate "CN=sha1-cert-webhook.chaos-sha1-cert.svc" is signed with ECDSA-SHA1 by "CN=hookscope-chaos-sha1-cert" (in the caBundle)`,
		fix:           "with a SHA-256 signature",
		remediation:   "serve a certificate signed with SHA-256",
		remediate:     serveValidCertificate,
	}.feature())
}

// TestSHA1RSAFromIntermediate: an RSA intermediate signs the serving
// certificate with SHA1-RSA, and the server sends the intermediate (the
// text of kubernetes/kubernetes#110530). The agent names the leaf and its
// signer.
func TestSHA1RSAFromIntermediate(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "serving certificate signed with SHA1-RSA by an intermediate",
		callOutcome:   "rejected",
		expectedClass: "InsecureSignature",
		spec:          chaos.WebhookSpec{Name: "sha1-rsa", FailurePolicy: admissionv1.Fail},
		inject:        serve((*chaos.Webhook).SHA1RSAIntermediateCertificate),
		wantError:     `x509: certificate signed by unknown authority (possibly because of "x509: cannot verify signature: insecure algorithm SHA1-RSA" while trying to verify candidate authority certificate "hookscope-chaos-rsa-intermediate-sha1-rsa")`,
		effect:        "writes rejected",
		evidence:      `is signed with SHA1-RSA by "CN=hookscope-chaos-rsa-intermediate-sha1-rsa" (served in the chain)`,
		fix:           "with a SHA-256 signature",
		remediation:   "serve a certificate signed with SHA-256",
		remediate:     serveValidCertificate,
	}.feature())
}

// TestCommonNameOnlyCertificate: the serving certificate names the Service
// only in its Common Name. The name is right, so it is not a hostname
// mismatch: the certificate lacks subjectAltName.
func TestCommonNameOnlyCertificate(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "serving certificate without subjectAltName (Common Name only)",
		callOutcome:   "rejected",
		expectedClass: "LegacyCommonName",
		spec:          chaos.WebhookSpec{Name: "cn-only", FailurePolicy: admissionv1.Fail},
		inject:        serve((*chaos.Webhook).CommonNameOnlyCertificate),
		wantError:     "x509: certificate relies on legacy Common Name field, use SANs instead",
		effect:        "writes rejected",
		evidence:      `the served certificate "CN=cn-only-webhook.chaos-cn-only.svc" names cn-only-webhook.chaos-cn-only.svc only in its Common Name and has no subjectAltName`,
		fix:           "with the name cn-only-webhook.chaos-cn-only.svc in subjectAltName",
		remediation:   "serve a certificate with the name in subjectAltName",
		remediate:     serveValidCertificate,
	}.feature())
}

// TestURLWebhookCommonNameOnly: a webhook that calls a URL holding the
// pod's address, served a certificate with that address only in its Common
// Name.
func TestURLWebhookCommonNameOnly(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "URL webhook: certificate without subjectAltName (Common Name only)",
		callOutcome:   "rejected",
		expectedClass: "LegacyCommonName",
		spec:          chaos.WebhookSpec{Name: "url-cn-only", FailurePolicy: admissionv1.Fail, URL: true},
		inject:        serve((*chaos.Webhook).CommonNameOnlyCertificate),
		wantError:     "x509: certificate relies on legacy Common Name field, use SANs instead",
		effect:        "writes rejected",
		fix:           "in subjectAltName (an IP SAN for an address)",
		remediation:   "serve a certificate with the address as an IP SAN",
		remediate:     serveValidCertificate,
	}.feature())
}

// TestIncompleteChain: an intermediate of the webhook's CA signs the
// serving certificate, and the server sends the leaf alone. It is an
// unknown authority (nothing links the leaf to the caBundle's root); the
// agent names the missing issuer and both fixes, since it cannot know
// whether that issuer is an intermediate.
func TestIncompleteChain(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "served chain without its intermediate",
		callOutcome:   "rejected",
		expectedClass: "UnknownAuthority",
		spec:          chaos.WebhookSpec{Name: "no-intermediate", FailurePolicy: admissionv1.Fail},
		inject:        serve((*chaos.Webhook).IncompleteChainCertificate),
		wantError:     "x509: certificate signed by unknown authority",
		effect:        "writes rejected",
		evidence:      `issued by "CN=hookscope-chaos-intermediate-no-intermediate", which the server does not send and is not in the caBundle: if "CN=hookscope-chaos-intermediate-no-intermediate" is an intermediate CA, serve it after the leaf (the full chain)`,
		remediation:   "serve the full chain",
		remediate:     serveValidCertificate,
	}.feature())
}
