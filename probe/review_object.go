package probe

import (
	"encoding/json"
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// The object a review probe asks about: named and labelled so that the
// webhook's logs say what it is, in the default namespace when
// namespaced, by a user that says the same.
const (
	probeObjectName = "hookscope-review-probe"
	probeNamespace  = "default"
	probeLabel      = "hookscope.dev/review-probe"
	probeUser       = "hookscope-review-probe"
)

// reviewSubject is what a review asks about: an operation on an object of
// one resource.
type reviewSubject struct {
	resource  metav1.GroupVersionResource
	kind      metav1.GroupVersionKind
	namespace string // empty: cluster-scoped
	operation admissionv1.Operation
}

func (s reviewSubject) String() string {
	gr := s.resource.Resource
	if s.resource.Group != "" {
		gr += "." + s.resource.Group
	}
	name := probeObjectName
	if s.namespace != "" {
		name = s.namespace + "/" + name
	}
	return fmt.Sprintf("%s %s %s", s.operation, gr, name)
}

// knownResource is a resource whose kind and scope the probe knows.
type knownResource struct {
	group, version, resource, kind string
	cluster                        bool
}

// knownResources are the resources webhooks most often match; for
// another, the kind is guessed from the resource's name.
var knownResources = []knownResource{
	{"", "v1", "pods", "Pod", false},
	{"", "v1", "configmaps", "ConfigMap", false},
	{"", "v1", "secrets", "Secret", false},
	{"", "v1", "services", "Service", false},
	{"", "v1", "serviceaccounts", "ServiceAccount", false},
	{"", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", false},
	{"", "v1", "namespaces", "Namespace", true},
	{"", "v1", "nodes", "Node", true},
	{"apps", "v1", "deployments", "Deployment", false},
	{"apps", "v1", "replicasets", "ReplicaSet", false},
	{"apps", "v1", "statefulsets", "StatefulSet", false},
	{"apps", "v1", "daemonsets", "DaemonSet", false},
	{"batch", "v1", "jobs", "Job", false},
	{"batch", "v1", "cronjobs", "CronJob", false},
	{"networking.k8s.io", "v1", "ingresses", "Ingress", false},
	{"networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", false},
	{"coordination.k8s.io", "v1", "leases", "Lease", false},
	{"policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", false},
}

// subjectOf is the first operation on a resource the rules match (CREATE
// when a rule allows it); a Pod CREATE when no rule names one it can send
// (only subresources, or only CONNECT).
func subjectOf(rules []admissionregistrationv1.RuleWithOperations) reviewSubject {
	for _, r := range rules {
		op, ok := operationOf(r.Operations)
		if !ok {
			continue
		}
		for _, res := range r.Resources {
			if k, ok := resolveResource(r.Rule, res); ok {
				s := reviewSubject{resource: metav1.GroupVersionResource{Group: k.group, Version: k.version, Resource: k.resource},
					kind: metav1.GroupVersionKind{Group: k.group, Version: k.version, Kind: k.kind}, operation: op}
				if !k.cluster {
					s.namespace = probeNamespace
				}
				return s
			}
		}
	}
	return reviewSubject{resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, namespace: probeNamespace, operation: admissionv1.Create}
}

// operationOf picks the operation to send of a rule's: CREATE, else
// UPDATE, else DELETE; false for CONNECT alone.
func operationOf(ops []admissionregistrationv1.OperationType) (admissionv1.Operation, bool) {
	has := map[admissionregistrationv1.OperationType]bool{}
	for _, op := range ops {
		has[op] = true
	}
	switch {
	case has[admissionregistrationv1.Create] || has[admissionregistrationv1.OperationAll]:
		return admissionv1.Create, true
	case has[admissionregistrationv1.Update]:
		return admissionv1.Update, true
	case has[admissionregistrationv1.Delete]:
		return admissionv1.Delete, true
	}
	return "", false
}

// resolveResource is the resource res of rule as a concrete group,
// version, kind and scope; false for a subresource.
func resolveResource(rule admissionregistrationv1.Rule, res string) (knownResource, bool) {
	if res == "*/*" {
		res = "*"
	}
	if strings.Contains(res, "/") {
		return knownResource{}, false
	}
	for _, k := range knownResources {
		if (res == "*" || res == k.resource) && matches(rule.APIGroups, k.group) {
			k.version = firstOr(rule.APIVersions, k.version)
			return withScope(k, rule.Scope), true
		}
	}
	if res == "*" || len(rule.APIGroups) == 0 || rule.APIGroups[0] == "*" {
		return knownResource{}, false
	}
	k := knownResource{group: rule.APIGroups[0], version: firstOr(rule.APIVersions, "v1"), resource: res, kind: guessKind(res)}
	return withScope(k, rule.Scope), true
}

// withScope gives k the rule's scope, when it names one.
func withScope(k knownResource, scope *admissionregistrationv1.ScopeType) knownResource {
	if scope != nil && *scope != admissionregistrationv1.AllScopes {
		k.cluster = *scope == admissionregistrationv1.ClusterScope
	}
	return k
}

// matches reports whether a rule's list (groups) holds v or "*".
func matches(list []string, v string) bool {
	for _, s := range list {
		if s == v || s == "*" {
			return true
		}
	}
	return false
}

// firstOr is the first entry of list that is not "*", else or.
func firstOr(list []string, or string) string {
	for _, s := range list {
		if s != "*" {
			return s
		}
	}
	return or
}

// guessKind is a kind for a plural resource name: widgets -> Widget,
// policies -> Policy, addresses -> Address. Custom resources' kinds are
// usually CamelCase; the webhook reads the object, rarely request.kind.
func guessKind(res string) string {
	switch {
	case strings.HasSuffix(res, "ies"):
		res = strings.TrimSuffix(res, "ies") + "y"
	case strings.HasSuffix(res, "sses"), strings.HasSuffix(res, "xes"):
		res = strings.TrimSuffix(res, "es")
	case strings.HasSuffix(res, "s"):
		res = strings.TrimSuffix(res, "s")
	}
	if res == "" {
		return ""
	}
	return strings.ToUpper(res[:1]) + res[1:]
}

// review is the AdmissionReview a review probe sends, and the object it
// asks about (nil for a DELETE, which sends only the old object).
func (s reviewSubject) review(uid string) (body, object []byte, err error) {
	raw, err := json.Marshal(s.object())
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the %s to review: %w", s.kind.Kind, err)
	}
	req := &admissionv1.AdmissionRequest{
		UID: types.UID(uid), Kind: s.kind, Resource: s.resource, RequestKind: &s.kind, RequestResource: &s.resource,
		Name: probeObjectName, Namespace: s.namespace, Operation: s.operation,
		UserInfo: authenticationv1.UserInfo{Username: probeUser, Groups: []string{"system:authenticated"}},
		DryRun:   ptr.To(true),
	}
	options := metav1.TypeMeta{APIVersion: "meta.k8s.io/v1"}
	switch s.operation {
	case admissionv1.Delete:
		req.OldObject = runtime.RawExtension{Raw: raw}
		options.Kind = "DeleteOptions"
	case admissionv1.Update:
		req.Object, req.OldObject = runtime.RawExtension{Raw: raw}, runtime.RawExtension{Raw: raw}
		options.Kind = "UpdateOptions"
		object = raw
	default:
		req.Object = runtime.RawExtension{Raw: raw}
		options.Kind = "CreateOptions"
		object = raw
	}
	opts, err := json.Marshal(map[string]any{"apiVersion": options.APIVersion, "kind": options.Kind, "dryRun": []string{metav1.DryRunAll}})
	if err != nil {
		return nil, nil, err
	}
	req.Options = runtime.RawExtension{Raw: opts}
	body, err = json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	return body, object, err
}

// object is the object the review asks about, as the API server sends it
// to webhooks: defaulted, and a Pod with what the ServiceAccount admission
// plugin adds before any webhook sees it (its token volume), so that a
// patch that applies to real objects applies to it.
func (s reviewSubject) object() any {
	meta := metav1.ObjectMeta{Name: probeObjectName, Namespace: s.namespace, Labels: map[string]string{probeLabel: "true"}}
	tm := metav1.TypeMeta{APIVersion: schemaGV(s.kind), Kind: s.kind.Kind}
	template := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: meta.Labels}, Spec: podSpec()}
	selector := &metav1.LabelSelector{MatchLabels: meta.Labels}
	switch {
	case s.kind.Group == "" && s.kind.Kind == "Pod":
		return &corev1.Pod{TypeMeta: tm, ObjectMeta: meta, Spec: podSpec()}
	case s.kind.Group == "apps" && s.kind.Kind == "Deployment":
		return &appsv1.Deployment{TypeMeta: tm, ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: selector, Template: template}}
	case s.kind.Group == "apps" && s.kind.Kind == "ReplicaSet":
		return &appsv1.ReplicaSet{TypeMeta: tm, ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](1), Selector: selector, Template: template}}
	case s.kind.Group == "apps" && s.kind.Kind == "StatefulSet":
		return &appsv1.StatefulSet{TypeMeta: tm, ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), Selector: selector, Template: template}}
	case s.kind.Group == "apps" && s.kind.Kind == "DaemonSet":
		return &appsv1.DaemonSet{TypeMeta: tm, ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Selector: selector, Template: template}}
	case s.kind.Group == "batch" && s.kind.Kind == "Job":
		template.Spec.RestartPolicy = corev1.RestartPolicyNever
		return &batchv1.Job{TypeMeta: tm, ObjectMeta: meta, Spec: batchv1.JobSpec{Template: template}}
	}
	return &metav1.PartialObjectMetadata{TypeMeta: tm, ObjectMeta: meta}
}

