package risk_test

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/risk"
)

// hookBackend is a webhook backend pod in namespace webhooks, labelled
// app=hook, serving https on TCP 8443.
func hookBackend(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "webhooks", Name: name, Labels: map[string]string{"app": "hook"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "hook",
			Ports: []corev1.ContainerPort{
				{Name: "https", ContainerPort: 8443},
				{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
				{Name: "dns", ContainerPort: 8443, Protocol: corev1.ProtocolUDP},
			},
		}}},
	}
}

// policy is a NetworkPolicy; types nil leaves policyTypes empty.
func policy(ns, name string, sel metav1.LabelSelector, types []networkingv1.PolicyType, rules ...networkingv1.NetworkPolicyIngressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: types, Ingress: rules},
	}
}

// denyAll is the usual default-deny: every pod of ns, Ingress, no rules.
func denyAll(ns string) *networkingv1.NetworkPolicy {
	return policy(ns, "deny-all", metav1.LabelSelector{}, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress})
}

// ingressOnly is policyTypes [Ingress].
var ingressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}

// onPorts is a rule on ports from peers (no peers: every source).
func onPorts(ports []networkingv1.NetworkPolicyPort, from ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{Ports: ports, From: from}
}

func tcp(port intstr.IntOrString) []networkingv1.NetworkPolicyPort {
	return []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: &port}}
}

// number is an unset-protocol port (TCP by default).
func number(port int32) []networkingv1.NetworkPolicyPort {
	return []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromInt32(port))}}
}

var (
	fromPods = networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{}}
	fromNS   = networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{
		MatchLabels: map[string]string{corev1.LabelMetadataName: "kube-system"}}}
	fromVPC = networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/16"}}
	appHook = metav1.LabelSelector{MatchLabels: map[string]string{"app": "hook"}}
	// malformed does not parse: NotIn needs values.
	malformed = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "app", Operator: metav1.LabelSelectorOpNotIn}}}
)

// isolated is the Admission of a pod the policies select and admit
// nothing to.
func isolated(policies ...string) risk.Admission {
	return risk.Admission{Isolated: true, Policies: policies}
}

// admitted is the Admission of a pod a rule with no from admits.
func admitted(policies ...string) risk.Admission {
	return risk.Admission{Isolated: true, Admitted: true, Policies: policies}
}

// onHostNetwork is p on the node's network.
func onHostNetwork(p *corev1.Pod) *corev1.Pod {
	p.Spec.HostNetwork = true
	return p
}

