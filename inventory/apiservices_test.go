package inventory

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// metricsServer is metrics-server's APIService as the API server returns
// it, with its backend gone.
const metricsServer = `{
  "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
  "metadata": {"name": "v1beta1.metrics.k8s.io", "labels": {"k8s-app": "metrics-server"}},
  "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100, "versionPriority": 100,
    "insecureSkipTLSVerify": true, "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443}},
  "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints",
    "message": "endpoints for service/metrics-server in \"kube-system\" have no addresses with port name \"https\"",
    "lastTransitionTime": "2026-12-06T02:00:00Z"}]}
}`

func TestAPIServiceOf(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      callout.APIService
	}{
		{"metrics-server, no endpoints", metricsServer, callout.APIService{
			Name: "v1beta1.metrics.k8s.io", Group: "metrics.k8s.io", Version: "v1beta1", InsecureSkipTLSVerify: true,
			Service:   &callout.ServiceRef{Namespace: "kube-system", Name: "metrics-server", Port: 443},
			Available: callout.Condition{Status: "False", Reason: "MissingEndpoints", Message: `endpoints for service/metrics-server in "kube-system" have no addresses with port name "https"`}}},
		{"served by the API server itself", `{"metadata": {"name": "v1.apps"}, "spec": {"group": "apps", "version": "v1"}, "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}}`,
			callout.APIService{Name: "v1.apps", Group: "apps", Version: "v1", Available: callout.Condition{Status: "True", Reason: "Local"}}},
		{"a caBundle and no port", `{"metadata": {"name": "v1alpha1.x.example.com"}, "spec": {"group": "x.example.com", "version": "v1alpha1", "caBundle": "LS0tLQ==", "service": {"name": "x", "namespace": "x"}}}`,
			callout.APIService{Name: "v1alpha1.x.example.com", Group: "x.example.com", Version: "v1alpha1", CABundle: []byte("----"),
				Service: &callout.ServiceRef{Namespace: "x", Name: "x", Port: 443}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u unstructured.Unstructured
			if err := json.Unmarshal([]byte(tc.raw), &u.Object); err != nil {
				t.Fatal(err)
			}
			got, err := apiServiceOf(&u)
			if err != nil {
				t.Fatal(err)
			}
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(tc.want)
			if string(gj) != string(wj) || string(got.CABundle) != string(tc.want.CABundle) {
				t.Errorf("got %s (caBundle %q), want %s", gj, got.CABundle, wj)
			}
		})
	}
	var u unstructured.Unstructured
	u.Object = map[string]any{"metadata": map[string]any{"name": "bad"}, "spec": map[string]any{"caBundle": 42}}
	if _, err := apiServiceOf(&u); err == nil {
		t.Error("an APIService whose caBundle is a number was read")
	}
}

// TestAggregatedAPIResolves: an APIService resolves to its Service's
// endpoints like a webhook, and its objects' problem carries the API
// server's own availability verdict.
func TestAggregatedAPIResolves(t *testing.T) {
	var u unstructured.Unstructured
	if err := json.Unmarshal([]byte(metricsServer), &u.Object); err != nil {
		t.Fatal(err)
	}
	api, err := apiServiceOf(&u)
	if err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "metrics-server"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443}}}}
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "metrics-server-x",
		Labels: map[string]string{discoveryv1.LabelServiceName: "metrics-server"}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To[int32](10250)}}}
	ws := ResolveCallOuts(callout.CallOuts(nil, nil, []callout.APIService{api, {Name: "v1.apps", Group: "apps", Version: "v1"}}),
		[]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{slice})
	describeAPIs(ws, []callout.APIService{api})
	if len(ws) != 1 {
		t.Fatalf("resolved %d call-outs, want metrics-server's alone (v1.apps is the API server's own)", len(ws))
	}
	w := ws[0]
	if w.Ref != (callout.Ref{Kind: callout.KindAPIService, Configuration: "v1beta1.metrics.k8s.io", Name: "v1beta1.metrics.k8s.io"}) ||
		w.API != "metrics.k8s.io/v1beta1" || !w.InsecureSkipTLSVerify || w.ServerName() != "metrics-server.kube-system.svc" {
		t.Errorf("resolved %+v", w)
	}
	class, detail := Problem(w)
	want := `no endpoints available for service "metrics-server"; the API server marks APIService v1beta1.metrics.k8s.io Available=False (MissingEndpoints): endpoints for service/metrics-server in "kube-system" have no addresses with port name "https"`
	if class != findings.NoEndpoints || detail != want {
		t.Errorf("Problem = %s, %q; want NoEndpoints, %q", class, detail, want)
	}
	if e := findings.EffectOf(w, class); e != findings.APIUnavailable {
		t.Errorf("effect %q, want %q", e, findings.APIUnavailable)
	}
	if fix := findings.Remediation(class, w); !strings.Contains(fix, "requests to metrics.k8s.io/v1beta1 fail") || strings.Contains(fix, "failurePolicy") {
		t.Errorf("fix %q: want what fails, and no failurePolicy (an APIService has none)", fix)
	}
}
