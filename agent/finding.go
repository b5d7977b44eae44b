// Package agent turns kernel events and API objects into findings: which
// admission webhook is failing, why, and what the API server does about it.
// It knows nothing about exporting; see package otel for that.
package agent

import (
	"net/netip"
	"time"
)

// FailureClass names why a webhook's calls fail, in the words an SRE uses.
type FailureClass string

// The failure classes. The first group fails inside the API server with no
// packet sent; the second is seen on the wire and named by a probe.
const (
	Healthy FailureClass = "Healthy"

	ServiceNotFound     FailureClass = "ServiceNotFound"     // service "x" not found
	NoEndpoints         FailureClass = "NoEndpoints"         // no endpoints available for service "x"
	BackendPodsPending  FailureClass = "BackendPodsPending"  // the Service's pods exist but are Pending
	BackendPodsNotReady FailureClass = "BackendPodsNotReady" // endpoints exist, none ready
	PortMismatch        FailureClass = "PortMismatch"        // the webhook's port is not a port of the Service

	CertExpired        FailureClass = "CertExpired"
	CertNotYetValid    FailureClass = "CertNotYetValid"
	CertExpiringSoon   FailureClass = "CertExpiringSoon" // still valid, expires within the horizon
	UnknownAuthority   FailureClass = "UnknownAuthority" // the caBundle does not verify the served chain
	HostnameMismatch   FailureClass = "HostnameMismatch"
	ConnectionRefused  FailureClass = "ConnectionRefused"
	HandshakeTimeout   FailureClass = "HandshakeTimeout"
	TLSHandshakeFailed FailureClass = "TLSHandshakeFailed"
	// CallsFailing: the API server reports failed calls and no signal says
	// why yet.
	CallsFailing FailureClass = "CallsFailing"
	// WebhookTimeout: calls exceed timeoutSeconds (the API server's
	// "context deadline exceeded").
	WebhookTimeout FailureClass = "WebhookTimeout"
	// SlowResponse: calls succeed, but the webhook takes so long to answer
	// that every matched write waits, and a little more load times it out.
	SlowResponse FailureClass = "SlowResponse"
)

// WebhookRef names one webhook: the configuration that holds it and its
// name in that configuration.
type WebhookRef struct {
	Kind          string `json:"kind"` // "Validating" or "Mutating"
	Configuration string `json:"configuration"`
	Name          string `json:"name"`
}

func (r WebhookRef) String() string { return r.Kind + "/" + r.Configuration + "/" + r.Name }

// ServiceRef is the Service a webhook calls.
type ServiceRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Port      int32  `json:"port"`
	Path      string `json:"path,omitempty"`
}

// ServerName is the TLS server name the API server verifies: <svc>.<ns>.svc.
func (s ServiceRef) ServerName() string { return s.Name + "." + s.Namespace + ".svc" }

// PodRef is a backend pod.
type PodRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Node      string `json:"node,omitempty"`
}

// BackendTarget is one endpoint the API server dials for a webhook.
type BackendTarget struct {
	Addr  netip.AddrPort `json:"addr"`
	Pod   *PodRef        `json:"pod,omitempty"`
	Ready bool           `json:"ready"`
	// Terminating: the pod is shutting down (the API server stops calling
	// it once it is not ready).
	Terminating bool `json:"terminating,omitempty"`
}

// Webhook is one webhook resolved to what the API server will call.
type Webhook struct {
	Ref            WebhookRef      `json:"ref"`
	FailurePolicy  string          `json:"failurePolicy"` // "Fail" or "Ignore"
	TimeoutSeconds int32           `json:"timeoutSeconds"`
	Service        *ServiceRef     `json:"service,omitempty"`
	URL            string          `json:"url,omitempty"`
	CABundle       []byte          `json:"-"`
	Backends       []BackendTarget `json:"backends"`
	// Problem is what the API server will hit before it dials anything,
	// judged from the objects alone; empty when the objects look callable.
	Problem       FailureClass `json:"problem,omitempty"`
	ProblemDetail string       `json:"problemDetail,omitempty"`
	// ServiceSelector is the Service's pod selector, to find Pending pods.
	ServiceSelector map[string]string `json:"-"`
}

