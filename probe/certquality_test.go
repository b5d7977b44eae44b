package probe

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/certs"
)

// TestProbeNamesCertificateQuality: certificates the API server's client
// rejects for their quality, served by real TLS servers on loopback. Go
// words a SHA-1 signature as an unknown authority; the probe must not send
// the operator to the caBundle, and must name the certificate at fault.
// Every Go text below is what Go 1.26 printed for these chains.
func TestProbeNamesCertificateQuality(t *testing.T) {
	const name = "hook.webhooks.svc"
	rsaCA := mustCA(t)(certs.NewRSACA("probe-rsa-ca", 2048))
	ecCA := mustCA(t)(certs.NewCA("probe-ec-ca"))
	otherRSA := mustCA(t)(certs.NewRSACA("other-rsa-ca", 2048))
	sameNameEC := mustCA(t)(certs.NewCA("probe-ec-ca")) // the CA reissued under its name
	sha1Root := mustCA(t)(certs.NewRSACA("sha1-root", 2048))
	sha1Inter := mustCA(t)(rsaCA.Intermediate("probe-sha1-intermediate", certs.RSAKey(2048), certs.SignedWithSHA1()))
	inter := mustCA(t)(ecCA.Intermediate("probe-ec-intermediate"))
	rsaInter := mustCA(t)(ecCA.Intermediate("probe-rsa-intermediate", certs.RSAKey(2048)))
	now := time.Now()
	mk := func(ca *certs.CA, dns string, opts ...certs.ServingOption) tls.Certificate {
		var ips []net.IP
		if ip := net.ParseIP(dns); ip != nil {
			dns, ips = "", []net.IP{ip}
		}
		var names []string
		if dns != "" {
			names = []string{dns}
		}
		cert, err := ca.Serving(names, ips, now.Add(-time.Hour), now.Add(time.Hour), opts...)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	cases := []struct {
		name       string
		cert       tls.Certificate
		bundle     *certs.CA
		serverName string
		want       findings.Class
		details    []string
	}{
		{"leaf SHA1-RSA", mk(rsaCA, name, certs.SignedWithSHA1()), rsaCA, name, findings.InsecureSignature, []string{
			`tls: failed to verify certificate: x509: certificate signed by unknown authority (possibly because of "x509: cannot verify signature: insecure algorithm SHA1-RSA" while trying to verify candidate authority certificate "probe-rsa-ca")`,
			`the served certificate "CN=hook.webhooks.svc" is signed with SHA1-RSA by "CN=probe-rsa-ca" (in the caBundle)`}},
		{"leaf ECDSA-SHA1", mk(ecCA, name, certs.SignedWithSHA1()), ecCA, name, findings.InsecureSignature, []string{
			`x509: certificate signed by unknown authority (possibly because of "x509: cannot verify signature: insecure algorithm ECDSA-SHA1" while trying to verify candidate authority certificate "probe-ec-ca")`,
			`the served certificate "CN=hook.webhooks.svc" is signed with ECDSA-SHA1 by "CN=probe-ec-ca" (in the caBundle)`}},
		{"intermediate SHA1-RSA", mk(sha1Inter, name), rsaCA, name, findings.InsecureSignature, []string{
			`x509: certificate signed by unknown authority (possibly because of "x509: cannot verify signature: insecure algorithm SHA1-RSA" while trying to verify candidate authority certificate "probe-rsa-ca")`,
			`the served intermediate "CN=probe-sha1-intermediate" is signed with SHA1-RSA by "CN=probe-rsa-ca" (in the caBundle)`}},
		{"leaf SHA1-RSA by a served intermediate", mk(rsaInter, name, certs.SignedWithSHA1()), ecCA, name, findings.InsecureSignature, []string{
			`insecure algorithm SHA1-RSA" while trying to verify candidate authority certificate "probe-rsa-intermediate")`,
			`the served certificate "CN=hook.webhooks.svc" is signed with SHA1-RSA by "CN=probe-rsa-intermediate" (served in the chain)`}},
		{"leaf SHA1-RSA by a CA the caBundle lacks", mk(otherRSA, name, certs.SignedWithSHA1()), rsaCA, name, findings.UnknownAuthority, []string{
			`tls: failed to verify certificate: x509: certificate signed by unknown authority; the served chain ends at "CN=hook.webhooks.svc", issued by "CN=other-rsa-ca"`}},
		// SHA-1 is not all that is wrong: the intermediate's root is not in
		// the caBundle.
		{"leaf SHA1-RSA by an intermediate of another root", mk(rsaInter, name, certs.SignedWithSHA1()), rsaCA, name, findings.UnknownAuthority, []string{
			`insecure algorithm SHA1-RSA" while trying to verify candidate authority certificate "probe-rsa-intermediate")`,
			`the served chain ends at "CN=probe-rsa-intermediate", issued by "CN=probe-ec-ca"`}},
		{"SHA-1 self-signed root in the caBundle", mk(sha1Root, name), sha1Root, name, findings.Healthy, nil},
		{"Common Name only", mk(ecCA, name, certs.CommonNameOnly()), ecCA, name, findings.LegacyCommonName, []string{
			`tls: failed to verify certificate: x509: certificate relies on legacy Common Name field, use SANs instead; the served certificate "CN=hook.webhooks.svc" names hook.webhooks.svc only in its Common Name and has no subjectAltName`}},
		{"Common Name only, and SHA-1", mk(rsaCA, name, certs.CommonNameOnly(), certs.SignedWithSHA1()), rsaCA, name, findings.LegacyCommonName, []string{
			`x509: certificate relies on legacy Common Name field, use SANs instead`,
			`; and SHA-1 must go too: the served certificate "CN=hook.webhooks.svc" is signed with SHA1-RSA by "CN=probe-rsa-ca" (in the caBundle)`}},
		{"Common Name only, an IP (a URL webhook)", mk(ecCA, "127.0.0.1", certs.CommonNameOnly()), ecCA, "127.0.0.1", findings.LegacyCommonName, []string{
			`x509: certificate relies on legacy Common Name field, use SANs instead`}},
		{"Common Name only, another name", mk(ecCA, "other.webhooks.svc", certs.CommonNameOnly()), ecCA, name, findings.HostnameMismatch, []string{
			`x509: certificate is not valid for any names, but wanted to match hook.webhooks.svc`}},
		{"incomplete chain", mk(inter, name, certs.LeafOnly()), ecCA, name, findings.UnknownAuthority, []string{
			`tls: failed to verify certificate: x509: certificate signed by unknown authority; the served chain ends at "CN=hook.webhooks.svc", issued by "CN=probe-ec-intermediate", which the server does not send and is not in the caBundle: if "CN=probe-ec-intermediate" is an intermediate CA, serve it after the leaf (the full chain)`}},
		{"full chain", mk(inter, name), ecCA, name, findings.Healthy, nil},
		{"CA reissued under its name", mk(sameNameEC, name), ecCA, name, findings.UnknownAuthority, []string{
			`x509: certificate signed by unknown authority (possibly because of "x509: ECDSA verification failure" while trying to verify candidate authority certificate "probe-ec-ca")`,
			`the caBundle holds a "CN=probe-ec-ca", but not the key that signed "CN=hook.webhooks.svc"`}},
		// Go's text is the SHA-1 hint, as for the right CA: it refuses the
		// algorithm before it tries the key. The probe tries the key.
		{"SHA-1 from a CA reissued under its name", mk(sameNameEC, name, certs.SignedWithSHA1()), ecCA, name, findings.UnknownAuthority, []string{
			`x509: certificate signed by unknown authority (possibly because of "x509: cannot verify signature: insecure algorithm ECDSA-SHA1" while trying to verify candidate authority certificate "probe-ec-ca")`,
			`the caBundle holds a "CN=probe-ec-ca", but not the key that signed "CN=hook.webhooks.svc"`}},
		// Go accepts 1024-bit RSA keys: no finding.
		{"RSA 1024-bit leaf", mk(ecCA, name, certs.RSAKey(1024)), ecCA, name, findings.Healthy, nil},
		{"no caBundle", mk(ecCA, name), nil, name, findings.UnknownAuthority, []string{
			`the served chain ends at "CN=hook.webhooks.svc", issued by "CN=probe-ec-ca", which the server does not send and is not in the system roots (no caBundle)`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var bundle []byte
			if c.bundle != nil {
				bundle = c.bundle.PEM
			}
			r := Probe(context.Background(), serveTLS(t, c.cert), c.serverName, bundle, 2*time.Second)
			t.Logf("%s: %s", r.Class, r.Detail)
			if r.Class != c.want {
				t.Fatalf("class = %s (%s), want %s", r.Class, r.Detail, c.want)
			}
			for _, d := range c.details {
				if !strings.Contains(r.Detail, d) {
					t.Errorf("detail = %q\nwant it to contain %q", r.Detail, d)
				}
			}
		})
	}
}

func mustCA(t *testing.T) func(*certs.CA, error) *certs.CA {
	return func(ca *certs.CA, err error) *certs.CA {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
}