// admitsCases are judged on pod webhooks/hook-7f9 (hookBackend) TCP 8443
// unless they say otherwise.
var admitsCases = []struct {
	name     string
	pod      *corev1.Pod
	port     uint16
	policies []*networkingv1.NetworkPolicy
	want     risk.Admission
}{
	{name: "no policies", want: risk.Admission{}},
	{name: "default deny", policies: []*networkingv1.NetworkPolicy{denyAll("webhooks")}, want: isolated("webhooks/deny-all")},
	{name: "only namespaceSelector peers", want: isolated("webhooks/from-ns"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "from-ns", appHook, ingressOnly, onPorts(number(8443), fromNS))}},
	{name: "only podSelector peers", want: isolated("webhooks/from-pods"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "from-pods", appHook, ingressOnly, onPorts(nil, fromPods))}},
	{name: "no from on the port", want: admitted("webhooks/open"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "open", appHook, ingressOnly, onPorts(number(8443)))}},
	{name: "no from and no ports", want: admitted("webhooks/open"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "open", appHook, nil, onPorts(nil))}},
	{name: "another port", want: isolated("webhooks/open"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "open", appHook, ingressOnly, onPorts(number(9443)))}},
	{name: "UDP on the port", want: isolated("webhooks/udp"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "udp", appHook, ingressOnly, onPorts(
			[]networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(8443))}}))}},
	{name: "every TCP port", want: admitted("webhooks/tcp"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "tcp", appHook, ingressOnly, onPorts(
			[]networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP)}}))}},
	{name: "named port of the container", want: admitted("webhooks/named"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "named", appHook, ingressOnly, onPorts(tcp(intstr.FromString("https"))))}},
	{name: "named port of another container port", want: isolated("webhooks/named"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "named", appHook, ingressOnly, onPorts(tcp(intstr.FromString("metrics"))))}},
	{name: "named port declared UDP", want: isolated("webhooks/named"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "named", appHook, ingressOnly, onPorts(tcp(intstr.FromString("dns"))))}},
	{name: "named port no container declares", want: isolated("webhooks/named"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "named", appHook, ingressOnly, onPorts(tcp(intstr.FromString("webhook"))))}},
	{name: "endPort range", want: admitted("webhooks/range"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "range", appHook, ingressOnly, onPorts(
			[]networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromInt32(8000)), EndPort: ptr.To[int32](9000)}}))}},
	{name: "endPort range below the port", want: isolated("webhooks/range"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "range", appHook, ingressOnly, onPorts(
			[]networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromInt32(8000)), EndPort: ptr.To[int32](8442)}}))}},
	{name: "ipBlock only", want: risk.Admission{Isolated: true, IPBlocks: []string{"10.0.0.0/16"}, Policies: []string{"webhooks/vpc"}},
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "vpc", appHook, ingressOnly, onPorts(number(8443), fromNS, fromVPC))}},
	{name: "ipBlock on another port", want: isolated("webhooks/vpc"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "vpc", appHook, ingressOnly, onPorts(number(443), fromVPC))}},
	{name: "policy in another namespace", want: risk.Admission{},
		policies: []*networkingv1.NetworkPolicy{denyAll("default")}},
	{name: "egress only", want: risk.Admission{},
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "egress", metav1.LabelSelector{}, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress})}},
	{name: "no policyTypes implies Ingress", want: isolated("webhooks/implied"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "implied", metav1.LabelSelector{}, nil)}},
	{name: "podSelector does not select the pod", want: risk.Admission{},
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "other", metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}, ingressOnly)}},
	{name: "policies add up", want: admitted("webhooks/deny-all", "webhooks/open"),
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "open", appHook, ingressOnly, onPorts(number(8443))), denyAll("webhooks")}},
	{name: "ipBlocks of several policies", want: risk.Admission{Isolated: true, IPBlocks: []string{"10.0.0.0/16", "192.168.0.0/16"}, Policies: []string{"webhooks/a", "webhooks/b"}},
		policies: []*networkingv1.NetworkPolicy{
			policy("webhooks", "b", appHook, ingressOnly, onPorts(nil, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "192.168.0.0/16"}}, fromVPC)),
			policy("webhooks", "a", appHook, ingressOnly, onPorts(number(8443), fromVPC)),
		}},
	{name: "same policy twice", want: isolated("webhooks/deny-all"),
		policies: []*networkingv1.NetworkPolicy{denyAll("webhooks"), denyAll("webhooks")}},
	{name: "malformed selector skipped", want: isolated("webhooks/deny-all"),
		policies: []*networkingv1.NetworkPolicy{nil, policy("webhooks", "bad", malformed, ingressOnly, onPorts(nil)), denyAll("webhooks")}},
	{name: "host network", pod: onHostNetwork(hookBackend("host")), want: risk.Admission{},
		policies: []*networkingv1.NetworkPolicy{denyAll("webhooks")}},
}

func TestAdmitsCallers(t *testing.T) {
	for _, tc := range admitsCases {
		t.Run(tc.name, func(t *testing.T) {
			pod, port := tc.pod, tc.port
			if pod == nil {
				pod = hookBackend("hook-7f9")
			}
			if port == 0 {
				port = 8443
			}
			got := risk.AdmitsCallers(pod, port, tc.policies)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("AdmitsCallers = %+v, want %+v", got, tc.want)
			}
		})
	}
	if got := risk.AdmitsCallers(nil, 8443, []*networkingv1.NetworkPolicy{denyAll("")}); !reflect.DeepEqual(got, risk.Admission{}) {
		t.Errorf("nil pod: %+v, want the zero Admission", got)
	}
}

