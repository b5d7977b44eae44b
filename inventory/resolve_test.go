package inventory

import (
	"net/netip"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/callout"
)

func webhookConfig(svcName string, port *int32, fp admissionv1.FailurePolicyType) *admissionv1.ValidatingWebhookConfiguration {
	return &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg"},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name:          "vpod.example.com",
			FailurePolicy: &fp,
			ClientConfig: admissionv1.WebhookClientConfig{
				Service:  &admissionv1.ServiceReference{Namespace: "hooks", Name: svcName, Port: port, Path: ptr.To("/validate")},
				CABundle: []byte("pem"),
			},
		}},
	}
}

func service(portName string, port int32, target intstr.IntOrString) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "hooks", Name: "hook-svc"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: portName, Port: port, TargetPort: target}}},
	}
}

func slice(portName string, port int32, ready bool, addrs ...string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "hooks", Name: "hook-svc-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "hook-svc"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(port)}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  addrs,
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)},
			NodeName:   ptr.To("node-0"),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "hooks", Name: "hook-0"},
		}},
	}
}

func TestResolve(t *testing.T) {
	cases := []struct {
		name   string
		cfg    *admissionv1.ValidatingWebhookConfiguration
		svcs   []*corev1.Service
		slices []*discoveryv1.EndpointSlice
		want   []string // backend addresses
		ready  bool
	}{
		{"numbered target port", webhookConfig("hook-svc", nil, admissionv1.Fail),
			[]*corev1.Service{service("https", 443, intstr.FromInt32(8443))},
			[]*discoveryv1.EndpointSlice{slice("https", 8443, true, "10.0.0.7")},
			[]string{"10.0.0.7:8443"}, true},
		{"named target port resolved by the slice", webhookConfig("hook-svc", ptr.To[int32](9443), admissionv1.Ignore),
			[]*corev1.Service{service("webhook", 9443, intstr.FromString("webhook-tls"))},
			[]*discoveryv1.EndpointSlice{slice("webhook", 10250, false, "10.0.0.8", "10.0.0.9")},
			[]string{"10.0.0.8:10250", "10.0.0.9:10250"}, false},
		{"service not found", webhookConfig("missing", nil, admissionv1.Fail), nil, nil, nil, false},
		{"port the service lacks", webhookConfig("hook-svc", ptr.To[int32](8080), admissionv1.Fail),
			[]*corev1.Service{service("https", 443, intstr.FromInt32(8443))},
			[]*discoveryv1.EndpointSlice{slice("https", 8443, true, "10.0.0.7")}, nil, false},
		{"malformed endpoint address skipped", webhookConfig("hook-svc", nil, admissionv1.Fail),
			[]*corev1.Service{service("https", 443, intstr.FromInt32(8443))},
			[]*discoveryv1.EndpointSlice{slice("https", 8443, true, "not-an-ip", "10.0.0.7")},
			[]string{"10.0.0.7:8443"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ws := Resolve([]*admissionv1.ValidatingWebhookConfiguration{c.cfg}, nil, c.svcs, c.slices)
			if len(ws) != 1 {
				t.Fatalf("got %d webhooks, want 1", len(ws))
			}
			w := ws[0]
			if w.Ref != (callout.Ref{Kind: "Validating", Configuration: "cfg", Name: "vpod.example.com"}) {
				t.Errorf("ref = %+v", w.Ref)
			}
			if w.FailurePolicy != string(*c.cfg.Webhooks[0].FailurePolicy) {
				t.Errorf("failurePolicy = %s", w.FailurePolicy)
			}
			if len(w.Backends) != len(c.want) {
				t.Fatalf("backends = %+v, want %v", w.Backends, c.want)
			}
			for i, b := range w.Backends {
				if b.Addr != netip.MustParseAddrPort(c.want[i]) {
					t.Errorf("backend %d = %s, want %s", i, b.Addr, c.want[i])
				}
				if b.Ready != c.ready || b.Pod == nil || b.Pod.Node != "node-0" || b.Pod.Name != "hook-0" {
					t.Errorf("backend %d = %+v", i, b)
				}
			}
			if w.Service.ServerName() != w.Service.Name+".hooks.svc" {
				t.Errorf("server name %s", w.Service.ServerName())
			}
		})
	}
}

// TestInvalid: the short text a finding and status show for a
// configuration that cannot be called, never with a URL's password.
func TestInvalid(t *testing.T) {
	for _, c := range []struct {
		cc   admissionv1.WebhookClientConfig
		want string
	}{
		{admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "hooks", Name: "hook-svc"}}, ""},
		{admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "hooks", Name: "Bad_Name"}},
			`service name "Bad_Name" cannot name a Service: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`},
		{admissionv1.WebhookClientConfig{URL: ptr.To("http://admin:s3cret@policy.example.com/v")},
			`url "http://admin:xxxxx@policy.example.com/v": its scheme is "http", not https, it carries user information`},
		{admissionv1.WebhookClientConfig{}, "clientConfig has neither a service nor a url"},
		{admissionv1.WebhookClientConfig{URL: ptr.To("https://h/"), CABundle: []byte("pem")}, "caBundle holds no PEM certificate"},
	} {
		if got := invalid(c.cc); got != c.want {
			t.Errorf("invalid(%+v) = %q, want %q", c.cc, got, c.want)
		}
	}
}

// TestResolveCarriesTheReviewProbeOptIn: a resolved admission webhook
// carries its rules, side effects and its configuration's review-probe
// opt-in, which the agent's review probe reads; without them it sends
// nothing.
func TestResolveCarriesTheReviewProbeOptIn(t *testing.T) {
	cfg := webhookConfig("hook-svc", ptr.To[int32](443), admissionv1.Fail)
	cfg.Annotations = map[string]string{callout.ReviewProbeAnnotation: "true"}
	cfg.Webhooks[0].SideEffects = ptr.To(admissionv1.SideEffectClassNone)
	ws := Resolve([]*admissionv1.ValidatingWebhookConfiguration{cfg}, nil, nil, nil)
	if len(ws) != 1 || ws[0].Admission == nil || !ws[0].Admission.ReviewProbe || ws[0].Admission.SideEffects != "None" || !ws[0].ReviewProbed(false) {
		t.Fatalf("resolved %+v (admission %+v): want the opt-in and side effects carried", ws, ws[0].Admission)
	}
}
