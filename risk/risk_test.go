package risk_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/risk"
)

// testHook describes one webhook of a test case; each becomes its own
// configuration named after it.
type testHook struct {
	name       string
	mutating   bool
	reinvoke   bool
	ignore     bool
	exact      bool
	rules      []admissionv1.RuleWithOperations
	nsSel      *metav1.LabelSelector
	objSel     *metav1.LabelSelector
	timeout    int32  // 0: unset (default 10)
	svcNS      string // "": a url clientConfig
	noClient   bool
	conditions int
	caBundle   []byte
	// clientConfig, when set, edits the clientConfig built from the
	// fields above.
	clientConfig func(*admissionv1.WebhookClientConfig)
	failPolicy   admissionv1.FailurePolicyType // "": from ignore
}

func rule(ops, groups, resources string, versions ...string) admissionv1.RuleWithOperations {
	if len(versions) == 0 {
		versions = []string{"*"}
	}
	r := admissionv1.RuleWithOperations{Rule: admissionv1.Rule{
		APIGroups: strings.Split(groups, ","), APIVersions: versions, Resources: strings.Split(resources, ","),
	}}
	for _, op := range strings.Split(ops, ",") {
		r.Operations = append(r.Operations, admissionv1.OperationType(op))
	}
	return r
}

func scoped(r admissionv1.RuleWithOperations, s admissionv1.ScopeType) admissionv1.RuleWithOperations {
	r.Scope = &s
	return r
}

func notIn(nss ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: nss},
	}}
}

func refOf(h testHook) callout.Ref {
	kind := "Validating"
	if h.mutating {
		kind = "Mutating"
	}
	return callout.Ref{Kind: kind, Configuration: h.name, Name: h.name + ".hookscope.test"}
}

func clientConfigOf(h testHook) admissionv1.WebhookClientConfig {
	var cc admissionv1.WebhookClientConfig
	switch {
	case h.noClient:
	case h.svcNS != "":
		cc.Service = &admissionv1.ServiceReference{Namespace: h.svcNS, Name: h.name}
	default:
		u := "https://" + h.name + ".example.com/validate"
		cc.URL = &u
	}
	cc.CABundle = h.caBundle
	if h.clientConfig != nil {
		h.clientConfig(&cc)
	}
	return cc
}

func configs(hooks []testHook) ([]*admissionv1.ValidatingWebhookConfiguration, []*admissionv1.MutatingWebhookConfiguration) {
	var vwcs []*admissionv1.ValidatingWebhookConfiguration
	var mwcs []*admissionv1.MutatingWebhookConfiguration
	for _, h := range hooks {
		cc := clientConfigOf(h)
		var fp *admissionv1.FailurePolicyType
		switch {
		case h.failPolicy != "":
			fp = &h.failPolicy
		case h.ignore:
			p := admissionv1.Ignore
			fp = &p
		}
		var mp *admissionv1.MatchPolicyType
		if h.exact {
			p := admissionv1.Exact
			mp = &p
		}
		var timeout *int32
		if h.timeout != 0 {
			timeout = &h.timeout
		}
		var conds []admissionv1.MatchCondition
		for i := range h.conditions {
			conds = append(conds, admissionv1.MatchCondition{Name: fmt.Sprint("c", i), Expression: "true"})
		}
		ref := refOf(h)
		if h.mutating {
			var rp *admissionv1.ReinvocationPolicyType
			if h.reinvoke {
				p := admissionv1.IfNeededReinvocationPolicy
				rp = &p
			}
			mwcs = append(mwcs, &admissionv1.MutatingWebhookConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: ref.Configuration},
				Webhooks: []admissionv1.MutatingWebhook{{Name: ref.Name, ClientConfig: cc, Rules: h.rules, FailurePolicy: fp,
					MatchPolicy: mp, NamespaceSelector: h.nsSel, ObjectSelector: h.objSel, TimeoutSeconds: timeout,
					ReinvocationPolicy: rp, MatchConditions: conds}},
			})
			continue
		}
		vwcs = append(vwcs, &admissionv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: ref.Configuration},
			Webhooks: []admissionv1.ValidatingWebhook{{Name: ref.Name, ClientConfig: cc, Rules: h.rules, FailurePolicy: fp,
				MatchPolicy: mp, NamespaceSelector: h.nsSel, ObjectSelector: h.objSel, TimeoutSeconds: timeout,
				MatchConditions: conds}},
		})
	}
	return vwcs, mwcs
}

