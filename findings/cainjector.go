package findings

import "github.com/hookscope/hookscope/callout"

// caInjectionFix is the fix of an unknown authority for a call-out whose
// caBundle cert-manager's cainjector writes (w.CAInjection): the caBundle
// is cainjector's to fix, from the source the annotation names.
func caInjectionFix(w callout.Webhook) string {
	inj := *w.CAInjection
	var fix string
	if len(w.CABundle) == 0 {
		fix = "the caBundle of " + caBundleOwner(w) + " is empty: cert-manager's cainjector has not written the CA of " + inj.Source() +
			" into it, so the API server verifies the serving certificate against its system roots; "
	} else {
		fix = "the caBundle of " + caBundleOwner(w) + " does not verify the serving certificate, and cert-manager's cainjector writes it from " + inj.Source() + ": "
	}
	switch {
	case inj.Certificate != "":
		ns, name, _ := inj.CertificateRef()
		fix += "check that Certificate " + inj.Certificate + " exists and is Ready (kubectl -n " + ns + " describe certificate " + name +
			": its issuer, its Secret) and that the webhook serves the Secret it issues, "
	case inj.Secret != "":
		fix += "check that Secret " + inj.Secret + " holds ca.crt and carries the annotation cert-manager.io/allow-direct-injection: \"true\", "
	}
	return fix + "and that cainjector runs (the cert-manager-cainjector Deployment: its logs say what it injects); once it writes the CA, calls succeed with no other change"
}

// caBundleOwner names the object whose caBundle w's is.
func caBundleOwner(w callout.Webhook) string {
	switch {
	case w.IsAPIService():
		return "APIService " + w.Ref.Name
	case w.IsConversion():
		return "CRD " + w.Ref.Name + "'s conversion webhook"
	}
	return "webhook " + w.Ref.Name + " in " + w.Ref.Configuration
}
