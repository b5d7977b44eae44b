package findings

import (
	"fmt"
	"net/url"

	"github.com/hookscope/hookscope/callout"
)

// Remediation is the fix for a failure of class c of webhook w, in one
// sentence: the backend's fix, then, for a webhook that fails closed, how
// to let writes through meanwhile.
func Remediation(c Class, w callout.Webhook) string {
	fix := RestoreFix(c, w)
	switch c {
	case CertExpiringSoon, SlowResponse:
		return fix
	}
	if c == DeniesCriticalPods {
		return fix + deniesMeanwhile
	}
	if w.IsAPIService() {
		return fix + "; until then requests to " + apiOf(w) + " fail, and namespaces cannot finish deleting while its discovery fails: to unblock them, back up and delete APIService " +
			w.Ref.Name + " (hookscope remediate remove " + w.Ref.Name + ", a dry run until --yes), and restore the backup once its backend serves again (hookscope restore FILE --yes)"
	}
	if w.IsConversion() {
		return fix + "; a conversion webhook has no failurePolicy: until it serves again, reads and writes of " + conversionOf(w) +
			" at a version other than the stored one fail, and so do garbage collection and namespace deletion that touch them"
	}
	if c == PatchDoesNotApply {
		return fix + "; until then the writes it patches are rejected whatever its failurePolicy (Ignore does not help: the API server rejects a patch that does not apply): narrow its rules, or remove " +
			w.Ref.Configuration + " after a backup (hookscope remediate remove " + w.Ref.Name + ")"
	}
	if w.FailsClosed() {
		fix += "; until then writes it matches are rejected: set failurePolicy Ignore to let them through (hookscope remediate ignore " + w.Ref.Name + ")"
	}
	return fix
}