// backendPods are backends: pod name@node in ns; addresses are made up.
func backendPods(ns string, podsAtNodes ...string) []callout.Backend {
	var out []callout.Backend
	for i, pn := range podsAtNodes {
		pod, node, _ := strings.Cut(pn, "@")
		out = append(out, callout.Backend{
			Addr:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 8443),
			Pod:   &callout.PodRef{Namespace: ns, Name: pod, Node: node},
			Ready: true,
		})
	}
	return out
}

// analyzeCase is what TestAnalyze and TestAnalyzeInvalidConfiguration
// check: the risks as "<hook> <kind> <severity>", and substrings of the
// details of each kind.
type analyzeCase struct {
	name       string
	hooks      []testHook
	namespaces []*corev1.Namespace
	backends   map[string][]callout.Backend // by hook name
	want       []string                     // "<hook> <kind> <severity>"
	details    map[risk.Kind][]string       // substrings of the Detail of that kind
	notDetails []string                     // in no Detail or Fix
}

func (tc analyzeCase) run(t *testing.T) {
	t.Helper()
	vwcs, mwcs := configs(tc.hooks)
	backends := map[callout.Ref][]callout.Backend{}
	for _, h := range tc.hooks {
		if b, ok := tc.backends[h.name]; ok {
			backends[refOf(h)] = b
		}
	}
	got := risk.Analyze(vwcs, mwcs, tc.namespaces, backends)

	var gotKeys []string
	for _, r := range got {
		gotKeys = append(gotKeys, fmt.Sprintf("%s %s %s", r.Webhook.Configuration, r.Kind, r.Severity))
		if r.Detail == "" || r.Fix == "" {
			t.Errorf("%s %s: empty Detail or Fix: %+v", r.Webhook, r.Kind, r)
		}
		for _, s := range tc.notDetails {
			if strings.Contains(r.Detail, s) || strings.Contains(r.Fix, s) {
				t.Errorf("%s %s names %q: %s / %s", r.Webhook, r.Kind, s, r.Detail, r.Fix)
			}
		}
	}
	want := slices.Clone(tc.want)
	slices.Sort(gotKeys)
	slices.Sort(want)
	if !slices.Equal(gotKeys, want) {
		t.Errorf("risks:\n got  %q\n want %q", gotKeys, want)
		for _, r := range got {
			t.Logf("%s %s: %s", r.Webhook, r.Kind, r.Detail)
		}
	}
	for kind, subs := range tc.details {
		for _, r := range got {
			if r.Kind != kind {
				continue
			}
			for _, s := range subs {
				if !strings.Contains(r.Detail, s) {
					t.Errorf("%s %s detail lacks %q: %s", r.Webhook, kind, s, r.Detail)
				}
			}
		}
	}
}

