package agent

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// riskTestHook describes one webhook of a test case; each becomes its own
// configuration named after it.
type riskTestHook struct {
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
}

func riskTestRule(ops, groups, resources string, versions ...string) admissionv1.RuleWithOperations {
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

func riskTestScoped(r admissionv1.RuleWithOperations, s admissionv1.ScopeType) admissionv1.RuleWithOperations {
	r.Scope = &s
	return r
}

func riskTestNotIn(nss ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: riskNameLabel, Operator: metav1.LabelSelectorOpNotIn, Values: nss},
	}}
}

func riskTestRef(h riskTestHook) WebhookRef {
	kind := "Validating"
	if h.mutating {
		kind = "Mutating"
	}
	return WebhookRef{Kind: kind, Configuration: h.name, Name: h.name + ".hookscope.test"}
}

func riskTestConfigs(hooks []riskTestHook) ([]*admissionv1.ValidatingWebhookConfiguration, []*admissionv1.MutatingWebhookConfiguration) {
	var vwcs []*admissionv1.ValidatingWebhookConfiguration
	var mwcs []*admissionv1.MutatingWebhookConfiguration
	for _, h := range hooks {
		var cc admissionv1.WebhookClientConfig
		switch {
		case h.noClient:
		case h.svcNS != "":
			cc.Service = &admissionv1.ServiceReference{Namespace: h.svcNS, Name: h.name}
		default:
			u := "https://" + h.name + ".example.com/validate"
			cc.URL = &u
		}
		var fp *admissionv1.FailurePolicyType
		if h.ignore {
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
		ref := riskTestRef(h)
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

// riskTestPods are backends: pod name@node in ns; addresses are made up.
func riskTestPods(ns string, podsAtNodes ...string) []BackendTarget {
	var out []BackendTarget
	for i, pn := range podsAtNodes {
		pod, node, _ := strings.Cut(pn, "@")
		out = append(out, BackendTarget{
			Addr:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 8443),
			Pod:   &PodRef{Namespace: ns, Name: pod, Node: node},
			Ready: true,
		})
	}
	return out
}

func TestAnalyzeRisks(t *testing.T) {
	podsCreate := riskTestRule("CREATE", "", "pods")
	configmaps := riskTestRule("CREATE,UPDATE", "", "configmaps")
	k8sApp := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k8s-app", Operator: metav1.LabelSelectorOpExists}}}

	huge := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := range 10000 {
		huge.MatchLabels[fmt.Sprintf("hookscope.test/label-%d", i)] = "x"
	}

	tests := []struct {
		name       string
		hooks      []riskTestHook
		namespaces []*corev1.Namespace
		backends   map[string][]BackendTarget // by hook name
		want       []string                   // "<hook> <kind> <severity>"
		details    map[RiskKind][]string      // substrings of the Detail of that kind
	}{
		{
			name:    "system pods matched through an objectSelector",
			hooks:   []riskTestHook{{name: "cni-labels", rules: []admissionv1.RuleWithOperations{podsCreate}, objSel: k8sApp, svcNS: "policy"}},
			want:    []string{"cni-labels BlocksSystemPods critical"},
			details: map[RiskKind][]string{BlocksSystemPods: {"kube-system", "aws-node", "coredns", "Validating/cni-labels/cni-labels.hookscope.test"}},
		},
		{
			name:     "catch-all pod webhook",
			hooks:    []riskTestHook{{name: "pods", rules: []admissionv1.RuleWithOperations{podsCreate}, svcNS: "policy"}},
			backends: map[string][]BackendTarget{"pods": riskTestPods("policy", "pods-a@n1", "pods-b@n2")},
			want:     []string{"pods BlocksSystemPods critical", "pods SelfDeadlock critical", "pods NoExclusion warning"},
			details:  map[RiskKind][]string{SelfDeadlock: {"pods policy/pods-a and policy/pods-b", "Service policy/pods"}, NoExclusion: {"every pod"}},
		},
		{
			name:    "node and leader-election leases",
			hooks:   []riskTestHook{{name: "leases", rules: []admissionv1.RuleWithOperations{riskTestRule("UPDATE", "coordination.k8s.io", "leases")}}},
			want:    []string{"leases BlocksLeases critical"},
			details: map[RiskKind][]string{BlocksLeases: {"UPDATE of leases in kube-node-lease", "UPDATE of leases in kube-system"}},
		},
		{
			name:    "node status",
			hooks:   []riskTestHook{{name: "nodes", rules: []admissionv1.RuleWithOperations{riskTestRule("UPDATE", "", "nodes/status")}}},
			want:    []string{"nodes BlocksNodes critical"},
			details: map[RiskKind][]string{BlocksNodes: {"nodes/status"}},
		},
		{
			name:    "token reviews",
			hooks:   []riskTestHook{{name: "auth", rules: []admissionv1.RuleWithOperations{riskTestRule("CREATE", "authentication.k8s.io", "tokenreviews")}}},
			want:    []string{"auth BlocksAuth critical"},
			details: map[RiskKind][]string{BlocksAuth: {"tokenreviews"}},
		},
		{
			name:    "certificate signing requests approval",
			hooks:   []riskTestHook{{name: "csr", rules: []admissionv1.RuleWithOperations{riskTestRule("UPDATE", "certificates.k8s.io", "certificatesigningrequests/approval")}}},
			want:    []string{"csr BlocksAuth critical"},
			details: map[RiskKind][]string{BlocksAuth: {"certificatesigningrequests/approval"}},
		},
		{
			name: "self deadlock in its own namespace",
			hooks: []riskTestHook{{name: "self", rules: []admissionv1.RuleWithOperations{podsCreate},
				nsSel: riskTestNotIn("kube-system"), svcNS: "webhook-system"}},
			backends: map[string][]BackendTarget{"self": riskTestPods("webhook-system", "self-a@n1", "self-b@n2")},
			want:     []string{"self SelfDeadlock critical"},
			details:  map[RiskKind][]string{SelfDeadlock: {"webhook-system/self-a", "webhook-system/self-b"}},
		},
		{
			name: "everything, no exclusion",
			hooks: []riskTestHook{{name: "all", rules: []admissionv1.RuleWithOperations{
				riskTestRule("CREATE,UPDATE", "*", "*/*")}}},
			want: []string{"all BlocksSystemPods critical", "all BlocksLeases critical", "all BlocksNodes critical",
				"all BlocksAuth critical", "all NoExclusion warning"},
			details: map[RiskKind][]string{NoExclusion: {"every resource"}},
		},
		{
			name:     "one backend pod",
			hooks:    []riskTestHook{{name: "cm", rules: []admissionv1.RuleWithOperations{configmaps}, svcNS: "policy"}},
			backends: map[string][]BackendTarget{"cm": riskTestPods("policy", "cm-a@n1")},
			want:     []string{"cm SingleReplica warning"},
			details:  map[RiskKind][]string{SingleReplica: {"one pod (policy/cm-a)"}},
		},
		{
			name:     "all backend pods on one node",
			hooks:    []riskTestHook{{name: "cm", rules: []admissionv1.RuleWithOperations{configmaps}, svcNS: "policy"}},
			backends: map[string][]BackendTarget{"cm": riskTestPods("policy", "cm-a@n1", "cm-b@n1")},
			want:     []string{"cm SingleReplica warning"},
			details:  map[RiskKind][]string{SingleReplica: {"2 pods all on node n1"}},
		},
		{
			name:     "one backend pod of an Ignore webhook",
			hooks:    []riskTestHook{{name: "cm", ignore: true, rules: []admissionv1.RuleWithOperations{configmaps}, svcNS: "policy"}},
			backends: map[string][]BackendTarget{"cm": riskTestPods("policy", "cm-a@n1")},
			want:     []string{"cm SingleReplica info", "cm FailOpenSecurity info"},
			details:  map[RiskKind][]string{SingleReplica: {"pass unchecked"}},
		},
		{
			name:     "spread backends are fine",
			hooks:    []riskTestHook{{name: "cm", rules: []admissionv1.RuleWithOperations{configmaps}, svcNS: "policy"}},
			backends: map[string][]BackendTarget{"cm": riskTestPods("policy", "cm-a@n1", "cm-b@n2")},
		},
		{
			name: "stacked timeouts: reinvoked mutating plus validating",
			hooks: []riskTestHook{
				{name: "mutate", mutating: true, reinvoke: true, timeout: 3, rules: []admissionv1.RuleWithOperations{configmaps}},
				{name: "validate", timeout: 4, rules: []admissionv1.RuleWithOperations{configmaps}},
			},
			want:    []string{"mutate StackedTimeouts warning", "validate StackedTimeouts warning"},
			details: map[RiskKind][]string{StackedTimeouts: {"CREATE configmaps in kube-system, kube-node-lease and default", "10 s", "x2 reinvoked"}},
		},
		{
			// Validating webhooks run in parallel: three of 4 s hold a
			// request for 4 s, not 12.
			name: "parallel validating webhooks do not stack",
			hooks: []riskTestHook{
				{name: "v1", timeout: 4, rules: []admissionv1.RuleWithOperations{configmaps}},
				{name: "v2", timeout: 4, rules: []admissionv1.RuleWithOperations{configmaps}},
				{name: "v3", timeout: 4, rules: []admissionv1.RuleWithOperations{configmaps}},
			},
		},
		{
			name: "stacked timeouts on leases are critical, even with Ignore",
			hooks: []riskTestHook{
				{name: "m1", mutating: true, ignore: true, timeout: 5, rules: []admissionv1.RuleWithOperations{riskTestRule("UPDATE", "coordination.k8s.io", "leases")}},
				{name: "m2", mutating: true, ignore: true, timeout: 5, rules: []admissionv1.RuleWithOperations{riskTestRule("*", "*", "*")}},
			},
			want: []string{"m1 StackedTimeouts critical", "m2 StackedTimeouts critical",
				"m1 FailOpenSecurity info", "m2 FailOpenSecurity info"},
			details: map[RiskKind][]string{StackedTimeouts: {"UPDATE leases.coordination.k8s.io in kube-", "10 s"}},
		},
		{
			name:    "Ignore webhook on configmaps",
			hooks:   []riskTestHook{{name: "cm", ignore: true, rules: []admissionv1.RuleWithOperations{configmaps}, svcNS: "policy"}},
			want:    []string{"cm FailOpenSecurity info"},
			details: map[RiskKind][]string{FailOpenSecurity: {"writes pass unchecked while the webhook is down"}},
		},
		{
			name: "bad selector, analysis continues",
			hooks: []riskTestHook{
				{name: "bad", rules: []admissionv1.RuleWithOperations{podsCreate}, nsSel: &metav1.LabelSelector{
					MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: "Bogus"}}}},
				{name: "badvalue", rules: []admissionv1.RuleWithOperations{podsCreate}, objSel: &metav1.LabelSelector{
					MatchLabels: map[string]string{"app": strings.Repeat("x", 64)}}},
				{name: "cm", ignore: true, rules: []admissionv1.RuleWithOperations{configmaps}},
			},
			want:    []string{"bad InvalidConfiguration critical", "badvalue InvalidConfiguration critical", "cm FailOpenSecurity info"},
			details: map[RiskKind][]string{InvalidConfiguration: {"cannot be evaluated", "the API server will reject"}},
		},
		{
			name: "well-scoped webhook",
			hooks: []riskTestHook{{name: "scoped", rules: []admissionv1.RuleWithOperations{podsCreate},
				nsSel: riskTestNotIn("kube-system", "webhook-system"), svcNS: "webhook-system"}},
			backends: map[string][]BackendTarget{"scoped": riskTestPods("webhook-system", "a@n1", "b@n2")},
		},
		{
			// kube-system's name label is there even with no Namespace
			// objects, as on every real cluster.
			name: "selector on the synthesized name label",
			hooks: []riskTestHook{{name: "ks", rules: []admissionv1.RuleWithOperations{podsCreate},
				nsSel: &metav1.LabelSelector{MatchLabels: map[string]string{riskNameLabel: "kube-system"}}, svcNS: "policy"}},
			want: []string{"ks BlocksSystemPods critical"},
		},
		{
			name: "selector on the caller's namespace labels",
			hooks: []riskTestHook{{name: "labels", rules: []admissionv1.RuleWithOperations{podsCreate}, svcNS: "policy",
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
			hooks: []riskTestHook{
				{name: "cluster", rules: []admissionv1.RuleWithOperations{riskTestScoped(podsCreate, admissionv1.ClusterScope)}},
				{name: "namespaced", rules: []admissionv1.RuleWithOperations{riskTestScoped(riskTestRule("UPDATE", "", "nodes/status"), admissionv1.NamespacedScope)}},
			},
		},
		{
			name: "subresource rules",
			hooks: []riskTestHook{
				{name: "podstatus", rules: []admissionv1.RuleWithOperations{riskTestRule("CREATE,UPDATE", "", "pods/status")}},
				{name: "nodesonly", rules: []admissionv1.RuleWithOperations{riskTestRule("UPDATE", "", "nodes")}},
			},
			want:    []string{"nodesonly BlocksNodes critical"},
			details: map[RiskKind][]string{BlocksNodes: {"UPDATE of nodes"}},
		},
		{
			name: "matchPolicy Exact on another version does not match, Equivalent does",
			hooks: []riskTestHook{
				{name: "exact", exact: true, rules: []admissionv1.RuleWithOperations{riskTestRule("UPDATE", "coordination.k8s.io", "leases", "v1beta1")}},
				{name: "equivalent", rules: []admissionv1.RuleWithOperations{riskTestRule("UPDATE", "coordination.k8s.io", "leases", "v1beta1")}},
			},
			want: []string{"equivalent BlocksLeases critical"},
		},
		{
			name: "huge selectors",
			hooks: []riskTestHook{
				{name: "hugens", rules: []admissionv1.RuleWithOperations{podsCreate}, nsSel: huge, svcNS: "policy"},
				{name: "hugeobj", rules: []admissionv1.RuleWithOperations{podsCreate}, objSel: huge, svcNS: "policy"},
			},
		},
		{
			name: "nil rules and no clientConfig",
			hooks: []riskTestHook{
				{name: "empty", noClient: true},
				{name: "norules", svcNS: "policy"},
			},
			backends: map[string][]BackendTarget{"norules": riskTestPods("policy", "a@n1", "b@n2")},
			want:     []string{"empty InvalidConfiguration critical"},
			details:  map[RiskKind][]string{InvalidConfiguration: {"neither clientConfig.url nor clientConfig.service"}},
		},
		{
			name:  "timeout out of range",
			hooks: []riskTestHook{{name: "slow", timeout: 45, rules: []admissionv1.RuleWithOperations{configmaps}}},
			want:  []string{"slow InvalidConfiguration critical"},
		},
		{
			name:    "matchConditions are named, not evaluated",
			hooks:   []riskTestHook{{name: "cel", conditions: 2, rules: []admissionv1.RuleWithOperations{podsCreate}}},
			want:    []string{"cel BlocksSystemPods critical"},
			details: map[RiskKind][]string{BlocksSystemPods: {"unless its 2 matchConditions exclude them"}},
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vwcs, mwcs := riskTestConfigs(tc.hooks)
			backends := map[WebhookRef][]BackendTarget{}
			for _, h := range tc.hooks {
				if b, ok := tc.backends[h.name]; ok {
					backends[riskTestRef(h)] = b
				}
			}
			got := AnalyzeRisks(vwcs, mwcs, tc.namespaces, backends)

			var gotKeys []string
			for _, r := range got {
				gotKeys = append(gotKeys, fmt.Sprintf("%s %s %s", r.Webhook.Configuration, r.Kind, r.Severity))
				if r.Detail == "" || r.Fix == "" {
					t.Errorf("%s %s: empty Detail or Fix: %+v", r.Webhook, r.Kind, r)
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
		})
	}
}

func TestAnalyzeRisksOrder(t *testing.T) {
	vwcs, mwcs := riskTestConfigs([]riskTestHook{
		{name: "cm", ignore: true, rules: []admissionv1.RuleWithOperations{riskTestRule("CREATE", "", "configmaps")}},
		{name: "pods", rules: []admissionv1.RuleWithOperations{riskTestRule("CREATE", "", "pods")}},
	})
	got := AnalyzeRisks(vwcs, mwcs, nil, nil)
	if len(got) == 0 || got[0].Severity != riskCritical || got[len(got)-1].Severity != riskInfo {
		t.Fatalf("not sorted by severity: %+v", got)
	}
}

func TestAnalyzeRisksNilInput(t *testing.T) {
	if got := AnalyzeRisks(nil, nil, nil, nil); len(got) != 0 {
		t.Errorf("no configurations: got %+v", got)
	}
	got := AnalyzeRisks([]*admissionv1.ValidatingWebhookConfiguration{nil, {ObjectMeta: metav1.ObjectMeta{Name: "empty"}}},
		[]*admissionv1.MutatingWebhookConfiguration{nil}, []*corev1.Namespace{nil, {}}, nil)
	if len(got) != 0 {
		t.Errorf("empty configurations: got %+v", got)
	}
}

// TestAnalyzeRisksHugeSelectorIsQuick guards against a selector evaluated
// once per namespace and path turning into seconds.
func TestAnalyzeRisksHugeSelectorIsQuick(t *testing.T) {
	huge := &metav1.LabelSelector{MatchExpressions: make([]metav1.LabelSelectorRequirement, 0, 10000)}
	for i := range 10000 {
		huge.MatchExpressions = append(huge.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: fmt.Sprintf("hookscope.test/l%d", i), Operator: metav1.LabelSelectorOpDoesNotExist})
	}
	var hooks []riskTestHook
	for i := range 5 {
		hooks = append(hooks, riskTestHook{name: fmt.Sprint("h", i), nsSel: huge, objSel: huge, svcNS: "policy",
			rules: []admissionv1.RuleWithOperations{riskTestRule("*", "*", "*")}})
	}
	var nss []*corev1.Namespace
	for i := range 200 {
		nss = append(nss, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("ns-", i)}})
	}
	vwcs, mwcs := riskTestConfigs(hooks)
	start := time.Now()
	got := AnalyzeRisks(vwcs, mwcs, nss, nil)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	// DoesNotExist on labels no namespace or pod has selects everything.
	if !slices.ContainsFunc(got, func(r Risk) bool { return r.Kind == BlocksSystemPods }) {
		t.Errorf("huge all-selecting selector: no BlocksSystemPods in %d risks", len(got))
	}
}

