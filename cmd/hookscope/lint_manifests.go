package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/inventory"
)

// manifestSet is what lint reads of the manifests: the call-outs, and the
// objects that say where and how their backends run.
type manifestSet struct {
	vwcs       []admissionv1.ValidatingWebhookConfiguration
	mwcs       []admissionv1.MutatingWebhookConfiguration
	apis       []callout.APIService
	convs      []callout.Conversion
	services   []corev1.Service
	namespaces []*corev1.Namespace
	budgets    []*policyv1.PodDisruptionBudget
	policies   []*networkingv1.NetworkPolicy
	workloads  []workload
	// places are where each call-out was read, by Ref kind and
	// configuration (the APIService's or CRD's name for those).
	places  map[string]manifestPlace
	pods    map[callout.PodRef]*corev1.Pod
	skipped int
}

// workload is a Deployment or StatefulSet: the pods a Service selects
// once it is applied.
type workload struct {
	kind, namespace, name string
	replicas              int32
	template              corev1.PodTemplateSpec
}

// collectManifests sorts objs by what lint does with them. namespace is
// that of namespaced objects that name none ("" for default).
func collectManifests(objs []manifestObject, namespace string) (*manifestSet, []error) {
	if namespace == "" {
		namespace = metav1.NamespaceDefault
	}
	s := &manifestSet{places: map[string]manifestPlace{}, pods: map[callout.PodRef]*corev1.Pod{}}
	var errs []error
	for _, o := range objs {
		if err := s.add(o, namespace); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s %s: %w", o.where, o.kind, o.name, err))
		}
	}
	return s, errs
}

// decode reads an object as the API server would with strict field
// validation (kubectl's default): an unknown field is an error, and the
// object is read all the same.
func decode(raw json.RawMessage, into any) error {
	if err := json.Unmarshal(raw, into); err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	return d.Decode(into)
}

func (s *manifestSet) add(o manifestObject, ns string) error {
	gk := o.apiGroup + "/" + o.kind
	if o.apiGroup == "admissionregistration.k8s.io" && o.version != "v1" && (o.kind == "ValidatingWebhookConfiguration" || o.kind == "MutatingWebhookConfiguration") {
		return fmt.Errorf("apiVersion %s/%s: the API server serves webhook configurations as admissionregistration.k8s.io/v1 only (since Kubernetes 1.22); not judged", o.apiGroup, o.version)
	}
	switch gk {
	case "admissionregistration.k8s.io/ValidatingWebhookConfiguration":
		var c admissionv1.ValidatingWebhookConfiguration
		err := decode(o.raw, &c)
		s.vwcs = append(s.vwcs, c)
		s.places[callout.KindValidating+"/"+c.Name] = o.where
		return err
	case "admissionregistration.k8s.io/MutatingWebhookConfiguration":
		var c admissionv1.MutatingWebhookConfiguration
		err := decode(o.raw, &c)
		s.mwcs = append(s.mwcs, c)
		s.places[callout.KindMutating+"/"+c.Name] = o.where
		return err
	case "apiregistration.k8s.io/APIService":
		return s.addAPIService(o)
	case "apiextensions.k8s.io/CustomResourceDefinition":
		return s.addCRD(o)
	}
	return s.addContext(o, gk, ns)
}

// addContext reads the objects that say where the backends run.
func (s *manifestSet) addContext(o manifestObject, gk, ns string) error {
	var (
		meta *metav1.ObjectMeta
		err  error
	)
	switch gk {
	case "/Service":
		var svc corev1.Service
		err = decode(o.raw, &svc)
		svc.Namespace = orDefault(svc.Namespace, ns)
		s.services = append(s.services, svc)
	case "/Namespace":
		n := &corev1.Namespace{}
		err = decode(o.raw, n)
		s.namespaces = append(s.namespaces, n)
	case "policy/PodDisruptionBudget":
		b := &policyv1.PodDisruptionBudget{}
		err, meta = decode(o.raw, b), &b.ObjectMeta
		s.budgets = append(s.budgets, b)
	case "networking.k8s.io/NetworkPolicy":
		p := &networkingv1.NetworkPolicy{}
		err, meta = decode(o.raw, p), &p.ObjectMeta
		s.policies = append(s.policies, p)
	case "apps/Deployment":
		var d appsv1.Deployment
		err = decode(o.raw, &d)
		s.workloads = append(s.workloads, workload{"Deployment", orDefault(d.Namespace, ns), d.Name, replicas(d.Spec.Replicas), d.Spec.Template})
	case "apps/StatefulSet":
		var st appsv1.StatefulSet
		err = decode(o.raw, &st)
		s.workloads = append(s.workloads, workload{"StatefulSet", orDefault(st.Namespace, ns), st.Name, replicas(st.Spec.Replicas), st.Spec.Template})
	default:
		s.skipped++
	}
	if meta != nil && meta.Namespace == "" {
		meta.Namespace = ns
	}
	return err
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// replicas is spec.replicas as the API server defaults it.
func replicas(n *int32) int32 {
	if n == nil {
		return 1
	}
	return *n
}

// apiServiceManifest is the part of an APIService lint reads.
type apiServiceManifest struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		Group                 string `json:"group"`
		Version               string `json:"version"`
		CABundle              []byte `json:"caBundle"`
		InsecureSkipTLSVerify bool   `json:"insecureSkipTLSVerify"`
		Service               *struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
			Port      *int32 `json:"port"`
		} `json:"service"`
	} `json:"spec"`
}