func TestAdmissionExplain(t *testing.T) {
	for _, tc := range []struct {
		adm  risk.Admission
		want string
	}{
		{risk.Admission{Isolated: true, Policies: []string{"webhooks/deny-all"}},
			"NetworkPolicy webhooks/deny-all selects pod webhooks/hook-7f9 for ingress and admits nothing on TCP 8443 from outside the cluster's pods: the API server's connections are dropped at the pod"},
		{risk.Admission{Isolated: true, Policies: []string{"webhooks/a", "webhooks/b"}},
			"NetworkPolicies webhooks/a and webhooks/b select pod webhooks/hook-7f9 for ingress and admit nothing on TCP 8443 from outside the cluster's pods: the API server's connections are dropped at the pod"},
		{risk.Admission{Isolated: true, IPBlocks: []string{"10.0.0.0/16"}, Policies: []string{"webhooks/vpc"}},
			"NetworkPolicy webhooks/vpc selects pod webhooks/hook-7f9 for ingress and admits TCP 8443 from outside the cluster's pods only from ipBlock 10.0.0.0/16: the control plane's addresses must be inside it (hookscope cannot know them), or the API server's connections are dropped at the pod"},
		{risk.Admission{Isolated: true, Admitted: true, Policies: []string{"webhooks/open"}},
			"NetworkPolicy webhooks/open selects pod webhooks/hook-7f9 for ingress and a rule admits TCP 8443 from every source: the API server's connections reach the pod"},
		{risk.Admission{},
			"no NetworkPolicy selects pod webhooks/hook-7f9 for ingress: nothing stops the API server's connections to TCP 8443"},
	} {
		if got := tc.adm.Explain("webhooks/hook-7f9", 8443); got != tc.want {
			t.Errorf("Explain(%+v) =\n%s\nwant\n%s", tc.adm, got, tc.want)
		}
	}
}

// webhookOn is a webhook calling Service webhooks/hook, served by pods
// at 10.0.1.x:8443 in order.
func webhookOn(policy string, pods ...string) callout.Webhook {
	w := callout.Webhook{
		Ref:           callout.Ref{Kind: "Validating", Configuration: "hook", Name: "check.example.com"},
		FailurePolicy: policy,
		Service:       &callout.ServiceRef{Namespace: "webhooks", Name: "hook", Port: 443},
	}
	for i, p := range pods {
		w.Backends = append(w.Backends, callout.Backend{
			Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)}), 8443),
			Pod:  &callout.PodRef{Namespace: "webhooks", Name: p, Node: "node-1"},
		})
	}
	return w
}

// netpolPods are the backend pods TestNetworkPolicies knows, by name:
// hook-canary and hook-canary2 are labelled track=canary, hook-host is
// on the host network.
func netpolPods() map[string]*corev1.Pod {
	pods := map[string]*corev1.Pod{}
	for _, p := range []*corev1.Pod{hookBackend("hook-7f9"), hookBackend("hook-a1"), hookBackend("hook-b2"),
		hookBackend("hook-canary"), hookBackend("hook-canary2"), onHostNetwork(hookBackend("hook-host"))} {
		if strings.HasPrefix(p.Name, "hook-canary") {
			p.Labels["track"] = "canary"
		}
		pods[p.Name] = p
	}
	return pods
}

// byURL is w called by URL instead of its Service.
func byURL(w callout.Webhook) callout.Webhook {
	w.Service, w.URL = nil, "https://hook.example.com/check"
	return w
}

// podless is w with its first backend's pod unknown.
func podless(w callout.Webhook) callout.Webhook {
	w.Backends[0].Pod = nil
	return w
}

var (
	deny        = []*networkingv1.NetworkPolicy{denyAll("webhooks")}
	canaryTrack = metav1.LabelSelector{MatchLabels: map[string]string{"track": "canary"}}
)

