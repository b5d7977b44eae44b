package inventory

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/hookscope/hookscope/callout"
)

// Resolve maps each webhook of the configurations to its backends: the
// Service port it names, that port's target in the Service, and the
// EndpointSlice addresses and ports for it (named target ports resolve
// through the slices, as the API server's endpoint routing does).
func Resolve(vwcs []*admissionv1.ValidatingWebhookConfiguration, mwcs []*admissionv1.MutatingWebhookConfiguration,
	svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) []callout.Webhook {
	return ResolveCallOuts(callout.Hooks(vwcs, mwcs), svcs, slices)
}

// ResolveCallOuts is Resolve for any call-outs (callout.CallOuts).
func ResolveCallOuts(hooks []callout.Hook, svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) []callout.Webhook {
	svcByKey := map[string]*corev1.Service{}
	for _, s := range svcs {
		svcByKey[s.Namespace+"/"+s.Name] = s
	}
	slicesBySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, es := range slices {
		name := es.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		slicesBySvc[es.Namespace+"/"+name] = append(slicesBySvc[es.Namespace+"/"+name], es)
	}
	var out []callout.Webhook
	for _, h := range hooks {
		w := resolveOne(h)
		if s := h.ClientConfig.Service; s != nil && validService(s) {
			key := s.Namespace + "/" + s.Name
			svc := svcByKey[key]
			if svc != nil {
				w.ServiceFound = true
				w.ServiceSelector = svc.Spec.Selector
				for _, p := range svc.Spec.Ports {
					w.ServicePorts = append(w.ServicePorts, p.Port)
				}
			}
			w.Backends = backendsOf(svc, w.Service.Port, slicesBySvc[key])
		}
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref.String() < out[j].Ref.String() })
	return out
}

// resolveOne is what a webhook's configuration says, before its Service
// is looked up.
func resolveOne(h callout.Hook) callout.Webhook {
	cc := h.ClientConfig
	w := callout.Webhook{Ref: h.Ref, FailurePolicy: string(admissionv1.Fail), TimeoutSeconds: 10, CABundle: cc.CABundle}
	if h.FailurePolicy != nil {
		w.FailurePolicy = string(*h.FailurePolicy)
	}
	if h.TimeoutSeconds != nil {
		w.TimeoutSeconds = *h.TimeoutSeconds
	}
	if cc.URL != nil {
		w.URL = *cc.URL
	}
	if s := cc.Service; s != nil {
		ref := &callout.ServiceRef{Namespace: s.Namespace, Name: s.Name, Port: 443}
		if s.Port != nil {
			ref.Port = *s.Port
		}
		if s.Path != nil {
			ref.Path = *s.Path
		}
		w.Service = ref
	}
	w.Invalid = invalid(cc)
	w.InsecureSkipTLSVerify = h.InsecureSkipTLSVerify
	w.Admission = h.Admission()
	w.CAInjection = h.CAInjection
	return w
}

// describeConversions gives the conversion webhooks among ws the kind and
// versions they convert.
func describeConversions(ws []callout.Webhook, convs []callout.Conversion) {
	byCRD := map[string]callout.Conversion{}
	for _, c := range convs {
		byCRD[c.CRD] = c
	}
	for i := range ws {
		if c, ok := byCRD[ws[i].Ref.Name]; ok && ws[i].IsConversion() {
			ws[i].API = fmt.Sprintf("%s.%s (versions %s)", c.Kind, c.Group, strings.Join(c.Versions, ", "))
		}
	}
}

// describeAPIs gives the aggregated APIs among ws their group/version.
func describeAPIs(ws []callout.Webhook, apis []callout.APIService) {
	byName := map[string]callout.APIService{}
	for _, a := range apis {
		byName[a.Name] = a
	}
	for i := range ws {
		if a, ok := byName[ws[i].Ref.Name]; ok && ws[i].IsAPIService() {
			ws[i].API = a.GroupVersion()
			if a.Available.Status != "" {
				ws[i].Available = &a.Available
			}
		}
	}
}