func TestAnalyze(t *testing.T) {
	podsCreate := rule("CREATE", "", "pods")
	configmaps := rule("CREATE,UPDATE", "", "configmaps")
	k8sApp := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k8s-app", Operator: metav1.LabelSelectorOpExists}}}

	huge := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := range 10000 {
		huge.MatchLabels[fmt.Sprintf("hookscope.test/label-%d", i)] = "x"
	}

	tests := []analyzeCase{
		{
			name:    "system pods matched through an objectSelector",
			hooks:   []testHook{{name: "cni-labels", rules: []admissionv1.RuleWithOperations{podsCreate}, objSel: k8sApp, svcNS: "policy"}},
			want:    []string{"cni-labels BlocksSystemPods critical"},
			details: map[risk.Kind][]string{risk.BlocksSystemPods: {"kube-system", "aws-node", "coredns", "Validating/cni-labels/cni-labels.hookscope.test"}},
		},
		{
			name:     "catch-all pod webhook",
			hooks:    []testHook{{name: "pods", rules: []admissionv1.RuleWithOperations{podsCreate}, svcNS: "policy"}},
			backends: map[string][]callout.Backend{"pods": backendPods("policy", "pods-a@n1", "pods-b@n2")},
			want:     []string{"pods BlocksSystemPods critical", "pods SelfDeadlock critical", "pods NoExclusion warning"},
			details:  map[risk.Kind][]string{risk.SelfDeadlock: {"pods policy/pods-a and policy/pods-b", "Service policy/pods"}, risk.NoExclusion: {"every pod"}},
		},
		{
			name:    "node and leader-election leases",
			hooks:   []testHook{{name: "leases", rules: []admissionv1.RuleWithOperations{rule("UPDATE", "coordination.k8s.io", "leases")}}},
			want:    []string{"leases BlocksLeases critical"},
			details: map[risk.Kind][]string{risk.BlocksLeases: {"UPDATE of leases in kube-node-lease", "UPDATE of leases in kube-system"}},
		},
		{
			name:    "node status",
			hooks:   []testHook{{name: "nodes", rules: []admissionv1.RuleWithOperations{rule("UPDATE", "", "nodes/status")}}},
			want:    []string{"nodes BlocksNodes critical"},
			details: map[risk.Kind][]string{risk.BlocksNodes: {"nodes/status"}},
		},
		{
			name:    "token reviews",
			hooks:   []testHook{{name: "auth", rules: []admissionv1.RuleWithOperations{rule("CREATE", "authentication.k8s.io", "tokenreviews")}}},
			want:    []string{"auth BlocksAuth critical"},
			details: map[risk.Kind][]string{risk.BlocksAuth: {"tokenreviews"}},
		},
		{
			name:    "certificate signing requests approval",
			hooks:   []testHook{{name: "csr", rules: []admissionv1.RuleWithOperations{rule("UPDATE", "certificates.k8s.io", "certificatesigningrequests/approval")}}},
			want:    []string{"csr BlocksAuth critical"},
			details: map[risk.Kind][]string{risk.BlocksAuth: {"certificatesigningrequests/approval"}},
		},
		{
			name: "self deadlock in its own namespace",
			hooks: []testHook{{name: "self", rules: []admissionv1.RuleWithOperations{podsCreate},
				nsSel: notIn("kube-system"), svcNS: "webhook-system"}},
			backends: map[string][]callout.Backend{"self": backendPods("webhook-system", "self-a@n1", "self-b@n2")},
			want:     []string{"self SelfDeadlock critical"},
			details:  map[risk.Kind][]string{risk.SelfDeadlock: {"webhook-system/self-a", "webhook-system/self-b"}},
		},
		{
			name: "everything, no exclusion",
			hooks: []testHook{{name: "all", rules: []admissionv1.RuleWithOperations{
				rule("CREATE,UPDATE", "*", "*/*")}}},
			want: []string{"all BlocksSystemPods critical", "all BlocksLeases critical", "all BlocksNodes critical",
				"all BlocksAuth critical", "all NoExclusion warning"},
			details: map[risk.Kind][]string{risk.NoExclusion: {"every resource"}},
		},
		{
			name:     "one backend pod",
			hooks:    []testHook{{name: "cm", rules: []admissionv1.RuleWithOperations{configmaps}, svcNS: "policy"}},
			backends: map[string][]callout.Backend{"cm": backendPods("policy", "cm-a@n1")},
			want:     []string{"cm SingleReplica warning"},
			details:  map[risk.Kind][]string{risk.SingleReplica: {"one pod (policy/cm-a)"}},
		},
		{
			name:     "all backend pods on one node",
			hooks:    []testHook{{name: "cm", rules: []admissionv1.RuleWithOperations{configmaps}, svcNS: "policy"}},
			backends: map[string][]callout.Backend{"cm": backendPods("policy", "cm-a@n1", "cm-b@n1")},
			want:     []string{"cm SingleReplica warning"},
			details:  map[risk.Kind][]string{risk.SingleReplica: {"2 pods all on node n1"}},
		},
		{
			name:     "one backend pod of an Ignore webhook",
			hooks:    []testHook{{name: "cm", ignore: true, rules: []admissionv1.RuleWithOperations{configmaps}, svcNS: "policy"}},
			backends: map[string][]callout.Backend{"cm": backendPods("policy", "cm-a@n1")},
			want:     []string{"cm SingleReplica info", "cm FailOpenSecurity info"},
			details:  map[risk.Kind][]string{risk.SingleReplica: {"pass unchecked"}},
		},
		{
			name:     "spread backends are fine",
			hooks:    []testHook{{name: "cm", rules: []admissionv1.RuleWithOperations{configmaps}, svcNS: "policy"}},
			backends: map[string][]callout.Backend{"cm": backendPods("policy", "cm-a@n1", "cm-b@n2")},
		},
		{
			name: "stacked timeouts: reinvoked mutating plus validating",
			hooks: []testHook{
				{name: "mutate", mutating: true, reinvoke: true, timeout: 3, rules: []admissionv1.RuleWithOperations{configmaps}},
				{name: "validate", timeout: 4, rules: []admissionv1.RuleWithOperations{configmaps}},
			},
			want:    []string{"mutate StackedTimeouts warning", "validate StackedTimeouts warning"},
			details: map[risk.Kind][]string{risk.StackedTimeouts: {"CREATE configmaps in kube-system, kube-node-lease and default", "10 s", "x2 reinvoked"}},
		},
		{
			// Validating webhooks run in parallel: three of 4 s hold a
			// request for 4 s, not 12.
			name: "parallel validating webhooks do not stack",
			hooks: []testHook{
				{name: "v1", timeout: 4, rules: []admissionv1.RuleWithOperations{configmaps}},
				{name: "v2", timeout: 4, rules: []admissionv1.RuleWithOperations{configmaps}},
				{name: "v3", timeout: 4, rules: []admissionv1.RuleWithOperations{configmaps}},
			},
		},
		{
			name: "stacked timeouts on leases are critical, even with Ignore",
			hooks: []testHook{
				{name: "m1", mutating: true, ignore: true, timeout: 5, rules: []admissionv1.RuleWithOperations{rule("UPDATE", "coordination.k8s.io", "leases")}},
				{name: "m2", mutating: true, ignore: true, timeout: 5, rules: []admissionv1.RuleWithOperations{rule("*", "*", "*")}},
			},
			want: []string{"m1 StackedTimeouts critical", "m2 StackedTimeouts critical",
				"m1 FailOpenSecurity info", "m2 FailOpenSecurity info"},
			details: map[risk.Kind][]string{risk.StackedTimeouts: {"UPDATE leases.coordination.k8s.io in kube-", "10 s"}},
		},
		{
			name:    "Ignore webhook on configmaps",
			hooks:   []testHook{{name: "cm", ignore: true, rules: []admissionv1.RuleWithOperations{configmaps}, svcNS: "policy"}},
			want:    []string{"cm FailOpenSecurity info"},
			details: map[risk.Kind][]string{risk.FailOpenSecurity: {"writes pass unchecked while the webhook is down"}},
		},
		{
			name: "bad selector, analysis continues",
			hooks: []testHook{
				{name: "bad", rules: []admissionv1.RuleWithOperations{podsCreate}, nsSel: &metav1.LabelSelector{
					MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: "Bogus"}}}},
				{name: "badvalue", rules: []admissionv1.RuleWithOperations{podsCreate}, objSel: &metav1.LabelSelector{
					MatchLabels: map[string]string{"app": strings.Repeat("x", 64)}}},
				{name: "cm", ignore: true, rules: []admissionv1.RuleWithOperations{configmaps}},
			},
			want:    []string{"bad InvalidConfiguration critical", "badvalue InvalidConfiguration critical", "cm FailOpenSecurity info"},
			details: map[risk.Kind][]string{risk.InvalidConfiguration: {"cannot be evaluated", "the API server will reject"}},
		},
		{
			name: "well-scoped webhook",
			hooks: []testHook{{name: "scoped", rules: []admissionv1.RuleWithOperations{podsCreate},
				nsSel: notIn("kube-system", "webhook-system"), svcNS: "webhook-system"}},
			backends: map[string][]callout.Backend{"scoped": backendPods("webhook-system", "a@n1", "b@n2")},
		},
		{
			// kube-system's name label is there even with no Namespace
			// objects, as on every real cluster.
			name: "selector on the synthesized name label",
			hooks: []testHook{{name: "ks", rules: []admissionv1.RuleWithOperations{podsCreate},
				nsSel: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "kube-system"}}, svcNS: "policy"}},
			want: []string{"ks BlocksSystemPods critical"},
		},
		{
			name: "selector on the caller's namespace labels",
			hooks: []testHook{{name: "labels", rules: []admissionv1.RuleWithOperations{podsCreate}, svcNS: "policy",
				nsSel: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "control-plane", Operator: metav1.LabelSelectorOpDoesNotExist}}}}},
			namespaces: []*corev1.Namespace{
				{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", Labels: map[string]string{"control-plane": "true"}}},
				{ObjectMeta: metav1.ObjectMeta{Name: "kube-node-lease", Labels: map[string]string{"control-plane": "true"}}},
				nil,
				{ObjectMeta: metav1.ObjectMeta{Name: "policy"}},
			},
			want: []string{"labels SelfDeadlock critical"},
		},
		{
			name: "scope Cluster never matches pods, Namespaced never matches nodes",
			hooks: []testHook{
				{name: "cluster", rules: []admissionv1.RuleWithOperations{scoped(podsCreate, admissionv1.ClusterScope)}},
				{name: "namespaced", rules: []admissionv1.RuleWithOperations{scoped(rule("UPDATE", "", "nodes/status"), admissionv1.NamespacedScope)}},
			},
		},
		{
			name: "subresource rules",
			hooks: []testHook{
				{name: "podstatus", rules: []admissionv1.RuleWithOperations{rule("CREATE,UPDATE", "", "pods/status")}},
				{name: "nodesonly", rules: []admissionv1.RuleWithOperations{rule("UPDATE", "", "nodes")}},
			},
			want:    []string{"nodesonly BlocksNodes critical"},
			details: map[risk.Kind][]string{risk.BlocksNodes: {"UPDATE of nodes"}},
		},
		{
			name: "matchPolicy Exact on another version does not match, Equivalent does",
			hooks: []testHook{
				{name: "exact", exact: true, rules: []admissionv1.RuleWithOperations{rule("UPDATE", "coordination.k8s.io", "leases", "v1beta1")}},
				{name: "equivalent", rules: []admissionv1.RuleWithOperations{rule("UPDATE", "coordination.k8s.io", "leases", "v1beta1")}},
			},
			want: []string{"equivalent BlocksLeases critical"},
		},
		{
			name: "huge selectors",
			hooks: []testHook{
				{name: "hugens", rules: []admissionv1.RuleWithOperations{podsCreate}, nsSel: huge, svcNS: "policy"},
				{name: "hugeobj", rules: []admissionv1.RuleWithOperations{podsCreate}, objSel: huge, svcNS: "policy"},
			},
		},
		{
			name: "nil rules and no clientConfig",
			hooks: []testHook{
				{name: "empty", noClient: true},
				{name: "norules", svcNS: "policy"},
			},
			backends: map[string][]callout.Backend{"norules": backendPods("policy", "a@n1", "b@n2")},
			want:     []string{"empty InvalidConfiguration critical"},
			details:  map[risk.Kind][]string{risk.InvalidConfiguration: {"neither clientConfig.url nor clientConfig.service"}},
		},
		{
			name:  "timeout out of range",
			hooks: []testHook{{name: "slow", timeout: 45, rules: []admissionv1.RuleWithOperations{configmaps}}},
			want:  []string{"slow InvalidConfiguration critical"},
		},
		{
			name:    "matchConditions are named, not evaluated",
			hooks:   []testHook{{name: "cel", conditions: 2, rules: []admissionv1.RuleWithOperations{podsCreate}}},
			want:    []string{"cel BlocksSystemPods critical"},
			details: map[risk.Kind][]string{risk.BlocksSystemPods: {"unless its 2 matchConditions exclude them"}},
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

func TestAnalyzeOrder(t *testing.T) {
	vwcs, mwcs := configs([]testHook{
		{name: "cm", ignore: true, rules: []admissionv1.RuleWithOperations{rule("CREATE", "", "configmaps")}},
		{name: "pods", rules: []admissionv1.RuleWithOperations{rule("CREATE", "", "pods")}},
	})
	got := risk.Analyze(vwcs, mwcs, nil, nil)
	if len(got) == 0 || got[0].Severity != risk.Critical || got[len(got)-1].Severity != risk.Info {
		t.Fatalf("not sorted by severity: %+v", got)
	}
}

func TestAnalyzeNilInput(t *testing.T) {
	if got := risk.Analyze(nil, nil, nil, nil); len(got) != 0 {
		t.Errorf("no configurations: got %+v", got)
	}
	got := risk.Analyze([]*admissionv1.ValidatingWebhookConfiguration{nil, {ObjectMeta: metav1.ObjectMeta{Name: "empty"}}},
		[]*admissionv1.MutatingWebhookConfiguration{nil}, []*corev1.Namespace{nil, {}}, nil)
	if len(got) != 0 {
		t.Errorf("empty configurations: got %+v", got)
	}
}

// TestAnalyzeLeavesInputAlone: the API server's defaults are applied to
// copies, never to the caller's (informer-owned) objects.
func TestAnalyzeLeavesInputAlone(t *testing.T) {
	vwcs, mwcs := configs([]testHook{
		{name: "v", rules: []admissionv1.RuleWithOperations{rule("CREATE", "", "pods")}},
		{name: "m", mutating: true, rules: []admissionv1.RuleWithOperations{rule("CREATE", "", "pods")}},
	})
	risk.Analyze(vwcs, mwcs, nil, nil)
	if w := vwcs[0].Webhooks[0]; w.NamespaceSelector != nil || w.ObjectSelector != nil {
		t.Errorf("validating webhook changed: %+v", w)
	}
	if w := mwcs[0].Webhooks[0]; w.NamespaceSelector != nil || w.ObjectSelector != nil {
		t.Errorf("mutating webhook changed: %+v", w)
	}
}

// TestRiskJSON pins the field names the HTTP API and logs show.
func TestRiskJSON(t *testing.T) {
	b, err := json.Marshal(risk.Risk{Webhook: callout.Ref{Kind: "Validating", Configuration: "c", Name: "n"},
		Kind: risk.SelfDeadlock, Severity: risk.Critical, Detail: "d", Fix: "f"})
	if err != nil {
		t.Fatalf("marshalling a risk: %v", err)
	}
	const want = `{"webhook":{"kind":"Validating","configuration":"c","name":"n"},"kind":"SelfDeadlock","severity":"critical","detail":"d","fix":"f"}`
	if string(b) != want {
		t.Errorf("JSON:\n got  %s\n want %s", b, want)
	}
}

// TestAnalyzeHugeSelectorIsQuick guards against a selector evaluated
// once per namespace and path turning into seconds.
func TestAnalyzeHugeSelectorIsQuick(t *testing.T) {
	huge := &metav1.LabelSelector{MatchExpressions: make([]metav1.LabelSelectorRequirement, 0, 10000)}
	for i := range 10000 {
		huge.MatchExpressions = append(huge.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: fmt.Sprintf("hookscope.test/l%d", i), Operator: metav1.LabelSelectorOpDoesNotExist})
	}
	var hooks []testHook
	for i := range 5 {
		hooks = append(hooks, testHook{name: fmt.Sprint("h", i), nsSel: huge, objSel: huge, svcNS: "policy",
			rules: []admissionv1.RuleWithOperations{rule("*", "*", "*")}})
	}
	var nss []*corev1.Namespace
	for i := range 200 {
		nss = append(nss, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("ns-", i)}})
	}
	vwcs, mwcs := configs(hooks)
	start := time.Now()
	got := risk.Analyze(vwcs, mwcs, nss, nil)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	// DoesNotExist on labels no namespace or pod has selects everything.
	if !slices.ContainsFunc(got, func(r risk.Risk) bool { return r.Kind == risk.BlocksSystemPods }) {
		t.Errorf("huge all-selecting selector: no BlocksSystemPods in %d risks", len(got))
	}
}

