package kube

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestKindsOfTheResourcesTheAgentReads: every resource the agent lists has
// its Kind (a wrong guess would make its list unreadable).
func TestKindsOfTheResourcesTheAgentReads(t *testing.T) {
	for r, want := range map[schema.GroupVersionResource]string{
		{Version: "v1", Resource: "pods"}:                                                                   "Pod",
		{Version: "v1", Resource: "services"}:                                                               "Service",
		{Version: "v1", Resource: "namespaces"}:                                                             "Namespace",
		{Version: "v1", Resource: "nodes"}:                                                                  "Node",
		{Version: "v1", Resource: "events"}:                                                                 "Event",
		{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}:                              "EndpointSlice",
		{Group: "apps", Version: "v1", Resource: "replicasets"}:                                             "ReplicaSet",
		{Group: "apps", Version: "v1", Resource: "daemonsets"}:                                              "DaemonSet",
		{Group: "apps", Version: "v1", Resource: "deployments"}:                                             "Deployment",
		{Group: "batch", Version: "v1", Resource: "jobs"}:                                                   "Job",
		{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"}:                                  "PodDisruptionBudget",
		{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}:                            "NetworkPolicy",
		{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"}:                         "HorizontalPodAutoscaler",
		{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}:                                   "Lease",
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}: "ValidatingWebhookConfiguration",
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}:   "MutatingWebhookConfiguration",
	} {
		if got := Kind(r); got != want {
			t.Errorf("%s: kind %q, want %q", r, got, want)
		}
		if !Typed(r) {
			t.Errorf("%s is not read as typed objects", r)
		}
	}
	for _, r := range []schema.GroupVersionResource{
		{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"},
		{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"},
		{Group: "cert-manager.io", Version: "v1", Resource: "certificates"},
	} {
		if Typed(r) || Kind(r) != "" {
			t.Errorf("%s: read as typed objects (kind %q); the agent reads it unstructured", r, Kind(r))
		}
	}
}
