package risk

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"time"

	"github.com/hookscope/hookscope/callout"
)

// CABundleExpiring: a CA certificate in a call-out's caBundle has expired
// or expires within the horizon. The API server verifies the serving
// certificate against the caBundle alone, so once no CA there is valid
// every call fails. Critical when no CA in the bundle stays valid past the
// horizon, a warning otherwise. Reported whatever the failurePolicy.
const CABundleExpiring Kind = "CABundleExpiring"

// CABundles judges the caBundle of every call-out in ws at now: a risk
// per call-out whose bundle holds a certificate that has expired or
// expires within horizon. A call-out with no caBundle (the API server
// verifies against the system roots), an APIService with
// insecureSkipTLSVerify and a bundle with no certificate that parses
// (reported as an invalid configuration) are not judged. next is the
// earliest time after now at which the result would change with nothing
// else changing (a CA enters the horizon or expires); zero when none
// will. The result is sorted like Analyze's.
func CABundles(ws []callout.Webhook, horizon time.Duration, now time.Time) (risks []Risk, next time.Time) {
	parsed := map[string][]*x509.Certificate{} // the webhooks of one configuration share theirs
	for _, w := range ws {
		if len(w.CABundle) == 0 || w.InsecureSkipTLSVerify {
			continue
		}
		cas, ok := parsed[string(w.CABundle)]
		if !ok {
			cas = bundleCertificates(w.CABundle)
			parsed[string(w.CABundle)] = cas
		}
		for _, c := range cas {
			for _, t := range []time.Time{c.NotAfter.Add(-horizon), c.NotAfter} {
				if t.After(now) && (next.IsZero() || t.Before(next)) {
					next = t
				}
			}
		}
		if r, ok := caBundleRisk(w, cas, horizon, now); ok {
			risks = append(risks, r)
		}
	}
	sortRisks(risks)
	return risks, next
}

// bundleCertificates are the certificates the API server loads from a
// caBundle, as x509.CertPool.AppendCertsFromPEM reads them: CERTIFICATE
// blocks without headers; blocks that do not parse are skipped.
func bundleCertificates(bundle []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for rest := bundle; len(rest) > 0; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" || len(b.Headers) != 0 {
			continue
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// caBundleRisk names the certificate of w's bundle that expires first
// among those that expire within horizon.
func caBundleRisk(w callout.Webhook, cas []*x509.Certificate, horizon time.Duration, now time.Time) (Risk, bool) {
	var ending []*x509.Certificate
	for _, c := range cas {
		if c.NotAfter.Before(now.Add(horizon)) {
			ending = append(ending, c)
		}
	}
	if len(ending) == 0 {
		return Risk{}, false
	}
	slices.SortFunc(ending, func(x, y *x509.Certificate) int { return x.NotAfter.Compare(y.NotAfter) })
	first := ending[0]
	when, then := fmt.Sprintf("expires %s (in %s)", first.NotAfter.UTC().Format(time.RFC3339), roughly(first.NotAfter.Sub(now))), "from then on"
	if !first.NotAfter.After(now) {
		when, then = fmt.Sprintf("expired %s (%s ago)", first.NotAfter.UTC().Format(time.RFC3339), roughly(now.Sub(first.NotAfter))), "since then"
	}
	if len(ending) > 1 {
		when += fmt.Sprintf(", and %d more of its %d certificates expire within %s", len(ending)-1, len(cas), roughly(horizon))
	}
	const failing = "every call fails its TLS handshake (x509: certificate has expired, or signed by unknown authority)"
	r := Risk{Webhook: w.Ref, Kind: CABundleExpiring}
	if len(ending) == len(cas) {
		r.Severity = Critical
		r.Detail = fmt.Sprintf("%s: the CA certificate %s in its caBundle %s, and no other certificate there stays valid: %s the API server cannot verify the serving certificate, %s and %s.",
			calloutName(w), certName(first), when, then, failing, whenUncallable(w))
		r.Fix = "issue a new CA, add it to " + caBundleField(w) + " beside the old one, re-sign the serving certificate with it, then remove the old CA; with cert-manager, " +
			"the cainjector rewrites caBundle when the CA Certificate is renewed: check that the CA Certificate renews before it expires (renewBefore) and that the cert-manager.io/inject-ca-from annotation names it"
		return r, true
	}
	others := fmt.Sprintf("%d other certificates there stay valid: calls go on only if the serving certificate chains to one of them", len(cas)-len(ending))
	if len(cas)-len(ending) == 1 {
		others = "One other certificate there stays valid: calls go on only if the serving certificate chains to it"
	}
	r.Severity = Warning
	r.Detail = fmt.Sprintf("%s: the CA certificate %s in its caBundle %s. %s; if the expiring CA signed it, %s %s and %s.",
		calloutName(w), certName(first), when, others, then, failing, whenUncallable(w))
	r.Fix = "check that the serving certificate chains to a CA in " + caBundleField(w) + " that stays valid (re-sign it with that CA if not), then remove the expiring CA from the bundle; " +
		"with cert-manager, the cainjector rewrites caBundle from the CA Certificate named by the cert-manager.io/inject-ca-from annotation"
	return r, true
}

// certName names a certificate by its subject's common name, else its
// subject, else its serial number.
func certName(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return fmt.Sprintf("%q", c.Subject.CommonName)
	case c.Subject.String() != "":
		return fmt.Sprintf("%q", c.Subject.String())
	}
	return "with serial number " + c.SerialNumber.String()
}

// caBundleField is where w's caBundle is written.
func caBundleField(w callout.Webhook) string {
	switch {
	case w.IsAPIService():
		return "the APIService's spec.caBundle"
	case w.IsConversion():
		return "the CRD's spec.conversion.webhook.clientConfig.caBundle"
	}
	return "the webhook's clientConfig.caBundle"
}

// roughly says a duration to an operator: days past two days, hours past
// two hours, else minutes.
func roughly(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	case d >= 2*time.Minute:
		return fmt.Sprintf("%d minutes", int(d/time.Minute))
	}
	return "a minute or so"
}
