package risk

import (
	"fmt"

	"github.com/hookscope/hookscope/callout"
)

// The risks of a caBundle that cert-manager's cainjector is to write
// (callout.CAInjection: the cert-manager.io/inject-ca-from annotations).
const (
	// CANotInjected: the caBundle is empty and cainjector has not written
	// it yet: the API server verifies the serving certificate against its
	// system roots, and every call fails ("x509: certificate signed by
	// unknown authority"). Critical for a call-out that fails closed, a
	// warning for one that fails open.
	CANotInjected Kind = "CANotInjected"
	// CAInjectionSourceNotReady: the caBundle holds a CA, but the
	// Certificate cainjector injects it from does not exist or is not
	// Ready: cainjector writes nothing new, so a serving certificate
	// issued by another CA (a renewed or re-created issuer) fails to
	// verify. A warning.
	CAInjectionSourceNotReady Kind = "CAInjectionSourceNotReady"
)

// Certificates reads cert-manager's Certificates: found is false for one
// that does not exist. A nil Certificates means they cannot be read (no
// cert-manager CRD, not listed yet, or no permission).
type Certificates func(namespace, name string) (c callout.Certificate, found bool)

// CAInjections judges the call-outs whose caBundle cainjector is to write:
// CANotInjected for an empty one, CAInjectionSourceNotReady for one whose
// Certificate is missing or not Ready. certs may be nil; the details then
// do not say how the Certificate is. Call-outs that do not verify the
// serving certificate (insecureSkipTLSVerify) are not judged. The result
// is sorted like Analyze's.
func CAInjections(ws []callout.Webhook, certs Certificates) []Risk {
	var out []Risk
	for _, w := range ws {
		if w.CAInjection == nil || w.InsecureSkipTLSVerify {
			continue
		}
		state, ready := certificateState(*w.CAInjection, certs)
		switch {
		case len(w.CABundle) == 0:
			out = append(out, notInjected(w, state))
		case !ready && state != "":
			out = append(out, Risk{Webhook: w.Ref, Kind: CAInjectionSourceNotReady, Severity: Warning,
				Detail: fmt.Sprintf("%s: cert-manager's cainjector writes its caBundle from %s, and %s: cainjector writes nothing new, so a serving certificate from another CA (a re-created issuer) will not verify and %s.",
					calloutName(w), w.CAInjection.Source(), state, whenUncallable(w)),
				Fix: certificateFix(*w.CAInjection)})
		}
	}
	sortRisks(out)
	return out
}

// notInjected is the risk of an empty caBundle cainjector is to write.
func notInjected(w callout.Webhook, state string) Risk {
	sev := Critical
	if !w.IsAPIService() && !w.IsConversion() && !w.FailsClosed() {
		sev = Warning
	}
	why := "check that cainjector runs (the cert-manager-cainjector Deployment: its logs say what it injects)"
	if state != "" {
		why = state + "; " + why
	}
	return Risk{Webhook: w.Ref, Kind: CANotInjected, Severity: sev,
		Detail: fmt.Sprintf("%s: its caBundle is empty, left to cert-manager's cainjector, which has not written the CA of %s: the API server verifies the serving certificate against its system roots, every call fails (x509: certificate signed by unknown authority) and %s; %s.",
			calloutName(w), w.CAInjection.Source(), whenUncallable(w), why),
		Fix: certificateFix(*w.CAInjection) + "; once cainjector writes the CA into " + caBundleField(w) + ", calls verify with no other change"}
}

// certificateState says how the Certificate an injection names is, when
// it names one and it can be read: "" when that is not known, and ready
// when it exists and is Ready.
func certificateState(inj callout.CAInjection, certs Certificates) (state string, ready bool) {
	ns, name, ok := inj.CertificateRef()
	if !ok || certs == nil {
		return "", false
	}
	c, found := certs(ns, name)
	switch {
	case !found:
		return "Certificate " + inj.Certificate + " does not exist", false
	case c.Ready.Status == "True":
		return "Certificate " + inj.Certificate + " is Ready", true
	case c.Ready.Status == "":
		return "Certificate " + inj.Certificate + " has no Ready condition yet (not issued)", false
	}
	state = "Certificate " + inj.Certificate + " is not Ready"
	if c.Ready.Reason != "" {
		state += " (" + c.Ready.Reason
		if c.Ready.Message != "" {
			state += ": " + c.Ready.Message
		}
		state += ")"
	}
	return state, false
}

// certificateFix is what gets cainjector a CA to write from the source.
func certificateFix(inj callout.CAInjection) string {
	switch {
	case inj.Certificate != "":
		ns, name, _ := inj.CertificateRef()
		return fmt.Sprintf("make Certificate %s Ready (kubectl -n %s describe certificate %s: its issuer and its Secret) and check that cert-manager's cainjector runs and injects into this kind of object", inj.Certificate, ns, name)
	case inj.Secret != "":
		return "check that Secret " + inj.Secret + " holds ca.crt and carries cert-manager.io/allow-direct-injection: \"true\", and that cert-manager's cainjector runs"
	}
	return "check that cert-manager's cainjector runs and may read the API server's CA"
}