// FailsClosed reports whether the API server rejects the write when this
// webhook cannot be called.
func (w Webhook) FailsClosed() bool { return w.FailurePolicy != "Ignore" }

// Effect says what the API server does with a write this webhook cannot
// answer.
func (w Webhook) Effect() string {
	if w.FailsClosed() {
		return "writes rejected"
	}
	return "fails open"
}

// Evidence is one observation behind a finding.
type Evidence struct {
	Source string    `json:"source"` // "ebpf", "probe", "apiserver"
	At     time.Time `json:"at"`
	Detail string    `json:"detail"`
}

// Finding is one webhook's failure: opened when first seen, resolved when
// the webhook is healthy again.
type Finding struct {
	ID            string         `json:"id"`
	Class         FailureClass   `json:"class"`
	Webhook       WebhookRef     `json:"webhook"`
	FailurePolicy string         `json:"failurePolicy"`
	Effect        string         `json:"effect"`
	Service       *ServiceRef    `json:"service,omitempty"`
	Backend       netip.AddrPort `json:"backend"`
	Pod           *PodRef        `json:"pod,omitempty"`
	// FirstFailure is when the first failing call (or probe) started.
	FirstFailure time.Time `json:"firstFailure"`
	// FirstSeen is when hookscope knew the class: the finding's detection time.
	FirstSeen time.Time  `json:"firstSeen"`
	Resolved  *time.Time `json:"resolved,omitempty"`
	// Certificate is the served leaf's validity window, when a probe saw it.
	Certificate *CertificateWindow `json:"certificate,omitempty"`
	Evidence    []Evidence         `json:"evidence"`
	Remediation string             `json:"remediation"`
	// Impact is what the failing webhook does to the cluster beyond one
	// write; set on correlation findings only.
	Impact *Impact `json:"impact,omitempty"`
}

// Impact kinds.
const (
	// ImpactNodeNotReady: a node is NotReady and the DaemonSet that would
	// make it Ready (the CNI: aws-node, kindnet) cannot create its pod there.
	ImpactNodeNotReady = "NodeNotReady"
	// ImpactControllerBlocked: a controller cannot create the pods it wants
	// (a Job or ReplicaSet that loops, a DaemonSet short of pods).
	ImpactControllerBlocked = "ControllerBlocked"
	// ImpactDeletionBlocked: a deletion does not complete: a Deployment is
	// gone but its ReplicaSets and pods remain, because the webhook rejects
	// the garbage collector's deletes.
	ImpactDeletionBlocked = "DeletionBlocked"
)

// Impact links a failing webhook to what it breaks.
type Impact struct {
	Kind   string    `json:"kind"`
	Node   string    `json:"node,omitempty"`
	Object string    `json:"object"` // "DaemonSet kube-system/aws-node"
	Since  time.Time `json:"since"`
	Detail string    `json:"detail"`
}

// CertificateWindow is the validity window of a served certificate.
type CertificateWindow struct {
	Subject   string    `json:"subject"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
}

// FindingSink receives findings when they open and when they resolve.
type FindingSink interface {
	Report(f Finding)
}

// Observer receives what the agent measures, for metrics. Calls must not
// block.
type Observer interface {
	// ObserveProbe is called after every probe of a backend.
	ObserveProbe(w WebhookRef, r ProbeResult)
	// ObserveWire is called for every event the kernel reports.
	ObserveWire(kind string)
	// ObserveFinding is called when a finding opens or resolves.
	ObserveFinding(f Finding)
}

// ResponseObserver is an Observer that also takes each answer's latency
// the kernel measured (request to first answer bytes).
type ResponseObserver interface {
	ObserveResponse(w WebhookRef, d time.Duration)
}