// schemaGV is gvk's apiVersion ("v1", "apps/v1").
func schemaGV(gvk metav1.GroupVersionKind) string {
	if gvk.Group == "" {
		return gvk.Version
	}
	return gvk.Group + "/" + gvk.Version
}

// podSpec is a pod's spec as the API server holds it when webhooks see
// it: defaulted, with the token volume and mount of the default
// ServiceAccount and the not-ready/unreachable tolerations.
func podSpec() corev1.PodSpec {
	const token = "kube-api-access-hookscope"
	tolerate := func(key string) corev1.Toleration {
		return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}
	}
	return corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: "probe", Image: "registry.k8s.io/pause:3.10", ImagePullPolicy: corev1.PullIfNotPresent,
			TerminationMessagePath: corev1.TerminationMessagePathDefault, TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			VolumeMounts: []corev1.VolumeMount{{Name: token, ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}},
		}},
		Volumes: []corev1.Volume{{Name: token, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			DefaultMode: ptr.To[int32](0o644),
			Sources:     []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: ptr.To[int64](3607), Path: "token"}}},
		}}}},
		RestartPolicy: corev1.RestartPolicyAlways, TerminationGracePeriodSeconds: ptr.To[int64](30), DNSPolicy: corev1.DNSClusterFirst,
		ServiceAccountName: "default", DeprecatedServiceAccount: "default", SecurityContext: &corev1.PodSecurityContext{},
		SchedulerName: corev1.DefaultSchedulerName, Priority: ptr.To[int32](0), EnableServiceLinks: ptr.To(true),
		PreemptionPolicy: ptr.To(corev1.PreemptLowerPriority),
		Tolerations:      []corev1.Toleration{tolerate(corev1.TaintNodeNotReady), tolerate(corev1.TaintNodeUnreachable)},
	}
}