func (s *manifestSet) addAPIService(o manifestObject) error {
	var m apiServiceManifest
	if err := json.Unmarshal(o.raw, &m); err != nil {
		return err
	}
	if m.Spec.Service == nil {
		s.skipped++ // served by the API server itself: no call-out
		return nil
	}
	a := callout.APIService{Name: m.Metadata.Name, Group: m.Spec.Group, Version: m.Spec.Version, CABundle: m.Spec.CABundle,
		InsecureSkipTLSVerify: m.Spec.InsecureSkipTLSVerify,
		Service:               &callout.ServiceRef{Namespace: m.Spec.Service.Namespace, Name: m.Spec.Service.Name, Port: 443}}
	if m.Spec.Service.Port != nil {
		a.Service.Port = *m.Spec.Service.Port
	}
	s.apis = append(s.apis, a)
	s.places[callout.KindAPIService+"/"+a.Name] = o.where
	return nil
}

func (s *manifestSet) addCRD(o manifestObject) error {
	c, ok, err := inventory.ConversionFromJSON(o.raw)
	if err != nil {
		return err
	}
	if !ok {
		s.skipped++ // no conversion webhook: no call-out
		return nil
	}
	s.convs = append(s.convs, c)
	s.places[callout.KindConversion+"/"+c.CRD] = o.where
	return nil
}

// withBackends gives each call-out whose Service is among the manifests
// the pods its workloads will run: one per replica, on nodes not known
// yet, at the port the Service forwards the call-out's port to.
func (s *manifestSet) withBackends(ws []callout.Webhook) []callout.Webhook {
	for i, w := range ws {
		if w.Service == nil || !w.ServiceFound || len(w.ServiceSelector) == 0 {
			continue
		}
		svc := s.service(w.Service.Namespace, w.Service.Name)
		for _, wl := range s.workloads {
			if wl.namespace != w.Service.Namespace || !labels.SelectorFromSet(w.ServiceSelector).Matches(labels.Set(wl.template.Labels)) {
				continue
			}
			port, ok := targetPort(svc, w.Service.Port, wl.template.Spec)
			if !ok {
				continue
			}
			for n := range wl.replicas {
				ref := callout.PodRef{Namespace: wl.namespace, Name: podName(wl, n)}
				ws[i].Backends = append(ws[i].Backends, callout.Backend{Addr: netip.AddrPortFrom(netip.Addr{}, port), Pod: &ref, Ready: true})
				s.pods[ref] = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: wl.namespace, Name: ref.Name, Labels: wl.template.Labels,
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: wl.kind, Name: wl.name, Controller: ptrTo(true)}}},
					Spec: wl.template.Spec}
			}
		}
	}
	return ws
}

// podName names a workload's future pod: the workload when it runs one.
func podName(wl workload, n int32) string {
	if wl.replicas == 1 {
		return fmt.Sprintf("%s %s", wl.kind, wl.name)
	}
	return fmt.Sprintf("%s %s (replica %d of %d)", wl.kind, wl.name, n+1, wl.replicas)
}

func (s *manifestSet) service(ns, name string) *corev1.Service {
	for i := range s.services {
		if s.services[i].Namespace == ns && s.services[i].Name == name {
			return &s.services[i]
		}
	}
	return nil
}

// targetPort is the container port svc forwards port to in pods of spec;
// false when the Service has no such port or a named target the pods do
// not declare.
func targetPort(svc *corev1.Service, port int32, spec corev1.PodSpec) (uint16, bool) {
	if svc == nil {
		return 0, false
	}
	for _, p := range svc.Spec.Ports {
		if p.Port != port {
			continue
		}
		switch t := p.TargetPort; {
		case t.Type == intstr.String && t.StrVal != "":
			for _, c := range spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == t.StrVal {
						return uint16(cp.ContainerPort), true
					}
				}
			}
			return 0, false
		case t.IntVal != 0:
			return uint16(t.IntVal), true
		}
		return uint16(port), true
	}
	return 0, false
}

// backendsByRef are the backends of each call-out, as Analyze takes them.
func (s *manifestSet) backendsByRef(ws []callout.Webhook) map[callout.Ref][]callout.Backend {
	out := map[callout.Ref][]callout.Backend{}
	for _, w := range ws {
		out[w.Ref] = w.Backends
	}
	return out
}

// pod is the pod a workload of the manifests will run, as the risk rules
// read it (labels, owner, ports).
func (s *manifestSet) pod(ref callout.PodRef) *corev1.Pod { return s.pods[ref] }
