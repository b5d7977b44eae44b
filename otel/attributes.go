// Package otel is the one place for hookscope's span and metric schema and
// for its exporters: the agent hands a Finding to an Exporter, which turns
// it into a span any OTLP backend (Jaeger, Tempo, an OpenTelemetry
// Collector) can store and search.
//
// # Schema
//
// One span per finding event. An open finding is a span named after the
// webhook (its name in the configuration) that starts when the first call
// failed and ends when hookscope knew why, with status Error and the
// description "<class>: <effect>" (e.g. "CertExpired: writes rejected"),
// and one span event per piece of evidence; a finding that changes (its
// class, its effect, the kernel's first account of a failed call) is
// reported again under the same hookscope.finding.id. A resolved finding
// is a short span of the same name at the resolution time, with status Ok.
//
// Resource (who observed it):
//
//	service.name                   hookscope-agent unless configured
//	k8s.node.name                  the node the agent runs on
//
// Span attributes, OpenTelemetry semantic conventions (semconv v1.43.0):
//
//	k8s.namespace.name             namespace of the backend pod
//	k8s.pod.name                   the backend pod
//	k8s.node.name                  the node of the backend pod (on the
//	                               resource it names the agent's node)
//	server.address                 IP the API server dials for the webhook
//	server.port                    port the API server dials (int)
//	error.type                     the failure class, on open findings
//	tls.protocol.version           negotiated TLS version, "1.2" or "1.3", from
//	                               the server's hello the kernel read (a call,
//	                               or a finding's latest failed call)
//	client.address, client.port    the caller of the backend (the API server):
//	                               on call spans, and on finding spans whose
//	                               latest failed call the kernel saw
//	url.full                       the URL a webhook calls instead of a Service
//
// Span attributes, hookscope.* (no semantic convention covers them):
//
//	hookscope.webhook.kind             "Validating", "Mutating", "APIService" or "Conversion"
//	hookscope.webhook.configuration    the {Validating,Mutating}WebhookConfiguration
//	hookscope.webhook.name             the webhook's name in it
//	hookscope.webhook.failure_policy   "Fail" or "Ignore"
//	hookscope.webhook.effect           "writes rejected", "fails open", "writes slowed", "none yet",
//	                                   or "writes pass on open connections; the next new connection will fail"
//	hookscope.service.namespace        namespace of the Service the webhook calls
//	hookscope.service.name             that Service's name
//	hookscope.failure.class            why calls fail: CertExpired, ConnectionRefused, ...
//	hookscope.finding.id               stable ID of the finding; the open and
//	                                   the resolved span share it
//	hookscope.finding.state            "open" or "resolved"
//	hookscope.remediation              what an SRE should do, in one sentence
//	hookscope.call.outcome             done, rejected, refused, reset, closed (call spans: one per handshake)
//	hookscope.handshake.phase          where the failed call's handshake stopped: connect,
//	                                   client_hello, server_hello, done (kernel evidence)
//	hookscope.tls.alert.level          the alert the client sent: "warning" or "fatal"
//	hookscope.tls.alert.description    its description, e.g. "bad_certificate" (TLS 1.2:
//	                                   alerts are cleartext)
//	hookscope.tls.encrypted_alert      true: in TLS 1.3 the client's record after the
//	                                   server's first flight had an encrypted alert's size
//	hookscope.wire.latency             seconds a request waited for its answer, as the
//	                                   kernel saw it (SlowResponse, WebhookTimeout)
//	hookscope.impact.kind              NodeNotReady, ControllerBlocked or DeletionBlocked (correlation findings)
//	hookscope.impact.node              the NotReady node
//	hookscope.impact.object            the blocked controller, "DaemonSet kube-system/aws-node"
//	hookscope.backend.untraced         why no agent's kernel sees the backend's calls (no agent on its
//	                                   node): the agent holding the Lease probed it
//	hookscope.cert.subject             subject of the served leaf certificate
//	hookscope.cert.not_before          its validity window, RFC 3339 (UTC)
//	hookscope.cert.not_after
//
// Span links, from a correlation or call span to the finding that names
// the webhook's failure, and from a resolution to its finding:
//
//	hookscope.link.reason              "webhook finding" or "opened by"
//	hookscope.guard.action             the guard's change: "exclude" or "revert" (its span links to the finding)
//
// Span events, one per evidence entry, named "hookscope.evidence.<source>"
// (source is "ebpf", "probe" or "apiserver"), at the time it was observed:
//
//	hookscope.evidence.source          "ebpf", "probe", "apiserver", "apiserver-event",
//	                                   "apiserver-metrics", "hookscope"
//	hookscope.evidence.detail          what was seen, as text
//	hookscope.evidence.calls           how many calls the API server reported (its signals)
package otel