func BenchmarkAnalyzeRisks(b *testing.B) {
	palette := [][]admissionv1.RuleWithOperations{
		{riskTestRule("CREATE", "", "pods")},
		{riskTestRule("CREATE,UPDATE", "", "configmaps")},
		{riskTestRule("*", "apps", "deployments,statefulsets,daemonsets")},
		{riskTestRule("CREATE,UPDATE", "*", "*/*")},
		{riskTestRule("UPDATE", "coordination.k8s.io", "leases")},
		{riskTestRule("CREATE", "", "secrets,services"), riskTestRule("UPDATE", "networking.k8s.io", "ingresses")},
		{riskTestRule("CREATE,UPDATE", "example.com", "widgets,gadgets/status", "v1alpha1")},
		{riskTestRule("UPDATE", "", "nodes/status")},
		{riskTestScoped(riskTestRule("*", "", "*"), admissionv1.NamespacedScope)},
		nil,
	}
	var hooks []riskTestHook
	backends := map[WebhookRef][]BackendTarget{}
	for c := range 50 {
		for w := range 10 {
			h := riskTestHook{
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
				h.nsSel = riskTestNotIn("kube-system", h.svcNS)
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
			backends[riskTestRef(h)] = riskTestPods(h.svcNS, pods...)
		}
	}
	var nss []*corev1.Namespace
	for i := range 100 {
		nss = append(nss, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("team-", i),
			Labels: map[string]string{"team": fmt.Sprint(i % 5)}}})
	}
	vwcs, mwcs := riskTestConfigs(hooks)
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(AnalyzeRisks(vwcs, mwcs, nss, backends))
	}
	b.ReportMetric(float64(n), "risks")
}

