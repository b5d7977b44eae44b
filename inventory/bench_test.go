package inventory

import (
	"fmt"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// BenchmarkResolve measures one inventory rebuild: 500 webhooks in 50
// configurations over 100 Services with 5,000 endpoints.
func BenchmarkResolve(b *testing.B) {
	var (
		vwcs   []*admissionv1.ValidatingWebhookConfiguration
		svcs   []*corev1.Service
		slices []*discoveryv1.EndpointSlice
	)
	for s := range 100 {
		name := fmt.Sprintf("svc-%d", s)
		svcs = append(svcs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "hooks", Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(8443)}}}})
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "hooks", Name: name + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To[int32](8443)}}}
		for e := range 50 {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", s/250, s%250, e+1)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}, NodeName: ptr.To(fmt.Sprintf("node-%d", e%20)),
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "hooks", Name: fmt.Sprintf("%s-%d", name, e)}})
		}
		slices = append(slices, es)
	}
	for c := range 50 {
		cfg := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cfg-%d", c)}}
		for w := range 10 {
			cfg.Webhooks = append(cfg.Webhooks, admissionv1.ValidatingWebhook{Name: fmt.Sprintf("w%d.cfg%d.example.com", w, c),
				ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "hooks", Name: fmt.Sprintf("svc-%d", (c*10+w)%100)}}})
		}
		vwcs = append(vwcs, cfg)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if ws := Resolve(vwcs, nil, svcs, slices); len(ws) != 500 || len(ws[0].Backends) != 50 {
			b.Fatalf("resolved %d webhooks", len(ws))
		}
	}
}