// invalid says why a clientConfig cannot be called as written; empty when
// it can. The API server accepts some of these (it checks only that names
// are not empty); they are judged here so that one bad configuration never
// stalls the inventory of the others (a name that cannot be a Service must
// not reach a label selector).
func invalid(cc admissionv1.WebhookClientConfig) string {
	var why []string
	for _, p := range callout.ClientConfigProblems(cc) {
		why = append(why, describeProblem(p))
	}
	return strings.Join(why, "; ")
}

// describeProblem is p in one short clause, for findings and status.
func describeProblem(p callout.ConfigProblem) string {
	switch p.Field {
	case "clientConfig":
		return "clientConfig has " + strings.TrimPrefix(p.Why[0], "it has ")
	case "service.namespace":
		return fmt.Sprintf("service namespace %q is not a valid namespace name: %s", p.Value, p.Why[0])
	case "service.name":
		return fmt.Sprintf("service name %q cannot name a Service: %s", p.Value, p.Why[0])
	case "service.port":
		return fmt.Sprintf("service port %s is not a port", p.Value)
	case "url":
		if p.Value == "" {
			return "url does not parse: " + p.Why[0]
		}
		return fmt.Sprintf("url %q: %s", p.Value, strings.Join(p.Why, ", "))
	case "caBundle":
		return "caBundle holds no PEM certificate"
	}
	return p.Field + ": " + strings.Join(p.Why, ", ")
}

// validService reports whether s can name a Service: only such names go
// into the inventory's selectors.
func validService(s *admissionv1.ServiceReference) bool {
	return len(callout.ClientConfigProblems(admissionv1.WebhookClientConfig{Service: s})) == 0
}

// backendsOf finds the endpoints behind port of svc. A nil svc (Service not
// found) or a port the Service does not have yields none.
func backendsOf(svc *corev1.Service, port int32, slices []*discoveryv1.EndpointSlice) []callout.Backend {
	if svc == nil {
		return nil
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == port {
			sp = &svc.Spec.Ports[i]
			break
		}
	}
	if sp == nil {
		return nil
	}
	var out []callout.Backend
	for _, es := range slices {
		out = append(out, sliceBackends(es, sp.Name)...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Compare(out[j].Addr) < 0 })
	return out
}

// sliceBackends are the endpoints of one EndpointSlice for the Service
// port named portName.
func sliceBackends(es *discoveryv1.EndpointSlice, portName string) []callout.Backend {
	if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
		return nil
	}
	target := int32(-1)
	for _, p := range es.Ports {
		// The slice's port carries the Service port's name and the
		// resolved number (named target ports included).
		if p.Port != nil && ptrString(p.Name) == portName {
			target = *p.Port
		}
	}
	if target < 0 || target > 65535 {
		return nil
	}
	var out []callout.Backend
	for _, ep := range es.Endpoints {
		ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
		var pod *callout.PodRef
		if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
			pod = &callout.PodRef{Namespace: ep.TargetRef.Namespace, Name: ep.TargetRef.Name, Node: ptrString(ep.NodeName)}
		}
		for _, a := range ep.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				continue // a malformed address is skipped, never guessed
			}
			out = append(out, callout.Backend{Addr: netip.AddrPortFrom(ip, uint16(target)), Pod: pod, Ready: ready,
				Terminating: ep.Conditions.Terminating != nil && *ep.Conditions.Terminating})
		}
	}
	return out
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Describe is a short human form of backends, for logs.
func Describe(bs []callout.Backend) string {
	parts := make([]string, 0, len(bs))
	for _, b := range bs {
		s := b.Addr.String()
		if b.Pod != nil {
			s += "(" + b.Pod.Namespace + "/" + b.Pod.Name + ")"
		}
		if !b.Ready {
			s += "[not ready]"
		}
		if b.Terminating {
			s += "[terminating]"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}
