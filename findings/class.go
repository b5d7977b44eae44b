// Package findings is the one place where findings are opened, evidenced,
// re-classed, resolved and bounded, and where they get their IDs. The
// producers (the data plane, the probe, the object checks, the API
// server's signals, impact correlation) hand it typed observations; the
// exporters and the HTTP API read what it holds. It imports only the
// call-out model.
package findings

// Class names why a webhook's calls fail, in the words an SRE uses.
type Class string

// The failure classes. The first group fails inside the API server with no
// packet sent; the second is seen on the wire and named by a probe.
const (
	Healthy Class = "Healthy"

	ServiceNotFound     Class = "ServiceNotFound"     // service "x" not found
	NoEndpoints         Class = "NoEndpoints"         // no endpoints available for service "x"
	BackendPodsPending  Class = "BackendPodsPending"  // the Service's pods exist but are Pending
	BackendPodsNotReady Class = "BackendPodsNotReady" // endpoints exist, none ready
	PortMismatch        Class = "PortMismatch"        // the webhook's port is not a port of the Service
	// InvalidConfiguration: the configuration names something that cannot
	// be called (a Service name that cannot exist, a caBundle with no PEM
	// certificate, a URL that does not parse).
	InvalidConfiguration Class = "InvalidConfiguration"

	CertExpired      Class = "CertExpired"
	CertNotYetValid  Class = "CertNotYetValid"
	CertExpiringSoon Class = "CertExpiringSoon" // still valid, expires within the horizon
	UnknownAuthority Class = "UnknownAuthority" // the caBundle does not verify the served chain
	HostnameMismatch Class = "HostnameMismatch"
	// InsecureSignature: a certificate of the served chain (the leaf or an
	// intermediate) is signed with SHA-1, which Go, and so the API server
	// since Kubernetes 1.24, refuses to verify. The API server words it as
	// an unknown authority ("possibly because of ... insecure algorithm
	// SHA1-RSA"), but the caBundle is right: the certificate must be
	// reissued.
	InsecureSignature Class = "InsecureSignature"
	// LegacyCommonName: the serving certificate names the host only in its
	// Common Name, with no subjectAltName; Go ignores the Common Name
	// ("certificate relies on legacy Common Name field"). The name is
	// right, the field is not.
	LegacyCommonName  Class = "LegacyCommonName"
	ConnectionRefused Class = "ConnectionRefused"
	// Unreachable: no route to the backend, or its name does not resolve
	// (a URL webhook's host): the packets never reach it.
	Unreachable Class = "Unreachable"
	// ConnectTimeout: the connection was never answered (its SYN went
	// unanswered): a security group, firewall, NACL or NetworkPolicy
	// drops the API server's packets on the way.
	ConnectTimeout Class = "ConnectTimeout"
	// BlockedBeforeNode: the API server's connections never reach the
	// backend's pod: no SYN from it arrived at the pod's interface on its
	// node while it reported failed calls, and the node's own probe
	// connects. A security group, NACL, firewall or route on the way drops
	// them.
	BlockedBeforeNode Class = "BlockedBeforeNode"
	// DroppedAtPod: the SYNs reach the pod's interface and the pod never
	// answers them: a NetworkPolicy or a firewall at the pod drops them.
	DroppedAtPod Class = "DroppedAtPod"
	// PodNetworkNotRoutable: the control plane cannot route to the pod
	// network at all (an overlay CNI on EKS: "Address is not allowed").
	PodNetworkNotRoutable Class = "PodNetworkNotRoutable"
	// NotTheWebhook: something other than the webhook answers at the
	// backend (a service-mesh sidecar or a proxy): it closes the
	// connection, or speaks plain HTTP.
	NotTheWebhook      Class = "NotTheWebhook"
	HandshakeTimeout   Class = "HandshakeTimeout"
	TLSHandshakeFailed Class = "TLSHandshakeFailed"
	// CallsFailing: the API server reports failed calls and no signal says
	// why yet.
	CallsFailing Class = "CallsFailing"
	// WebhookTimeout: calls exceed timeoutSeconds (the API server's
	// "context deadline exceeded").
	WebhookTimeout Class = "WebhookTimeout"
	// SlowResponse: calls succeed, but the webhook takes so long to answer
	// that every matched write waits, and a little more load times it out.
	SlowResponse Class = "SlowResponse"

	// The webhook answers, but wrongly: the handshake and the HTTP
	// exchange work, what comes back fails the write.

	// InvalidResponse: the answer is not an AdmissionReview the API server
	// accepts ("received invalid webhook response: ..."): no apiVersion or
	// kind, no response, a response.uid other than the request's, a patch
	// without its patchType or one a validating webhook may not send, or
	// a patch that is not JSONPatch.
	InvalidResponse Class = "InvalidResponse"
	// PatchDoesNotApply: a mutating webhook's JSONPatch does not apply to
	// the object ("add operation does not apply: doc is missing path:
	// ..."). The API server rejects the write whatever the failurePolicy.
	PatchDoesNotApply Class = "PatchDoesNotApply"
	// WrongPath: the webhook's server answers HTTP 404 for the path its
	// configuration names ("the server could not find the requested
	// resource"): the path is not one it serves.
	WrongPath Class = "WrongPath"
	// ServerError: the webhook's server answers HTTP 5xx ("an error on the
	// server ("...") has prevented the request from succeeding"): its
	// handler fails.
	ServerError Class = "ServerError"
)

// Aspect is what of a webhook an observation speaks for: whether a new
// connection can be made and verified, or how fast the webhook answers.
type Aspect uint8

const (
	// Connection: TCP, TLS and the served certificate.
	Connection Aspect = 1 << iota
	// Latency: the time to answer a request.
	Latency
	// Path: whether the API server's connections reach the backend. A
	// probe from the backend's node does not speak for it.
	Path
)

// Aspect is the aspect a failure of this class is about.
func (c Class) Aspect() Aspect {
	switch c {
	case SlowResponse, WebhookTimeout:
		return Latency
	case BlockedBeforeNode:
		return Path
	}
	return Connection
}

// FailsNewConnections reports whether the class is about making a new
// connection (TCP or TLS): a connection the API server already has open
// may go on carrying writes.
func (c Class) FailsNewConnections() bool {
	switch c {
	case CertExpired, CertNotYetValid, UnknownAuthority, HostnameMismatch, InsecureSignature, LegacyCommonName, TLSHandshakeFailed, ConnectionRefused, HandshakeTimeout,
		Unreachable, ConnectTimeout, DroppedAtPod, PodNetworkNotRoutable, NotTheWebhook:
		return true
	}
	return false
}

// FailsCalls reports whether a failure of this class makes the API
// server's calls fail: not a warning about a certificate still valid, nor
// a slow answer.
func (c Class) FailsCalls() bool {
	return c != Healthy && c != "" && c != CertExpiringSoon && c != SlowResponse
}

// generic reports whether the class says only that calls fail, so a later
// observation with a cause re-classes the finding instead of opening a new
// one.
func (c Class) generic() bool { return c == CallsFailing }
