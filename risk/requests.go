package risk

import (
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
)

// The synthetic requests behind the Blocks* kinds. Object labels are what
// the real objects carry, so an objectSelector is judged on them.
var (
	podGVK  = corev1.SchemeGroupVersion.WithKind("Pod")
	podGVR  = corev1.SchemeGroupVersion.WithResource("pods")
	nodeGVK = corev1.SchemeGroupVersion.WithKind("Node")
	nodeGVR = corev1.SchemeGroupVersion.WithResource("nodes")
	leaseGV = coordinationv1.SchemeGroupVersion
	csrGV   = certificatesv1.SchemeGroupVersion

	// systemPodRequests create the pods that keep nodes Ready and DNS up.
	systemPodRequests = func() []request {
		var out []request
		for _, p := range []struct{ name, label string }{
			{"aws-node", "aws-node"},
			{"kube-proxy", "kube-proxy"},
			{"coredns", "kube-dns"},
			{"cilium", "cilium"},
			{"calico-node", "calico-node"},
		} {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, GenerateName: p.name + "-",
				Labels: map[string]string{"k8s-app": p.label}}}
			out = append(out, request{desc: p.name, attr: newAttr(pod, podGVK, podGVR, "", metav1.NamespaceSystem, "", admission.Create)})
		}
		return out
	}()

	// leaseRequests renew node heartbeats and leader election.
	leaseRequests = func() []request {
		var out []request
		for _, l := range []struct{ ns, name, why string }{
			{corev1.NamespaceNodeLease, "worker", "node heartbeats"},
			{metav1.NamespaceSystem, "kube-controller-manager", "kube-controller-manager and kube-scheduler leader election"},
			{metav1.NamespaceSystem, "kube-scheduler", "kube-controller-manager and kube-scheduler leader election"},
		} {
			for _, op := range []admission.Operation{admission.Update, admission.Create} {
				lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: l.ns, Name: l.name}}
				out = append(out, request{
					desc: fmt.Sprintf("%s of leases in %s (%s)", op, l.ns, l.why),
					attr: newAttr(lease, leaseGV.WithKind("Lease"), leaseGV.WithResource("leases"), "", l.ns, l.name, op),
				})
			}
		}
		return out
	}()

	// nodeRequests register nodes and report their status.
	nodeRequests = func() []request {
		var out []request
		for _, n := range []struct {
			name string
			lbls map[string]string
		}{
			{"worker", map[string]string{"kubernetes.io/os": "linux", "kubernetes.io/hostname": "worker"}},
			{"control-plane", map[string]string{"kubernetes.io/os": "linux", "kubernetes.io/hostname": "control-plane", "node-role.kubernetes.io/control-plane": ""}},
		} {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: n.lbls}}
			for _, r := range []struct {
				op  admission.Operation
				sub string
			}{{admission.Create, ""}, {admission.Update, ""}, {admission.Update, "status"}} {
				res := "nodes"
				if r.sub != "" {
					res += "/" + r.sub
				}
				out = append(out, request{
					desc: fmt.Sprintf("%s of %s", r.op, res),
					attr: newAttr(node, nodeGVK, nodeGVR, r.sub, "", n.name, r.op),
				})
			}
		}
		return out
	}()

	// authRequests authenticate, authorize and issue node certificates.
	authRequests = []request{
		{desc: "CREATE of tokenreviews (authentication of service-account and bootstrap tokens)",
			attr: newAttr(&authenticationv1.TokenReview{}, authenticationv1.SchemeGroupVersion.WithKind("TokenReview"),
				authenticationv1.SchemeGroupVersion.WithResource("tokenreviews"), "", "", "", admission.Create)},
		{desc: "CREATE of subjectaccessreviews (authorization checks of kubelets and aggregated APIs)",
			attr: newAttr(&authorizationv1.SubjectAccessReview{}, authorizationv1.SchemeGroupVersion.WithKind("SubjectAccessReview"),
				authorizationv1.SchemeGroupVersion.WithResource("subjectaccessreviews"), "", "", "", admission.Create)},
		{desc: "CREATE of certificatesigningrequests (node bootstrap and kubelet certificate rotation)",
			attr: newAttr(&certificatesv1.CertificateSigningRequest{}, csrGV.WithKind("CertificateSigningRequest"),
				csrGV.WithResource("certificatesigningrequests"), "", "", "", admission.Create)},
		{desc: "UPDATE of certificatesigningrequests/approval",
			attr: newAttr(&certificatesv1.CertificateSigningRequest{}, csrGV.WithKind("CertificateSigningRequest"),
				csrGV.WithResource("certificatesigningrequests"), "approval", "", "", admission.Update)},
		{desc: "UPDATE of certificatesigningrequests/status (issuing the certificate)",
			attr: newAttr(&certificatesv1.CertificateSigningRequest{}, csrGV.WithKind("CertificateSigningRequest"),
				csrGV.WithResource("certificatesigningrequests"), "status", "", "", admission.Update)},
	}

	// anyResource is a request for a resource no rule names: only rules
	// with wildcard groups and resources match it.
	anyResource = newAttr(nil, schema.GroupVersionKind{Group: "hookscope.invalid", Version: "v1", Kind: "Probe"},
		schema.GroupVersionResource{Group: "hookscope.invalid", Version: "v1", Resource: "probes"}, "", metav1.NamespaceDefault, "", admission.Create)
)
