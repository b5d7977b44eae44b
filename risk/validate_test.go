package risk_test

import (
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/testcerts"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/risk"
)

// hugeNotIn is a selector of n NotIn values on key: generated, not
// written, and over the size Analyze reports.
func hugeNotIn(key, prefix string, n int) *metav1.LabelSelector {
	values := make([]string, n)
	for i := range values {
		values[i] = fmt.Sprintf("%s%05d", prefix, i)
	}
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: key, Operator: metav1.LabelSelectorOpNotIn, Values: values},
	}}
}

func withService(ns, name string) func(*testHook) {
	return func(h *testHook) {
		h.clientConfig = func(cc *admissionv1.WebhookClientConfig) {
			cc.URL, cc.Service = nil, &admissionv1.ServiceReference{Namespace: ns, Name: name}
		}
	}
}

func withURL(u string) func(*testHook) {
	return func(h *testHook) {
		h.clientConfig = func(cc *admissionv1.WebhookClientConfig) { cc.URL, cc.Service = &u, nil }
	}
}

// malformations are configurations the API server accepts (or once did,
// or that arrive from manifests) which cannot work as written: each edits
// a healthy webhook in one way and names what its InvalidConfiguration
// risk must say.
var malformations = []struct {
	name        string
	edit        func(*testHook)
	want        []string // in the InvalidConfiguration detail
	not         []string // in no detail or fix
	sev         risk.Severity
	unevaluable bool // a selector that does not parse: no other risk
}{
	{name: "service name with upper case", edit: withService("policy", "Policy-Webhook"),
		want: []string{`clientConfig.service.name "Policy-Webhook"`, "DNS-1035"}},
	{name: "service name starting with a digit", edit: withService("policy", "1policy"),
		want: []string{`clientConfig.service.name "1policy"`, "DNS-1035"}},
	{name: "empty service name", edit: withService("policy", ""),
		want: []string{`clientConfig.service.name ""`}},
	{name: "service namespace with an underscore", edit: withService("team_a", "policy"),
		want: []string{`clientConfig.service.namespace "team_a"`, "DNS-1123"}},
	{name: "service namespace too long", edit: withService(strings.Repeat("n", 64), "policy"),
		want: []string{"clientConfig.service.namespace", "no more than 63 characters"}},
	{name: "caBundle that is not PEM", edit: func(h *testHook) { h.caBundle = []byte("not a certificate") },
		want: []string{"caBundle of 17 bytes that holds no PEM certificate"}},
	{name: "caBundle holding a private key", edit: func(h *testHook) { h.caBundle = testcerts.CAKey },
		want: []string{"holds no PEM certificate"}},
	{name: "caBundle base64-encoded twice",
		edit: func(h *testHook) { h.caBundle = []byte(base64.StdEncoding.EncodeToString(testcerts.CACert)) },
		want: []string{"holds no PEM certificate", "encoded once too often"}},
	{name: "caBundle in DER",
		edit: func(h *testHook) { b, _ := pem.Decode(testcerts.CACert); h.caBundle = b.Bytes },
		want: []string{"holds no PEM certificate", "DER certificate"}},
	{name: "url that does not parse", edit: withURL("https://policy example.com/validate"),
		want: []string{"clientConfig.url that does not parse", `invalid character " " in host name`}},
	{name: "http url", edit: withURL("http://policy.example.com/validate"),
		want: []string{`its scheme is "http", not https`}},
	{name: "url without a host", edit: withURL("https:///validate"),
		want: []string{"it has no host"}},
	{name: "url with a password", edit: withURL("https://admin:s3cret@policy.example.com/validate"),
		want: []string{"it carries user information", "admin:xxxxx@policy.example.com"}, not: []string{"s3cret"}},
	{name: "url with a query and a fragment", edit: withURL("https://policy.example.com/validate?dry=1#top"),
		want: []string{"it has a query and it has a fragment"}},
	{name: "both service and url", edit: func(h *testHook) {
		h.clientConfig = func(cc *admissionv1.WebhookClientConfig) {
			u := "https://policy.example.com/validate"
			cc.URL, cc.Service = &u, &admissionv1.ServiceReference{Namespace: "policy", Name: "policy"}
		}
	}, want: []string{"both clientConfig.url and clientConfig.service"}},
	{name: "neither service nor url", edit: func(h *testHook) {
		h.clientConfig = func(cc *admissionv1.WebhookClientConfig) { cc.URL, cc.Service = nil, nil }
	}, want: []string{"neither clientConfig.url nor clientConfig.service"}},
	{name: "namespaceSelector that does not parse", edit: func(h *testHook) {
		h.nsSel = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn}}}
	}, want: []string{"parsing namespaceSelector", "cannot be evaluated"}, unevaluable: true},
	{name: "objectSelector that does not parse", edit: func(h *testHook) {
		h.objSel = &metav1.LabelSelector{MatchLabels: map[string]string{"app": strings.Repeat("x", 64)}}
	}, want: []string{"parsing objectSelector", "cannot be evaluated"}, unevaluable: true},
	{name: "huge namespaceSelector", edit: func(h *testHook) { h.nsSel = hugeNotIn(corev1.LabelMetadataName, "ns-excluded-", 40000) },
		want: []string{"namespaceSelector of 664 KiB in 40000 terms", "generated, not written"}, sev: risk.Warning},
	{name: "huge objectSelector", edit: func(h *testHook) { h.objSel = hugeNotIn("team", "team-", 60000) },
		want: []string{"objectSelector of 585 KiB in 60000 terms", "generated, not written"}, sev: risk.Warning},
}