var netpolCases = []struct {
	name     string
	webhook  callout.Webhook
	policies []*networkingv1.NetworkPolicy
	sev      risk.Severity // "" for no risk
	detail   []string      // substrings the detail must hold
	fix      string
}{
	{name: "default deny, Fail", webhook: webhookOn("Fail", "hook-7f9"), policies: deny, sev: risk.Critical,
		detail: []string{"webhook Validating/hook/check.example.com (failurePolicy Fail): NetworkPolicy webhooks/deny-all selects pod webhooks/hook-7f9 for ingress and admits nothing on TCP 8443",
			"can never be called, so every write it matches is rejected."},
		fix: "add an ingress rule to NetworkPolicy webhooks/deny-all that admits TCP 8443 from the control plane (an ipBlock of the VPC CIDR on EKS, or no from at all)"},
	{name: "default deny, Ignore", webhook: webhookOn("Ignore", "hook-7f9"), policies: deny, sev: risk.Warning,
		detail: []string{"(failurePolicy Ignore): NetworkPolicy webhooks/deny-all selects pod webhooks/hook-7f9", "its checks never run"},
		fix:    "add an ingress rule to NetworkPolicy webhooks/deny-all that admits TCP 8443"},
	{name: "every backend denied", webhook: webhookOn("", "hook-7f9", "hook-a1", "hook-b2"), policies: deny, sev: risk.Critical,
		detail: []string{"(failurePolicy Fail)", "pod webhooks/hook-7f9 ", "(likewise 2 more of its 3 backend pods)"}},
	{name: "one backend of two denied", webhook: webhookOn("Fail", "hook-a1", "hook-canary"), sev: risk.Warning,
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "canary", canaryTrack, ingressOnly)},
		detail:   []string{"NetworkPolicy webhooks/canary selects pod webhooks/hook-canary", "Calls to that pod (1 of its 2 backend pods) time out, and the writes they carry are rejected."},
		fix:      "NetworkPolicy webhooks/canary that admits TCP 8443"},
	{name: "two backends of three denied, Ignore", webhook: webhookOn("Ignore", "hook-canary", "hook-a1", "hook-canary2"), sev: risk.Warning,
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "canary", canaryTrack, ingressOnly)},
		detail: []string{"(failurePolicy Ignore): NetworkPolicy webhooks/canary selects pod webhooks/hook-canary for ingress", "(likewise 1 more of its 3 backend pods)",
			"Calls to those 2 of its 3 backend pods time out, and the writes they carry pass unchecked."}},
	{name: "two policies deny", webhook: webhookOn("Fail", "hook-7f9"), sev: risk.Critical,
		policies: []*networkingv1.NetworkPolicy{denyAll("webhooks"), policy("webhooks", "from-ns", appHook, ingressOnly, onPorts(nil, fromNS))},
		detail:   []string{"NetworkPolicies webhooks/deny-all and webhooks/from-ns select pod webhooks/hook-7f9"},
		fix:      "add an ingress rule to any one of NetworkPolicies webhooks/deny-all and webhooks/from-ns (their rules add up) that admits TCP 8443"},
	{name: "ipBlock only", webhook: webhookOn("Fail", "hook-7f9"), sev: risk.Warning,
		policies: []*networkingv1.NetworkPolicy{policy("webhooks", "vpc", appHook, ingressOnly, onPorts(number(8443), fromVPC))},
		detail:   []string{"NetworkPolicy webhooks/vpc selects pod webhooks/hook-7f9", "TCP 8443", "only from ipBlock 10.0.0.0/16: the control plane's addresses must be inside it (hookscope cannot know them)"},
		fix:      "check that the control plane's addresses are inside 10.0.0.0/16 (on EKS, the cluster's VPC CIDR, where its network interfaces are), or add an ingress rule to NetworkPolicy webhooks/vpc that admits TCP 8443 with no from at all"},
	{name: "denied beats ipBlock", webhook: webhookOn("Fail", "hook-a1", "hook-canary"), sev: risk.Warning,
		policies: []*networkingv1.NetworkPolicy{
			policy("webhooks", "vpc", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "track", Operator: metav1.LabelSelectorOpDoesNotExist}}}, ingressOnly, onPorts(nil, fromVPC)),
			policy("webhooks", "canary", canaryTrack, ingressOnly),
		},
		detail: []string{"NetworkPolicy webhooks/canary selects pod webhooks/hook-canary for ingress and admits nothing on TCP 8443"},
		fix:    "add an ingress rule to NetworkPolicy webhooks/canary that admits TCP 8443"},
	{name: "ipBlocks on every backend", webhook: webhookOn("Ignore", "hook-a1", "hook-canary"), sev: risk.Warning,
		policies: []*networkingv1.NetworkPolicy{
			policy("webhooks", "vpc", appHook, ingressOnly, onPorts(nil, fromVPC)),
			policy("webhooks", "canary", canaryTrack, ingressOnly,
				onPorts(number(8443), networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "192.168.0.0/16"}})),
		},
		detail: []string{"NetworkPolicy webhooks/vpc selects pod webhooks/hook-a1 for ingress and admits TCP 8443 from outside the cluster's pods only from ipBlock 10.0.0.0/16",
			"(likewise 1 more of its 2 backend pods)", "writes they carry pass unchecked."},
		fix: "inside 10.0.0.0/16"},
	{name: "admitted", webhook: webhookOn("Fail", "hook-7f9"),
		policies: append([]*networkingv1.NetworkPolicy{policy("webhooks", "open", appHook, ingressOnly, onPorts(tcp(intstr.FromString("https"))))}, deny...)},
	{name: "no policies", webhook: webhookOn("Fail", "hook-7f9")},
	{name: "host network", webhook: webhookOn("Fail", "hook-host"), policies: deny},
	{name: "host network beside a denied pod", webhook: webhookOn("Fail", "hook-host", "hook-7f9"), policies: deny, sev: risk.Warning,
		detail: []string{"selects pod webhooks/hook-7f9 ", "Calls to that pod (1 of its 2 backend pods) time out"}},
	{name: "URL webhook", webhook: byURL(webhookOn("Fail", "hook-7f9")), policies: deny},
	{name: "backend without pod", webhook: podless(webhookOn("Fail", "hook-7f9")), policies: deny},
	{name: "unknown pod", webhook: webhookOn("Fail", "gone"), policies: deny},
	{name: "malformed selector", webhook: webhookOn("Fail", "hook-7f9"),
		policies: []*networkingv1.NetworkPolicy{nil, policy("webhooks", "bad", malformed, ingressOnly)}},
	{name: "one pod on two addresses", webhook: webhookOn("Fail", "hook-7f9", "hook-7f9"), policies: deny, sev: risk.Critical},
}

