package inventory

import (
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/internal/kube"
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

// newInformer is an informer of r in namespace ("" for all) through api,
// tweak (nil for none) applied to its requests, caching objects of
// example's type with indexers. It never resyncs.
func newInformer(api kube.API, r schema.GroupVersionResource, namespace string, tweak func(*metav1.ListOptions),
	example runtime.Object, indexers cache.Indexers) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformer(api.ListWatch(r, namespace, tweak), example, 0, indexers)
}

// newDynamicInformer is an informer of r, cluster-wide, through api,
// caching unstructured objects; its logs name r.
func newDynamicInformer(api kube.API, r schema.GroupVersionResource) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformerWithOptions(api.ListWatch(r, "", nil), &unstructured.Unstructured{},
		cache.SharedIndexInformerOptions{Indexers: cache.Indexers{}, ObjectDescription: r.String()})
}