// invalidOf are the InvalidConfiguration risks of each webhook.
func invalidOf(rs []risk.Risk) map[callout.Ref][]risk.Risk {
	out := map[callout.Ref][]risk.Risk{}
	for _, r := range rs {
		if r.Kind == risk.InvalidConfiguration {
			out[r.Webhook] = append(out[r.Webhook], r)
		}
	}
	return out
}

// TestAnalyzeInvalidConfiguration: each malformation is one
// InvalidConfiguration risk naming it; the malformed webhook is still
// judged unless a selector does not parse, and a healthy webhook beside it
// is judged as usual.
func TestAnalyzeInvalidConfiguration(t *testing.T) {
	for _, m := range malformations {
		t.Run(m.name, func(t *testing.T) {
			bad := testHook{name: "bad", rules: []admissionv1.RuleWithOperations{rule("CREATE", "", "pods")}, svcNS: "policy", caBundle: testcerts.CACert}
			m.edit(&bad)
			ok := testHook{name: "ok", ignore: true, rules: []admissionv1.RuleWithOperations{rule("CREATE", "", "configmaps")}, svcNS: "policy", caBundle: testcerts.CACert}
			vwcs, mwcs := configs([]testHook{bad, ok})
			got := risk.Analyze(vwcs, mwcs, nil, nil)
			for _, r := range got {
				for _, s := range m.not {
					if strings.Contains(r.Detail+r.Fix, s) {
						t.Errorf("%s %s shows %q: %s", r.Webhook, r.Kind, s, r.Detail)
					}
				}
			}

			invalid := invalidOf(got)
			if len(invalid[refOf(bad)]) != 1 {
				t.Fatalf("%d InvalidConfiguration risks for the malformed webhook, want 1: %+v", len(invalid[refOf(bad)]), invalid[refOf(bad)])
			}
			r := invalid[refOf(bad)][0]
			if want := cmpOr(m.sev, risk.Critical); r.Severity != want {
				t.Errorf("severity %s, want %s", r.Severity, want)
			}
			for _, s := range m.want {
				if !strings.Contains(r.Detail, s) {
					t.Errorf("detail lacks %q: %s", s, r.Detail)
				}
			}
			blocks := slices.ContainsFunc(got, func(r risk.Risk) bool { return r.Webhook == refOf(bad) && r.Kind == risk.BlocksSystemPods })
			if blocks == m.unevaluable {
				t.Errorf("BlocksSystemPods reported: %v, want %v", blocks, !m.unevaluable)
			}
			if len(invalid[refOf(ok)]) != 0 || !slices.ContainsFunc(got, func(r risk.Risk) bool { return r.Webhook == refOf(ok) && r.Kind == risk.FailOpenSecurity }) {
				t.Errorf("the healthy webhook beside it: %+v", got)
			}
		})
	}
}

func cmpOr(s, def risk.Severity) risk.Severity {
	if s == "" {
		return def
	}
	return s
}

// TestAnalyzeValidClientConfigs are configurations that look unusual but
// work: no InvalidConfiguration.
func TestAnalyzeValidClientConfigs(t *testing.T) {
	large := hugeNotIn(corev1.LabelMetadataName, "ns-", 10000) // ~90 KiB: written by a tool, but fine
	for _, tc := range []struct {
		name string
		edit func(*testHook)
	}{
		{"one-letter Service in kube-system", withService("kube-system", "a")},
		{"Service name with digits and dashes", withService("team-1", "webhook-2-b")},
		{"namespace starting with a digit", withService("1team", "policy")},
		{"url with a port and a path", withURL("https://policy.example.com:8443/validate/pods")},
		{"url with an IP", withURL("https://10.0.0.1/validate")},
		{"url with IPv6", withURL("https://[fd00::1]:8443/validate")},
		{"caBundle with two certificates", func(h *testHook) {
			h.caBundle = slices.Concat(testcerts.CACert, []byte("\n"), testcerts.ServerCert) // testcerts' PEM ends without a newline
		}},
		{"no caBundle", func(h *testHook) { h.caBundle = nil }},
		{"large selector under the limit", func(h *testHook) { h.nsSel = large }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testHook{name: "fine", rules: []admissionv1.RuleWithOperations{rule("CREATE", "", "configmaps")}, svcNS: "policy", caBundle: testcerts.CACert}
			tc.edit(&h)
			vwcs, mwcs := configs([]testHook{h})
			if got := invalidOf(risk.Analyze(vwcs, mwcs, nil, nil)); len(got) != 0 {
				t.Errorf("InvalidConfiguration for a working configuration: %+v", got)
			}
		})
	}
}

