package inventory

import (
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// The resources the inventory reads as typed objects (the others:
// apiServicesGVR, crdsGVR, certificatesGVR).
var (
	validatingGVR = admissionv1.SchemeGroupVersion.WithResource("validatingwebhookconfigurations")
	mutatingGVR   = admissionv1.SchemeGroupVersion.WithResource("mutatingwebhookconfigurations")
	servicesGVR   = corev1.SchemeGroupVersion.WithResource("services")
	podsGVR       = corev1.SchemeGroupVersion.WithResource("pods")
	slicesGVR     = discoveryv1.SchemeGroupVersion.WithResource("endpointslices")
	policiesGVR   = networkingv1.SchemeGroupVersion.WithResource("networkpolicies")
	budgetsGVR    = policyv1.SchemeGroupVersion.WithResource("poddisruptionbudgets")
)
