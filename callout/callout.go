// Package callout is the model of what the API server calls out to: an
// admission webhook, the Service and endpoints it resolves to, and the
// connections (calls) the kernel sees to those endpoints. It holds facts
// only; the packages that judge them (inventory's object checks, the probe,
// the data plane) and the findings store import it, never the reverse.
package callout

import (
	"net/netip"
	"time"
)

// Ref names one webhook: the configuration that holds it and its name in
// that configuration.
type Ref struct {
	Kind          string `json:"kind"` // "Validating", "Mutating", "APIService" or "Conversion"
	Configuration string `json:"configuration"`
	Name          string `json:"name"`
}

func (r Ref) String() string { return r.Kind + "/" + r.Configuration + "/" + r.Name }

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

// Backend is one endpoint the API server dials for a webhook.
type Backend struct {
	Addr  netip.AddrPort `json:"addr"`
	Pod   *PodRef        `json:"pod,omitempty"`
	Ready bool           `json:"ready"`
	// Terminating: the pod is shutting down (the API server stops calling
	// it once it is not ready).
	Terminating bool `json:"terminating,omitempty"`
}

// Webhook is one webhook resolved to what the API server will call.
type Webhook struct {
	Ref            Ref         `json:"ref"`
	FailurePolicy  string      `json:"failurePolicy"` // "Fail" or "Ignore"
	TimeoutSeconds int32       `json:"timeoutSeconds"`
	Service        *ServiceRef `json:"service,omitempty"`
	URL            string      `json:"url,omitempty"`
	CABundle       []byte      `json:"-"`
	Backends       []Backend   `json:"backends"`
	// ServiceFound: the Service the webhook names exists (false when it
	// names none). ServicePorts are that Service's ports and
	// ServiceSelector its pod selector (to find Pending pods).
	ServiceFound    bool              `json:"serviceFound"`
	ServicePorts    []int32           `json:"-"`
	ServiceSelector map[string]string `json:"-"`
	// Invalid says why the configuration cannot be called as written (a
	// Service name that cannot exist, a caBundle that holds no PEM
	// certificate, a URL that does not parse); empty when it looks valid.
	Invalid string `json:"invalid,omitempty"`
	// Unresolved says why the Service and endpoints are not known yet (the
	// inventory has not listed the Service's namespace): nothing is judged
	// from them until they are.
	Unresolved string `json:"unresolved,omitempty"`
	// InsecureSkipTLSVerify: the API server does not verify the serving
	// certificate (an APIService that says so).
	InsecureSkipTLSVerify bool `json:"insecureSkipTLSVerify,omitempty"`
	// API is the aggregated API's group/version, for an APIService, and
	// Available its Available condition.
	API       string     `json:"api,omitempty"`
	Available *Condition `json:"available,omitempty"`
	// Admission is, for an admission webhook, its rules, side effects and
	// whether it opts in to review probes (Hook.Admission); nil for the
	// other call-outs.
	Admission *Admission `json:"-"`
	// CAInjection is what the configuration asks cert-manager's
	// cainjector to write into its caBundle (cainjector.go); nil: nothing.
	CAInjection *CAInjection `json:"caInjection,omitempty"`
}

// IsAPIService reports whether w is an aggregated API, not a webhook.
func (w Webhook) IsAPIService() bool { return w.Ref.Kind == KindAPIService }

// IsConversion reports whether w is a CRD's conversion webhook.
func (w Webhook) IsConversion() bool { return w.Ref.Kind == KindConversion }

// FailsClosed reports whether the API server rejects the write when this
// webhook cannot be called.
func (w Webhook) FailsClosed() bool { return w.FailurePolicy != "Ignore" }

// ServerName is the name the API server verifies the serving certificate
// against: <svc>.<ns>.svc, or the URL's host.
func (w Webhook) ServerName() string {
	if w.Service != nil {
		return w.Service.ServerName()
	}
	return urlHost(w.URL)
}

// Backend returns the backend at addr, if the webhook has it.
func (w Webhook) Backend(addr netip.AddrPort) (Backend, bool) {
	for _, b := range w.Backends {
		if b.Addr == addr {
			return b, true
		}
	}
	return Backend{}, false
}

// Call is one connection to a webhook backend as the kernel saw it, from
// the client's SYN to the end of its handshake: done, rejected by the
// client, refused, reset, or closed before it was done. The API server
// keeps HTTP/2 connections to a webhook open and sends many reviews over
// each, so the handshake, not each review, is what a Call covers.
type Call struct {
	Client   netip.AddrPort
	Server   netip.AddrPort
	Webhooks []Ref // every webhook this backend serves
	Pod      *PodRef
	Start    time.Time
	End      time.Time
	Outcome  string // done, rejected, refused, reset, closed
	// TLSVersion is the negotiated version ("1.2", "1.3") once the
	// server's hello was seen; empty before.
	TLSVersion string
	Cipher     uint16
	Events     []CallEvent
}

// CallEvent is one step of a Call.
type CallEvent struct {
	Name   string // the kernel event's kind: connect, client_hello, ...
	At     time.Time
	Detail string
}

// Failed reports whether the call ended without a completed handshake.
func (c Call) Failed() bool { return c.Outcome != "done" }