// manyConfigurations are n webhooks, each in its own configuration, with
// every tenth (from the eighth) malformed in the next of the ways in
// malformations; malformed maps those to their index there. Service
// webhooks have a caBundle and two backends on two nodes.
func manyConfigurations(n int) (hooks []testHook, malformed map[callout.Ref]int, backends map[callout.Ref][]callout.Backend) {
	palette := [][]admissionv1.RuleWithOperations{
		{rule("CREATE", "", "pods")},
		{rule("CREATE,UPDATE", "", "configmaps")},
		{rule("*", "apps", "deployments,statefulsets,daemonsets")},
		{rule("UPDATE", "coordination.k8s.io", "leases")},
		{rule("CREATE", "", "secrets,services"), rule("UPDATE", "networking.k8s.io", "ingresses")},
		{rule("CREATE,UPDATE", "example.com", "widgets,gadgets/status", "v1alpha1")},
		{scoped(rule("*", "", "*"), admissionv1.NamespacedScope)},
	}
	malformed = map[callout.Ref]int{}
	backends = map[callout.Ref][]callout.Backend{}
	for i := range n {
		h := testHook{
			name:     fmt.Sprintf("cfg-%03d", i),
			mutating: i%2 == 0,
			reinvoke: i%8 == 0,
			ignore:   i%3 == 0,
			timeout:  int32(1 + i%5),
			rules:    palette[i%len(palette)],
		}
		if i%4 != 0 {
			h.svcNS, h.caBundle = fmt.Sprint("team-", i%20), testcerts.CACert
			backends[refOf(h)] = backendPods(h.svcNS, h.name+"-a@node-1", h.name+"-b@node-2")
		}
		switch i % 5 {
		case 1:
			h.nsSel = notIn("kube-system", h.svcNS)
		case 2:
			h.nsSel = &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprint(i % 5)}}
		case 3:
			h.objSel = &metav1.LabelSelector{MatchLabels: map[string]string{"inject": "true"}}
		}
		if m := i / 10; i%10 == 7 && m < len(malformations) {
			malformations[m].edit(&h)
			malformed[refOf(h)] = m
		}
		hooks = append(hooks, h)
	}
	return hooks, malformed, backends
}

// TestAnalyzeManyConfigurations: 200 configurations, 20 of them malformed
// in the ways above. Every malformed one gets an InvalidConfiguration risk
// naming its problem, no healthy one gets any, and the analysis stays
// fast (the bound is generous; the time is logged).
func TestAnalyzeManyConfigurations(t *testing.T) {
	hooks, malformedAs, backends := manyConfigurations(200)
	if len(malformedAs) != 20 {
		t.Fatalf("%d malformed configurations, want 20 (one per malformation)", len(malformedAs))
	}
	nss := teamNamespaces(100)
	vwcs, mwcs := configs(hooks)

	start := time.Now()
	got := risk.Analyze(vwcs, mwcs, nss, backends)
	took := time.Since(start)
	t.Logf("Analyze: %d configurations (%d malformed), %d namespaces: %d risks in %v", len(hooks), len(malformedAs), len(nss), len(got), took)
	if took > 10*time.Second {
		t.Errorf("took %v", took)
	}

	invalid := invalidOf(got)
	for _, h := range hooks {
		ref := refOf(h)
		m, malformed := malformedAs[ref]
		if !malformed {
			if len(invalid[ref]) > 0 {
				t.Errorf("healthy %s: %+v", ref, invalid[ref])
			}
			continue
		}
		named := slices.ContainsFunc(invalid[ref], func(r risk.Risk) bool {
			for _, s := range malformations[m].want {
				if !strings.Contains(r.Detail, s) {
					return false
				}
			}
			return true
		})
		if !named {
			t.Errorf("%s (%s): no InvalidConfiguration naming %q in %+v", ref, malformations[m].name, malformations[m].want, invalid[ref])
		}
	}
}

// BenchmarkAnalyzeMalformed is TestAnalyzeManyConfigurations' analysis:
// 200 configurations, 20 malformed, 100 namespaces.
func BenchmarkAnalyzeMalformed(b *testing.B) {
	hooks, _, backends := manyConfigurations(200)
	nss := teamNamespaces(100)
	vwcs, mwcs := configs(hooks)
	b.ReportAllocs()
	for b.Loop() {
		risk.Analyze(vwcs, mwcs, nss, backends)
	}
}

// teamNamespaces are team-0 ... team-<n-1>, labelled team: 0 to 4.
func teamNamespaces(n int) []*corev1.Namespace {
	var nss []*corev1.Namespace
	for i := range n {
		nss = append(nss, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("team-", i),
			Labels: map[string]string{"team": fmt.Sprint(i % 5)}}})
	}
	return nss
}