// RestoreFix is what makes webhook w work again after a failure of class
// c: the first of the fixes "hookscope explain" ranks.
func RestoreFix(c Class, w callout.Webhook) string {
	switch {
	case c == DeniesCriticalPods:
		return deniesFix(w)
	case c == UnknownAuthority && w.CAInjection != nil:
		return caInjectionFix(w)
	}
	if w.Service == nil && w.URL != "" {
		if fix := urlFix(c, w); fix != "" {
			return fix
		}
	}
	backend := "the webhook's Service"
	if w.Service != nil {
		backend = "Service " + w.Service.Namespace + "/" + w.Service.Name
	} else if w.URL != "" {
		backend = "URL " + w.URL
	}
	if fix := answerFix(c, w, backend); fix != "" {
		return fix
	}
	switch c {
	case CertExpired:
		return "renew the serving certificate behind " + backend + " (cert-manager: check the Certificate and its issuer) and make sure its caBundle matches"
	case CertNotYetValid:
		return "serve a certificate behind " + backend + " that is valid now (check the issuer's clock)"
	case UnknownAuthority:
		return "update the caBundle of " + w.Ref.Configuration + " to the CA that signs the serving certificate behind " + backend
	case HostnameMismatch:
		return "reissue the serving certificate with the name " + serverName(w)
	case InsecureSignature:
		return "reissue the serving certificate behind " + backend + " (or the intermediate CA that signs it, when that one is SHA-1 signed) with a SHA-256 signature: Go, and so the API server since Kubernetes 1.24, rejects SHA-1; the caBundle stays as it is unless the root CA is replaced"
	case LegacyCommonName:
		return "reissue the serving certificate behind " + backend + " with the name " + serverName(w) + " in subjectAltName (cert-manager: dnsNames), not only in the Common Name: Go, and so the API server since Kubernetes 1.19, ignores the Common Name"
	case ConnectionRefused:
		return "check that the webhook pods behind " + backend + " listen on the target port"
	case Unreachable:
		return "make " + backend + " reachable from the control plane: a route to its address, its name in DNS, security groups or firewalls that let the API server through"
	case ConnectTimeout:
		return "let the control plane reach " + backend + " on the webhook's target port: the nodes' security group must admit the cluster security group on that port (EKS), and no NACL, host firewall or NetworkPolicy that selects the webhook's pods may drop the API server's connections"
	case BlockedBeforeNode:
		return "let the control plane reach the nodes on TCP " + targetPort(w) + " (the webhook's target port): on EKS, an inbound rule on the node security group from the cluster security group for that port; check the subnets' NACLs and routes, and any firewall between the control plane and the nodes"
	case DroppedAtPod:
		return "admit the API server's connections to the pods behind " + backend + " on TCP " + targetPort(w) + ": a NetworkPolicy that selects them must have an ingress rule for that port from the control plane (an ipBlock of its addresses, or no from at all), and no firewall at the pod may drop them"
	case PodNetworkNotRoutable:
		return "the control plane cannot route to the pod network (an overlay CNI on EKS): run the webhook behind " + backend + " with hostNetwork: true on a free port, or use a CNI whose pod IPs the VPC routes"
	case NotTheWebhook:
		return "something other than the webhook answers behind " + backend + " (a service-mesh sidecar or a proxy): exclude the webhook's port from the mesh's inbound capture (for Istio, traffic.sidecar.istio.io/excludeInboundPorts) or let the webhook serve TLS itself"
	case HandshakeTimeout:
		return "restart the hung webhook pods behind " + backend
	case CertExpiringSoon:
		return "renew the serving certificate behind " + backend + " before it expires (cert-manager: check why renewal has not happened)"
	case ServiceNotFound:
		if w.IsConversion() {
			return "restore " + backend + " (reinstall the chart that owns CRD " + w.Ref.Name + ", e.g. cert-manager's)"
		}
		if w.IsAPIService() {
			return "restore " + backend + " (reinstall the aggregated API's chart, e.g. metrics-server)"
		}
		return "restore " + backend + " (reinstall the webhook's chart), or remove the webhook configuration " + w.Ref.Configuration + " after a backup (hookscope remediate remove " + w.Ref.Name + ")"
	case NoEndpoints:
		return "restore the endpoints of " + backend + ": scale its Deployment up and check why its pods are gone"
	case BackendPodsNotReady:
		return "restore the endpoints of " + backend + ": find why its pods are not ready (logs, readiness probes)"
	case BackendPodsPending:
		return "get the pods behind " + backend + " scheduled (node capacity, taints, affinity, PVCs)"
	case PortMismatch:
		return "point the webhook at a port " + backend + " has, or add that port to the Service"
	case InvalidConfiguration:
		return "correct the clientConfig of webhook " + w.Ref.Name + " in " + w.Ref.Configuration + ": " + w.Invalid
	case SlowResponse:
		return fmt.Sprintf("find why the webhook pods behind %s answer slowly (CPU limits, their own API calls, an external dependency): every write it matches waits, and calls over timeoutSeconds (%ds) fail; narrow its rules or selectors so fewer writes wait", backend, w.TimeoutSeconds)
	case WebhookTimeout:
		return fmt.Sprintf("find why the webhook pods behind %s do not answer within timeoutSeconds (%ds): restart them if they hang, check their CPU limits and their own dependencies", backend, w.TimeoutSeconds)
	}
	if w.Service == nil && w.URL != "" {
		return "check the webhook server behind " + backend
	}
	return "check the webhook pods behind " + backend
}

// answerFix is the fix of a webhook behind backend that answers, but
// wrongly (class c); empty for the other classes.
func answerFix(c Class, w callout.Webhook, backend string) string {
	switch c {
	case InvalidResponse:
		return "make the webhook behind " + backend + " answer a valid AdmissionReview: apiVersion admission.k8s.io/v1 and kind AdmissionReview, response.uid copied from request.uid, a patch only from a mutating webhook and only with patchType JSONPatch; if it began with an upgrade of the webhook, roll it back"
	case PatchDoesNotApply:
		return "fix the JSONPatch the webhook behind " + backend + " answers: each path must exist in the object it patches (an add to a list or map the object lacks fails: add the whole list first); if it began with an upgrade of the webhook, roll it back"
	case WrongPath:
		return "point the webhook's path (clientConfig.service.path, now " + servicePath(w) + ") at the path the server behind " + backend + " serves (its chart or its flags name it), or roll back the server that stopped serving it"
	case ServerError:
		return "read the logs of the webhook pods behind " + backend + ": its handler answers HTTP 5xx (the API server quotes its body); fix or roll back the webhook"
	}
	return ""
}