// A policy engine that validates every pod, with one replica, next to a
// sidecar injector: the risks an SRE would be shown.
func ExampleAnalyzeRisks() {
	fail := admissionv1.Fail
	ifNeeded := admissionv1.IfNeededReinvocationPolicy
	vwcs := []*admissionv1.ValidatingWebhookConfiguration{{
		ObjectMeta: metav1.ObjectMeta{Name: "policy"},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name:          "pods.policy.example.com",
			ClientConfig:  admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "policy", Name: "policy-webhook"}},
			Rules:         []admissionv1.RuleWithOperations{riskTestRule("CREATE,UPDATE", "", "pods")},
			FailurePolicy: &fail,
		}},
	}}
	mwcs := []*admissionv1.MutatingWebhookConfiguration{{
		ObjectMeta: metav1.ObjectMeta{Name: "injector"},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name:               "sidecar.injector.example.com",
			ClientConfig:       admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "mesh", Name: "injector"}},
			Rules:              []admissionv1.RuleWithOperations{riskTestRule("CREATE", "", "pods")},
			NamespaceSelector:  riskTestNotIn("kube-system", "kube-node-lease", "mesh"),
			ReinvocationPolicy: &ifNeeded,
		}},
	}}
	backends := map[WebhookRef][]BackendTarget{
		{Kind: "Validating", Configuration: "policy", Name: "pods.policy.example.com"}: riskTestPods("policy", "policy-webhook-7d9f@node-a"),
	}
	for _, r := range AnalyzeRisks(vwcs, mwcs, nil, backends) {
		fmt.Println(r.Severity, r.Kind, r.Webhook)
	}
	// Output:
	// critical BlocksSystemPods Validating/policy/pods.policy.example.com
	// critical SelfDeadlock Validating/policy/pods.policy.example.com
	// warning StackedTimeouts Mutating/injector/sidecar.injector.example.com
	// warning NoExclusion Validating/policy/pods.policy.example.com
	// warning SingleReplica Validating/policy/pods.policy.example.com
	// warning StackedTimeouts Validating/policy/pods.policy.example.com
}