import (
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// SchemaURL is the semantic conventions version the attribute names follow.
const SchemaURL = semconv.SchemaURL

// Attributes from the OpenTelemetry semantic conventions.
const (
	// ServiceName names the reporting service (resource attribute).
	ServiceName = semconv.ServiceNameKey
	// K8sNodeName is the agent's node on the resource and the backend pod's
	// node on a span.
	K8sNodeName = semconv.K8SNodeNameKey
	// K8sNamespaceName is the backend pod's namespace.
	K8sNamespaceName = semconv.K8SNamespaceNameKey
	// K8sPodName is the backend pod's name.
	K8sPodName = semconv.K8SPodNameKey
	// ServerAddress is the IP address the API server dials for the webhook.
	ServerAddress = semconv.ServerAddressKey
	// ServerPort is the port the API server dials for the webhook (int).
	ServerPort = semconv.ServerPortKey
	// ErrorType is the failure class of an open finding.
	ErrorType = semconv.ErrorTypeKey
	// TLSProtocolVersion is the negotiated TLS version ("1.2", "1.3").
	TLSProtocolVersion = semconv.TLSProtocolVersionKey
	// ClientAddress and ClientPort are the caller of a webhook backend (the
	// API server), on call spans.
	ClientAddress = semconv.ClientAddressKey
	ClientPort    = semconv.ClientPortKey
	// URLFull is the URL a webhook calls instead of a Service.
	URLFull = semconv.URLFullKey
)

// Attributes in hookscope's own namespace, hookscope.*.
const (
	// WebhookKind is "Validating", "Mutating", "APIService" or "Conversion".
	WebhookKind = attribute.Key("hookscope.webhook.kind")
	// WebhookConfiguration is the webhook configuration object's name.
	WebhookConfiguration = attribute.Key("hookscope.webhook.configuration")
	// WebhookName is the webhook's name inside its configuration.
	WebhookName = attribute.Key("hookscope.webhook.name")
	// WebhookFailurePolicy is the webhook's failurePolicy: "Fail" or "Ignore".
	WebhookFailurePolicy = attribute.Key("hookscope.webhook.failure_policy")
	// WebhookEffect is what the API server does with a write the webhook
	// cannot answer: "writes rejected" or "fails open".
	WebhookEffect = attribute.Key("hookscope.webhook.effect")
	// WebhookServiceNamespace is the namespace of the Service the webhook
	// calls.
	WebhookServiceNamespace = attribute.Key("hookscope.service.namespace")
	// WebhookServiceName is the name of the Service the webhook calls (not
	// to be confused with ServiceName, the reporting service).
	WebhookServiceName = attribute.Key("hookscope.service.name")
	// FailureClass is why the webhook's calls fail (findings.Class).
	FailureClass = attribute.Key("hookscope.failure.class")
	// FindingID identifies a finding across its open and resolved spans.
	FindingID = attribute.Key("hookscope.finding.id")
	// FindingState is FindingOpen or FindingResolved.
	FindingState = attribute.Key("hookscope.finding.state")
	// Remediation is what an SRE should do about the finding.
	Remediation = attribute.Key("hookscope.remediation")
	// CallOutcome is how a call's handshake ended: done, rejected (by the
	// client), refused, reset, closed (call spans only).
	CallOutcome = attribute.Key("hookscope.call.outcome")
	// CallEventPrefix prefixes the span events of a call, one per kernel
	// event: hookscope.call.client_hello, ...server_hello, ...handshake_rejected.
	CallEventPrefix = "hookscope.call."
	// ImpactKind is what the failing webhook breaks beyond one write:
	// NodeNotReady or ControllerBlocked (correlation findings only).
	ImpactKind = attribute.Key("hookscope.impact.kind")
	// ImpactNode is the NotReady node of a NodeNotReady impact.
	ImpactNode = attribute.Key("hookscope.impact.node")
	// ImpactObject is the blocked controller, "Kind namespace/name".
	ImpactObject = attribute.Key("hookscope.impact.object")
	// BackendUntraced says why no agent traces the finding's backend.
	BackendUntraced = attribute.Key("hookscope.backend.untraced")
	// CertSubject is the subject of the certificate the webhook served.
	CertSubject = attribute.Key("hookscope.cert.subject")
	// CertNotBefore is the start of the served certificate's validity,
	// RFC 3339 in UTC.
	CertNotBefore = attribute.Key("hookscope.cert.not_before")
	// CertNotAfter is the end of the served certificate's validity, RFC
	// 3339 in UTC.
	CertNotAfter = attribute.Key("hookscope.cert.not_after")
	// EvidenceSource is where an evidence event came from: "ebpf",
	// "probe" or "apiserver".
	EvidenceSource = attribute.Key("hookscope.evidence.source")
	// EvidenceDetail is what an evidence event saw, as text.
	EvidenceDetail = attribute.Key("hookscope.evidence.detail")
	// EvidenceCalls is how many calls the API server reported (int).
	EvidenceCalls = attribute.Key("hookscope.evidence.calls")
	// HandshakePhase is where a failed call's handshake stopped.
	HandshakePhase = attribute.Key("hookscope.handshake.phase")
	// TLSAlertLevel is the level of the alert the client sent.
	TLSAlertLevel = attribute.Key("hookscope.tls.alert.level")
	// TLSAlertDescription names the alert the client sent.
	TLSAlertDescription = attribute.Key("hookscope.tls.alert.description")
	// TLSEncryptedAlert: a TLS 1.3 client's encrypted alert (bool).
	TLSEncryptedAlert = attribute.Key("hookscope.tls.encrypted_alert")
	// WireLatency is the seconds a request waited for its answer (float).
	WireLatency = attribute.Key("hookscope.wire.latency")
	// LinkReason says why a span links to another (span link attribute):
	// "webhook finding" from a correlation or call span to the finding that
	// names the webhook's failure, "opened by" from a resolution to its
	// finding.
	LinkReason = attribute.Key("hookscope.link.reason")
	// GuardAction is what the opt-in guard did to a webhook: "exclude"
	// (a protected namespace left out of it) or "revert" (put back).
	GuardAction = attribute.Key("hookscope.guard.action")
)

// Values of FindingState.
const (
	// FindingOpen marks the span of a finding that was just detected.
	FindingOpen = "open"
	// FindingResolved marks the span of a finding whose webhook is healthy
	// again.
	FindingResolved = "resolved"
)

// EvidenceEventPrefix starts the name of every evidence span event; the
// evidence source completes it ("hookscope.evidence.probe").
const EvidenceEventPrefix = "hookscope.evidence."