// urlFix is the fix of a failure of class c for a webhook that calls a
// URL: no Service, endpoints or pods of its own to point at, a host and a
// port the control plane must reach. Empty: the generic fix fits.
func urlFix(c Class, w callout.Webhook) string {
	host, port := urlHostPort(w.URL)
	switch c {
	case ConnectionRefused:
		return "nothing listens on " + host + ":" + port + " (URL " + w.URL + "): start the webhook server there, or point the webhook's url at where it serves now"
	case Unreachable:
		return "make " + host + " resolvable and routable from the control plane (URL " + w.URL + "), or point the webhook's url at an address it can reach"
	case ConnectTimeout, BlockedBeforeNode, DroppedAtPod:
		return "let the control plane reach " + host + " on TCP " + port + " (URL " + w.URL + "): security groups, NACLs, host firewalls and NetworkPolicies on the way must admit the API server's connections"
	case HandshakeTimeout, WebhookTimeout:
		return fmt.Sprintf("the server at %s accepts connections but does not answer within timeoutSeconds (%ds): restart it, and check its CPU and its own dependencies", w.URL, w.TimeoutSeconds)
	case HostnameMismatch:
		return "reissue the serving certificate at " + w.URL + " with " + host + " among its names (an IP SAN for an address)"
	case InsecureSignature:
		return "reissue the certificate served at " + w.URL + " (or the intermediate CA that signs it) with a SHA-256 signature: Go, and so the API server since Kubernetes 1.24, rejects SHA-1"
	case LegacyCommonName:
		return "reissue the certificate served at " + w.URL + " with " + host + " in subjectAltName (an IP SAN for an address), not only in the Common Name: the API server ignores the Common Name"
	case UnknownAuthority:
		return "update the caBundle of webhook " + w.Ref.Name + " in " + w.Ref.Configuration + " to the CA that signs the certificate served at " + w.URL
	case SlowResponse:
		return fmt.Sprintf("find why the server at %s answers slowly (CPU, its own dependencies): every write it matches waits, and calls over timeoutSeconds (%ds) fail; narrow its rules or selectors so fewer writes wait", w.URL, w.TimeoutSeconds)
	case NotTheWebhook:
		return "something other than the webhook answers at " + w.URL + " (a proxy or a plaintext server): point the url at the webhook's TLS port"
	case WrongPath:
		return "the server at " + host + ":" + port + " answers HTTP 404 for the path of URL " + w.URL + ": point the webhook's url at the path it serves"
	case ServerError:
		return "the server at " + w.URL + " answers HTTP 5xx (the API server quotes its body): read its logs, fix or roll it back"
	}
	return ""
}

// urlHostPort are a webhook URL's host and port (443 when it names none).
func urlHostPort(raw string) (host, port string) {
	u, err := url.Parse(raw)
	if err != nil {
		return raw, "443"
	}
	port = u.Port()
	if port == "" {
		port = "443"
	}
	return u.Hostname(), port
}

// conversionOf names what a conversion webhook converts.
func conversionOf(w callout.Webhook) string {
	if w.API != "" {
		return w.API
	}
	return "CRD " + w.Ref.Name + "'s custom resources"
}

// apiOf names an aggregated API's group/version, or the APIService.
func apiOf(w callout.Webhook) string {
	if w.API != "" {
		return w.API
	}
	return "APIService " + w.Ref.Name
}

// targetPort is the port the API server dials on the webhook's pods.
func targetPort(w callout.Webhook) string {
	if len(w.Backends) == 0 {
		return "<targetPort>"
	}
	return fmt.Sprint(w.Backends[0].Addr.Port())
}

// servicePath is the path the API server posts to on a webhook's
// Service ("/" when none is set).
func servicePath(w callout.Webhook) string {
	if w.Service == nil || w.Service.Path == "" {
		return "/"
	}
	return w.Service.Path
}

func serverName(w callout.Webhook) string {
	if n := w.ServerName(); n != "" {
		return n
	}
	return "of the webhook URL"
}