func TestNetworkPolicies(t *testing.T) {
	pods := netpolPods()
	lookup := func(r callout.PodRef) *corev1.Pod { return pods[r.Name] }
	for _, tc := range netpolCases {
		t.Run(tc.name, func(t *testing.T) {
			got := risk.NetworkPolicies([]callout.Webhook{tc.webhook}, tc.policies, lookup)
			if tc.sev == "" {
				if len(got) != 0 {
					t.Fatalf("want no risk, got %+v", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("want one risk, got %+v", got)
			}
			r := got[0]
			if r.Kind != risk.NetworkPolicyDenies || r.Severity != tc.sev || r.Webhook != tc.webhook.Ref {
				t.Errorf("got %s %s for %s, want NetworkPolicyDenies %s for %s", r.Kind, r.Severity, r.Webhook, tc.sev, tc.webhook.Ref)
			}
			for _, s := range tc.detail {
				if !strings.Contains(r.Detail, s) {
					t.Errorf("detail does not hold %q:\n%s", s, r.Detail)
				}
			}
			if strings.Contains(r.Detail, "likewise") != strings.Contains(strings.Join(tc.detail, " "), "likewise") {
				t.Errorf("detail counts pods it should not (or misses them):\n%s", r.Detail)
			}
			if !strings.Contains(r.Fix, tc.fix) {
				t.Errorf("fix does not hold %q:\n%s", tc.fix, r.Fix)
			}
		})
	}
}

func TestNetworkPoliciesNilLookup(t *testing.T) {
	if got := risk.NetworkPolicies([]callout.Webhook{webhookOn("Fail", "hook-7f9")}, []*networkingv1.NetworkPolicy{denyAll("webhooks")}, nil); len(got) != 0 {
		t.Fatalf("nil pod lookup: want no risk, got %+v", got)
	}
}

// TestNetworkPoliciesOrder: critical first, one risk per webhook.
func TestNetworkPoliciesOrder(t *testing.T) {
	ignore, fail := webhookOn("Ignore", "hook-7f9"), webhookOn("Fail", "hook-a1", "hook-b2")
	ignore.Ref.Name, fail.Ref.Name = "a.example.com", "b.example.com"
	pods := map[string]*corev1.Pod{"hook-7f9": hookBackend("hook-7f9"), "hook-a1": hookBackend("hook-a1"), "hook-b2": hookBackend("hook-b2")}
	got := risk.NetworkPolicies([]callout.Webhook{ignore, fail}, []*networkingv1.NetworkPolicy{denyAll("webhooks")},
		func(r callout.PodRef) *corev1.Pod { return pods[r.Name] })
	if len(got) != 2 || got[0].Webhook != fail.Ref || got[0].Severity != risk.Critical || got[1].Webhook != ignore.Ref || got[1].Severity != risk.Warning {
		t.Fatalf("want b.example.com critical then a.example.com warning, got %+v", got)
	}
}