func BenchmarkAnalyze(b *testing.B) {
	palette := [][]admissionv1.RuleWithOperations{
		{rule("CREATE", "", "pods")},
		{rule("CREATE,UPDATE", "", "configmaps")},
		{rule("*", "apps", "deployments,statefulsets,daemonsets")},
		{rule("CREATE,UPDATE", "*", "*/*")},
		{rule("UPDATE", "coordination.k8s.io", "leases")},
		{rule("CREATE", "", "secrets,services"), rule("UPDATE", "networking.k8s.io", "ingresses")},
		{rule("CREATE,UPDATE", "example.com", "widgets,gadgets/status", "v1alpha1")},
		{rule("UPDATE", "", "nodes/status")},
		{scoped(rule("*", "", "*"), admissionv1.NamespacedScope)},
		nil,
	}
	var hooks []testHook
	backends := map[callout.Ref][]callout.Backend{}
	for c := range 50 {
		for w := range 10 {
			h := testHook{
				name:     fmt.Sprintf("cfg-%d-%d", c, w),
				mutating: c%2 == 0,
				reinvoke: c%4 == 0,
				ignore:   w%3 == 0,
				timeout:  int32(1 + (c+w)%10),
				rules:    palette[(c+w)%len(palette)],
				svcNS:    fmt.Sprint("team-", c%20),
			}
			switch w % 4 {
			case 1:
				h.nsSel = notIn("kube-system", h.svcNS)
			case 2:
				h.nsSel = &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprint(c % 5)}}
			case 3:
				h.objSel = &metav1.LabelSelector{MatchLabels: map[string]string{"inject": "true"}}
			}
			hooks = append(hooks, h)
			var pods []string
			for p := range 10 {
				pods = append(pods, fmt.Sprintf("%s-%d@node-%d", h.name, p, (c*10+w+p)%30))
			}
			backends[refOf(h)] = backendPods(h.svcNS, pods...)
		}
	}
	var nss []*corev1.Namespace
	for i := range 100 {
		nss = append(nss, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("team-", i),
			Labels: map[string]string{"team": fmt.Sprint(i % 5)}}})
	}
	vwcs, mwcs := configs(hooks)
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(risk.Analyze(vwcs, mwcs, nss, backends))
	}
	b.ReportMetric(float64(n), "risks")
}
