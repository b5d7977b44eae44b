package findings

import (
	"net/netip"
	"time"

	"github.com/hookscope/hookscope/callout"
)

// Finding is one webhook's failure: opened when first seen, resolved when
// the webhook is healthy again.
type Finding struct {
	ID            string              `json:"id"`
	Class         Class               `json:"class"`
	Webhook       callout.Ref         `json:"webhook"`
	FailurePolicy string              `json:"failurePolicy"`
	Effect        Effect              `json:"effect"`
	Service       *callout.ServiceRef `json:"service,omitempty"`
	URL           string              `json:"url,omitempty"`
	Backend       netip.AddrPort      `json:"backend"`
	Pod           *callout.PodRef     `json:"pod,omitempty"`
	// FirstFailure is when the first failing call (or probe) started.
	FirstFailure time.Time `json:"firstFailure"`
	// FirstSeen is when hookscope knew the class: the finding's detection time.
	FirstSeen time.Time  `json:"firstSeen"`
	Resolved  *time.Time `json:"resolved,omitempty"`
	// Certificate is the served leaf's validity window, when a probe saw it.
	Certificate *Certificate `json:"certificate,omitempty"`
	Evidence    []Evidence   `json:"evidence"`
	Remediation string       `json:"remediation"`
	// Impact is what the failing webhook does to the cluster beyond one
	// write; set on correlation findings only.
	Impact *Impact `json:"impact,omitempty"`
	// Untraced says why no agent's kernel sees this backend's calls (no
	// agent on its node: Fargate, a node the DaemonSet leaves out); the
	// agent holding the Lease probes it. Empty for a traced backend.
	Untraced string `json:"untraced,omitempty"`
	// Superseded is the class of the finding that took this one's place
	// when the failure changed reason: the webhook did not recover, it
	// fails otherwise. Empty for a finding that ended.
	Superseded Class `json:"superseded,omitempty"`
}

// Wire is the kernel's facts of the finding's latest kernel evidence, or
// nil when the kernel saw none.
func (f Finding) Wire() *WireFacts {
	for i := len(f.Evidence) - 1; i >= 0; i-- {
		if f.Evidence[i].Wire != nil {
			return f.Evidence[i].Wire
		}
	}
	return nil
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
	// ImpactNamespaceTerminating: a namespace stays Terminating because
	// the namespace controller cannot discover an aggregated API's
	// group/version (NamespaceDeletionDiscoveryFailure), or cannot delete
	// custom resources a conversion webhook converts
	// (NamespaceDeletionContentFailure).
	ImpactNamespaceTerminating = "NamespaceTerminating"
	// ImpactAutoscalingStopped: a HorizontalPodAutoscaler cannot compute
	// its replica count because the metrics API it reads (metrics-server's
	// metrics.k8s.io, a custom or external metrics adapter) fails.
	ImpactAutoscalingStopped = "AutoscalingStopped"
)

// Impact links a failing webhook to what it breaks.
type Impact struct {
	Kind   string    `json:"kind"`
	Node   string    `json:"node,omitempty"`
	Object string    `json:"object"` // "DaemonSet kube-system/aws-node"
	Since  time.Time `json:"since"`
	Detail string    `json:"detail"`
}

// key is the impact's part of a finding's key.
func (i Impact) key() string { return i.Kind + "|" + i.Object + "|" + i.Node }

// Certificate is the validity window of a served certificate.
type Certificate struct {
	Subject   string    `json:"subject"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
}

// Sink receives findings when they open, change class and resolve.
type Sink interface {
	Report(f Finding)
}
